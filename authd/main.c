/*
 * authd: verifies the JWTs that clients present to pushers. Pushers ask on
 * <prefix>.auth (see verifier.h); any number of authd share the load as one
 * NATS queue group, and none keeps state, so they can come and go freely.
 *
 * This file is the table of contents: parse the configuration, connect to
 * NATS, serve metrics, answer requests until SIGTERM/SIGINT, tear down.
 * Runs on the main thread; requests are answered on nats.c's threads.
 */
#include "config.h"
#include "httpd.h"
#include "log.h"
#include "natsx.h"
#include "signals.h"
#include "verifier.h"

static int authd_ready(void *nc)
{
    return natsx_connected(nc);
}

int main(int argc, char **argv)
{
    signals_init(); /* first: every thread created later inherits the signal mask */
    log_init("authd");

    config_common_t common = {0};
    const char *secret = NULL;
    config_opt_t opts[] = {
        CONFIG_COMMON_OPTS(common),
        {"jwt-secret", "PUSH_JWT_SECRET", NULL, "HS256 secret that signs client tokens", CONFIG_STR,
         &secret, 0, 0, 1},
    };
    int rc = config_parse("authd", "authd [flags]", opts, sizeof opts / sizeof opts[0], argc, argv,
                          NULL);
    if (rc != CONFIG_OK)
        return rc == CONFIG_EXIT_OK ? 0 : 2;
    log_set_level_name(common.log_level); /* config_parse checked the name */
    log_set_format_name(common.log_format);

    natsConnection *nc = NULL;
    httpd_t *http = NULL;
    verifier_t *verifier = NULL;
    if (natsx_connect(&nc, common.nats_url, "authd") != NATS_OK)
        goto fail;
    /* secret points into argv or environ, which outlive the verifier. */
    if (!(verifier = verifier_start(nc, common.prefix, secret)))
        goto fail;
    /* after the subscription: /readyz never says 200 before authd answers */
    if (common.metrics && !(http = httpd_start_metrics(common.metrics, authd_ready, nc)))
        goto fail;

    LOG_I("running (nats %s, prefix %s, metrics %s)", common.nats_url, common.prefix,
          common.metrics ? common.metrics : "off");
    int sig = signals_wait();
    LOG_I("signal %d, stopping", sig);
    verifier_stop(verifier); /* drains: requests already received are answered */
    httpd_stop(http);
    natsx_close(nc);
    nats_Close();
    return 0;

fail:
    LOG_E("cannot start (see above); exiting");
    verifier_stop(verifier);
    httpd_stop(http);
    natsx_close(nc);
    nats_Close();
    return 1;
}
