/* Unit tests of lib/metrics and lib/redisx URL parsing. */
#include <stdlib.h>

#include "check.h"
#include "metrics.h"
#include "redisx.h"

static void families_render_help_and_type_once_with_every_series(void)
{
    metrics_series_t *a = metrics_counter("push_t_rejected_total", "reason=\"a\"", "Rejections");
    metrics_series_t *b = metrics_counter("push_t_rejected_total", "reason=\"b\"", "Rejections");
    metrics_series_t *g = metrics_gauge("push_t_conns", NULL, "Connections");
    CHECK(metrics_counter("push_t_rejected_total", "reason=\"a\"", "Rejections") == a);
    metrics_add(a, 3);
    metrics_inc(b);
    metrics_set(g, -2);
    char *text = metrics_render();
    CHECK_STR(text, "# HELP push_t_rejected_total Rejections\n"
                    "# TYPE push_t_rejected_total counter\n"
                    "push_t_rejected_total{reason=\"a\"} 3\n"
                    "push_t_rejected_total{reason=\"b\"} 1\n"
                    "# HELP push_t_conns Connections\n"
                    "# TYPE push_t_conns gauge\n"
                    "push_t_conns -2\n");
    free(text);
    metrics_inc(NULL); /* a full registry hands out NULL; updating it is a no-op */
}

static void redis_urls_parse_host_port_password_db(void)
{
    redisx_url_t u;
    CHECK_INT(redisx_parse_url("redis://127.0.0.1:6380/2", &u), 0);
    CHECK_STR(u.host, "127.0.0.1");
    CHECK_INT(u.port, 6380);
    CHECK_INT(u.db, 2);
    CHECK_STR(u.password, "");
    CHECK_INT(redisx_parse_url("redis://:s3cret@cache", &u), 0);
    CHECK_STR(u.host, "cache");
    CHECK_INT(u.port, 6379);
    CHECK_STR(u.password, "s3cret");
    CHECK_INT(redisx_parse_url("http://x", &u), -1);
    CHECK_INT(redisx_parse_url("redis://h:0", &u), -1);
    CHECK_INT(redisx_parse_url("redis://h:1/x", &u), -1);
    CHECK_INT(redisx_parse_url("redis://", &u), -1);
    char key[64];
    redisx_route_key(key, sizeof key, "push", "u1");
    CHECK_STR(key, "push:route:u1");
}

CHECK_MAIN(CHECK_CASE(families_render_help_and_type_once_with_every_series),
           CHECK_CASE(redis_urls_parse_host_port_password_db))
