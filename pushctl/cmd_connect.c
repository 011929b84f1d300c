/*
 * pushctl connect --token T [--url ws://127.0.0.1:8080/ws] [--channel C[,C2...]]
 * [--since ID] [--ack] [--count N]: a WebSocket client (libwebsockets) that
 * prints every text frame it receives on its own line, like wscat. With
 * --channel it subscribes to each channel once welcomed (with --since, each
 * subscription recovers what came after that message id). With --ack it
 * acks each user message frame (channel messages take no acks); with
 * --count it exits 0 after N message frames. When the server
 * closes the connection it prints "closed <code> <reason>" on stderr and
 * exits 1; SIGINT/SIGTERM end it with 0.
 */
#include <jansson.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "pushctl.h"
#include "signals.h"

typedef struct connect_state {
    struct lws_context *ctx;
    int ack;
    long count, messages;
    char *rx;
    size_t rx_len;
    const char *channels, *since; /* subscribed to once welcomed */
    char **acks; /* frames to send (acks, subscribes), oldest at ack_head, sent when writeable */
    size_t ack_head, n_acks, cap_acks;
    int close_code;
    char close_reason[128];
    atomic_int done;
    int rc;
} connect_state_t;

/* The id of a {"type":"message",...} frame (malloc'd; "" for a channel
 * message, which takes no ack), or NULL for any other frame. *welcome is
 * set for the welcome frame. */
static char *connect_message_id(const char *text, size_t len, int *welcome)
{
    json_t *j = json_loadb(text, len, 0, NULL);
    json_t *type = json_object_get(j, "type"), *id = json_object_get(j, "id");
    char *out = NULL;
    if (json_is_string(type) && strcmp(json_string_value(type), "message") == 0)
        out = strdup(json_is_string(id) && !json_object_get(j, "channel") ? json_string_value(id)
                                                                          : "");
    *welcome = json_is_string(type) && strcmp(json_string_value(type), "welcome") == 0;
    json_decref(j);
    return out;
}

/* Queue a frame (JSON text, takes ownership), sent in order when writeable. */
static void connect_queue_text(connect_state_t *st, char *text)
{
    if (!text)
        return;
    if (st->ack_head == st->n_acks)
        st->ack_head = st->n_acks = 0;
    if (st->n_acks == st->cap_acks) {
        size_t cap = st->cap_acks ? st->cap_acks * 2 : 8;
        char **na = realloc(st->acks, cap * sizeof *na);
        if (!na) {
            free(text);
            return;
        }
        st->acks = na;
        st->cap_acks = cap;
    }
    st->acks[st->n_acks++] = text;
}

static void connect_queue_json(connect_state_t *st, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    connect_queue_text(st, text);
}

/* Once welcomed: a subscribe frame per channel of --channel. */
static void connect_subscribe(connect_state_t *st)
{
    for (const char *p = st->channels; p && *p;) {
        size_t n = strcspn(p, ",");
        if (n) {
            json_t *j = json_pack("{s:s,s:s%}", "type", "subscribe", "channel", p, n);
            if (j && st->since)
                json_object_set_new(j, "since", json_string(st->since));
            connect_queue_json(st, j);
        }
        p += n + (p[n] == ',');
    }
}

