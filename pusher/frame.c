/* frame: see frame.h. Strings are escaped with jansson so ids and topics
 * can hold any text without breaking the JSON. */
#include "frame.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "b64.h"

frame_t *frame_text(const char *text, size_t len)
{
    frame_t *f = malloc(sizeof *f + FRAME_PRE + len + 1);
    if (!f)
        return NULL;
    atomic_init(&f->refs, 1);
    f->len = len;
    f->id[0] = '\0';
    f->broadcast = 0;
    memcpy(frame_payload(f), text, len);
    frame_payload(f)[len] = '\0';
    return f;
}

/* The JSON form of s (with quotes), malloc'd. */
static char *frame_quote(const char *s)
{
    json_t *j = json_string(s ? s : "");
    if (!j)
        j = json_string(""); /* not UTF-8: an id or topic we cannot show */
    char *out = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(j);
    return out;
}

frame_t *frame_message(const Push__V1__Message *m)
{
    char *id = frame_quote(m->id), *topic = frame_quote(m->topic);
    char *channel = m->channel ? frame_quote(m->channel) : NULL;
    const unsigned char *data = m->has_data ? m->data.data : NULL;
    size_t data_len = m->has_data ? m->data.len : 0;
    int is_json =
        m->content_type && strncasecmp(m->content_type, "application/json", 16) == 0 && data_len;
    size_t body = is_json ? data_len : b64_encoded_len(data_len, 0) + 2;
    size_t cap = 64 + strlen(id ? id : "") + strlen(topic ? topic : "") + body + 32 +
                 (channel ? strlen(channel) + 12 : 0);
    frame_t *f =
        id && topic && (channel || !m->channel) ? malloc(sizeof *f + FRAME_PRE + cap) : NULL;
    if (f) {
        char *p = (char *)frame_payload(f);
        size_t n = (size_t)sprintf(p, "{\"type\":\"message\",\"id\":%s,", id);
        if (channel)
            n += (size_t)sprintf(p + n, "\"channel\":%s,", channel);
        n += (size_t)sprintf(p + n, "\"topic\":%s,\"data\":", topic);
        if (is_json) {
            memcpy(p + n, data, data_len);
            n += data_len;
            p[n++] = '}';
        } else {
            p[n++] = '"';
            n += b64_encode(p + n, data ? data : (const unsigned char *)"", data_len, 0);
            n += (size_t)sprintf(p + n, "\",\"encoding\":\"base64\"}");
        }
        p[n] = '\0';
        f->len = n;
        snprintf(f->id, sizeof f->id, "%s", m->id ? m->id : "");
        /* a channel message is not in any user's acceptance order */
        f->broadcast = m->channel != NULL;
        atomic_init(&f->refs, 1);
    }
    free(id);
    free(topic);
    free(channel);
    return f;
}

frame_t *frame_welcome(const char *user, const char *node, const char *conn)
{
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s}", "type", "welcome", "user", user, "node", node, "conn", conn);
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    frame_t *f = text ? frame_text(text, strlen(text)) : NULL;
    free(text);
    return f;
}

frame_t *frame_json(json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    frame_t *f = text ? frame_text(text, strlen(text)) : NULL;
    free(text);
    return f;
}

frame_t *frame_ref(frame_t *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    return f;
}

void frame_unref(frame_t *f)
{
    if (f && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
        free(f);
}
