/* authd: verifies the JWTs clients present to pushers (see verifier.h). */
#include <stdlib.h>

#include "config.h"
#include "httpd.h"
#include "log.h"
#include "natsx.h"
#include "signals.h"
#include "verifier.h"

static int authd_ready(void *arg) { return natsx_connected(arg); }

int main(int argc, char **argv)
{
    signals_init();
    log_init("authd");
    config_common_t common = {0};
    const char *secret = NULL;
    config_opt_t opts[] = {
        CONFIG_COMMON_OPTS(common),
        {"jwt-secret", "PUSH_JWT_SECRET", NULL, "HS256 secret that signs client tokens", CONFIG_STR,
         &secret, 0, 0, 1},
    };
    int rc = config_parse("authd", "authd [flags]", opts, sizeof opts / sizeof opts[0], argc, argv, NULL);
    if (rc != CONFIG_OK)
        return rc == CONFIG_EXIT_OK ? 0 : 2;
    log_set_level_name(common.log_level);

    natsConnection *nc = NULL;
    if (natsx_connect(&nc, common.nats_url, "authd") != NATS_OK)
        return 1;
    httpd_t *http = common.metrics ? httpd_start_metrics(common.metrics, authd_ready, nc) : NULL;
    verifier_t *v = verifier_start(nc, common.prefix, secret);
    if (!v || (common.metrics && !http)) {
        httpd_stop(http);
        verifier_stop(v);
        natsx_close(nc);
        return 1;
    }
    LOG_I("authd: running");
    int sig = signals_wait();
    LOG_I("authd: signal %d, stopping", sig);
    verifier_stop(v);
    httpd_stop(http);
    natsx_close(nc);
    nats_Close();
    return 0;
}
