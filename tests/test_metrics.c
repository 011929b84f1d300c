/* Unit tests of lib/metrics and lib/redisx URL parsing. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void age_histograms_render_cumulative_buckets_in_seconds(void)
{
    metrics_histogram_t *h = metrics_age_histogram("push_t_age_seconds", "Ages");
    CHECK(metrics_age_histogram("push_t_age_seconds", "Ages") == h);
    metrics_observe_us(h, 300);      /* le 0.0005 */
    metrics_observe_us(h, 1000);     /* le 0.001: a bound is inclusive */
    metrics_observe_us(h, 1001);     /* le 0.002 */
    metrics_observe_us(h, -5);       /* a clock step: counted as 0 */
    metrics_observe_us(h, 20000000); /* over 10 s: only +Inf */
    metrics_observe_us(NULL, 1);
    char *text = metrics_render();
    CHECK(strstr(text, "# TYPE push_t_age_seconds histogram\n") != NULL);
    CHECK(strstr(text, "push_t_age_seconds_bucket{le=\"0.0005\"} 2\n") != NULL);
    CHECK(strstr(text, "push_t_age_seconds_bucket{le=\"0.001\"} 3\n") != NULL);
    CHECK(strstr(text, "push_t_age_seconds_bucket{le=\"0.002\"} 4\n") != NULL);
    CHECK(strstr(text, "push_t_age_seconds_bucket{le=\"10\"} 4\n") != NULL);
    CHECK(strstr(text, "push_t_age_seconds_bucket{le=\"+Inf\"} 5\n") != NULL);
    CHECK(strstr(text, "push_t_age_seconds_sum 20.002301\n") != NULL);
    CHECK(strstr(text, "push_t_age_seconds_count 5\n") != NULL);
    free(text);
    /* a stamp in the wall clock's past: its age lands in a bucket of seconds */
    metrics_histogram_t *g = metrics_age_histogram("push_t_since_seconds", "Since");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    metrics_observe_since_ms(g, (uint64_t)ts.tv_sec * 1000 - 3000); /* 3 s ago, give or take 1 s */
    text = metrics_render();
    CHECK(strstr(text, "push_t_since_seconds_bucket{le=\"1\"} 0\n") != NULL);
    CHECK(strstr(text, "push_t_since_seconds_bucket{le=\"10\"} 1\n") != NULL);
    free(text);
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
           CHECK_CASE(age_histograms_render_cumulative_buckets_in_seconds),
           CHECK_CASE(redis_urls_parse_host_port_password_db))