static int connect_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len)
{
    (void)user;
    struct lws_context *ctx = lws_get_context(wsi);
    connect_state_t *st = ctx ? lws_context_user(ctx) : NULL;
    if (!st)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        fprintf(stderr, "pushctl: connection failed: %s\n",
                in ? (const char *)in : "unknown error");
        st->rc = 1;
        atomic_store(&st->done, 1);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        char *nb = realloc(st->rx, st->rx_len + len + 1);
        if (!nb)
            return -1;
        st->rx = nb;
        memcpy(st->rx + st->rx_len, in, len);
        st->rx_len += len;
        if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
            return 0;
        printf("%.*s\n", (int)st->rx_len, st->rx);
        fflush(stdout);
        int welcome = 0;
        char *id = connect_message_id(st->rx, st->rx_len, &welcome);
        st->rx_len = 0;
        if (welcome && st->channels) {
            connect_subscribe(st);
            lws_callback_on_writable(wsi);
        }
        if (!id)
            return 0;
        st->messages++;
        if (st->ack && *id) {
            connect_queue_json(st, json_pack("{s:s,s:s}", "type", "ack", "id", id));
            free(id);
            lws_callback_on_writable(wsi);
        } else {
            free(id);
        }
        if (st->count && st->messages >= st->count && st->ack_head == st->n_acks) {
            st->rc = 0;
            atomic_store(&st->done, 1);
        }
        return 0;
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (st->ack_head < st->n_acks) {
            char *text = st->acks[st->ack_head++];
            size_t n = text ? strlen(text) : 0;
            unsigned char *buf = text ? malloc(LWS_PRE + n) : NULL;
            if (!buf) {
                free(text);
                return -1;
            }
            memcpy(buf + LWS_PRE, text, n);
            free(text);
            int w = lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT);
            free(buf);
            if (w < (int)n)
                return -1;
            if (st->ack_head < st->n_acks)
                lws_callback_on_writable(wsi);
            else if (st->count && st->messages >= st->count) {
                st->rc = 0;
                atomic_store(&st->done, 1);
            }
        }
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2) {
            const unsigned char *p = in;
            st->close_code = p[0] << 8 | p[1];
            snprintf(st->close_reason, sizeof st->close_reason, "%.*s", (int)(len - 2),
                     (const char *)in + 2);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!atomic_load(&st->done)) {
            fprintf(stderr, "closed %d %s\n", st->close_code ? st->close_code : 1006,
                    st->close_reason);
            st->rc = 1;
            atomic_store(&st->done, 1);
        }
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols connect_protocols[] = {
    {"push-client", connect_cb, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void *connect_signal_thread(void *arg)
{
    connect_state_t *st = arg;
    signals_wait();
    st->rc = 0;
    atomic_store(&st->done, 1);
    lws_cancel_service(st->ctx);
    return NULL;
}

int pushctl_connect(int argc, char **argv)
{
    const char *token = NULL, *url = NULL, *channels = NULL, *since = NULL;
    long count = 0;
    int ack = 0;
    config_opt_t opts[] = {
        {"token", NULL, NULL, "the JWT to present (pushctl token mints one)", CONFIG_STR, &token, 0,
         0, 1},
        {"url", NULL, "ws://127.0.0.1:8080/ws", "the pusher's WebSocket URL", CONFIG_STR, &url, 0,
         0, 1},
        {"channel", NULL, NULL, "subscribe to these channels (comma separated) once welcomed",
         CONFIG_STR, &channels, 0, 0, 0},
        {"since", NULL, NULL, "with --channel: recover what came after this message id", CONFIG_STR,
         &since, 0, 0, 0},
        {"ack", NULL, NULL, "ack every user message frame", CONFIG_FLAG, &ack, 0, 0, 0},
        {"count", NULL, "0", "exit 0 after this many message frames (0: never)", CONFIG_INT, &count,
         0, 1000000000, 1},
    };
    int rc = config_parse("pushctl",
                          "pushctl connect --token T [--url URL] [--channel C[,C2...]] "
                          "[--since ID] [--ack] [--count N]",
                          opts, sizeof opts / sizeof opts[0], argc, argv, NULL);
    if (rc != CONFIG_OK)
        return rc == CONFIG_EXIT_OK ? 0 : 2;
    char host[256], path[4096];
    int port = 80;
    if (sscanf(url, "ws://%255[^:/]:%d%4095s", host, &port, path) < 2 &&
        sscanf(url, "ws://%255[^:/]%4095s", host, path) < 1) {
        fprintf(stderr, "pushctl: --url must look like ws://HOST:PORT/PATH\n");
        return 2;
    }
    if (!strchr(url + 5, '/'))
        strcpy(path, "/");
    char full[8192];
    snprintf(full, sizeof full, "%s%stoken=%s", path, strchr(path, '?') ? "&" : "?", token);

    connect_state_t st = {
        .ack = ack, .count = count, .rc = 1, .channels = channels, .since = since};
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = connect_protocols;
    info.user = &st;
    st.ctx = lws_create_context(&info);
    if (!st.ctx) {
        fprintf(stderr, "pushctl: cannot create a WebSocket client\n");
        return 1;
    }
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = st.ctx;
    ci.address = host;
    ci.port = port;
    ci.path = full;
    ci.host = host;
    ci.origin = host;
    ci.protocol = NULL;
    if (!lws_client_connect_via_info(&ci)) {
        fprintf(stderr, "pushctl: cannot connect to %s\n", url);
        lws_context_destroy(st.ctx);
        return 1;
    }
    pthread_t sig;
    if (pthread_create(&sig, NULL, connect_signal_thread, &st) != 0) {
        fprintf(stderr, "pushctl: cannot start a thread for signals\n");
        lws_context_destroy(st.ctx);
        return 1;
    }
    pthread_detach(sig);
    while (!atomic_load(&st.done))
        lws_service(st.ctx, 0);
    lws_context_destroy(st.ctx);
    free(st.rx);
    for (size_t i = st.ack_head; i < st.n_acks; i++)
        free(st.acks[i]);
    free(st.acks);
    return st.rc;
}
