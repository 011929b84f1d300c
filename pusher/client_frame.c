/* client_frame: see client_frame.h. */
#include "client_frame.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "jwt.h"

static int client_frame_id_ok(json_t *v)
{
    if (!json_is_string(v))
        return 0;
    size_t n = json_string_length(v);
    return n >= 1 && n <= CLIENT_FRAME_MAX_ID && strlen(json_string_value(v)) == n;
}

/* A subscribe (sub 1) or unsubscribe frame. */
static void client_frame_channel(json_t *root, int sub, client_frame_t *out)
{
    out->kind = sub ? CLIENT_FRAME_SUBSCRIBE : CLIENT_FRAME_UNSUBSCRIBE;
    json_t *ch = json_object_get(root, "channel");
    json_t *since = sub ? json_object_get(root, "since") : NULL;
    json_t *token = sub ? json_object_get(root, "token") : NULL;
    if (json_is_string(ch) && json_string_length(ch) <= CLIENT_FRAME_MAX_ECHO &&
        strlen(json_string_value(ch)) == json_string_length(ch))
        out->channel = strdup(json_string_value(ch));
    if (!json_is_string(ch) || !chan_name_ok(json_string_value(ch), json_string_length(ch))) {
        out->error = "channel must be 1..255 bytes of A-Z a-z 0-9 _ . : @ -";
        return;
    }
    if (since && !client_frame_id_ok(since)) {
        out->error = "since must be a message id (a string of 1..128 bytes)";
        return;
    }
    if (token && (!json_is_string(token) || json_string_length(token) == 0 ||
                  json_string_length(token) > JWT_MAX_TOKEN ||
                  strlen(json_string_value(token)) != json_string_length(token))) {
        out->error = "token must be a subscription JWT";
        return;
    }
    if (!out->channel || (since && !(out->since = strdup(json_string_value(since)))) ||
        (token && !(out->token = strdup(json_string_value(token))))) {
        client_frame_free(out); /* out of memory: malformed */
        return;
    }
}

void client_frame_parse(const char *text, size_t len, client_frame_t *out)
{
    memset(out, 0, sizeof *out);
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *type = json_is_object(root) ? json_object_get(root, "type") : NULL;
    if (!json_is_string(type))
        goto done;
    if (strcmp(json_string_value(type), "ping") == 0) {
        out->kind = CLIENT_FRAME_PING;
        goto done;
    }
    if (strcmp(json_string_value(type), "subscribe") == 0 ||
        strcmp(json_string_value(type), "unsubscribe") == 0) {
        client_frame_channel(root, json_string_value(type)[0] == 's', out);
        goto done;
    }
    if (strcmp(json_string_value(type), "ack") != 0)
        goto done;
    json_t *id = json_object_get(root, "id"), *ids = json_object_get(root, "ids");
    if ((id != NULL) == (ids != NULL))
        goto done; /* exactly one of them */
    if (id) {
        if (!client_frame_id_ok(id))
            goto done;
        out->ids = malloc(sizeof *out->ids);
        if (!out->ids || !(out->ids[0] = strdup(json_string_value(id))))
            goto fail;
        out->n_ids = 1;
    } else {
        size_t n = json_array_size(ids);
        if (!json_is_array(ids) || n == 0 || n > CLIENT_FRAME_MAX_IDS)
            goto done;
        for (size_t i = 0; i < n; i++)
            if (!client_frame_id_ok(json_array_get(ids, i)))
                goto done;
        out->ids = calloc(n, sizeof *out->ids);
        if (!out->ids)
            goto fail;
        for (size_t i = 0; i < n; i++) {
            if (!(out->ids[i] = strdup(json_string_value(json_array_get(ids, i)))))
                goto fail;
            out->n_ids++;
        }
    }
    out->kind = CLIENT_FRAME_ACK;
    goto done;
fail:
    client_frame_free(out);
done:
    json_decref(root);
}

void client_frame_free(client_frame_t *f)
{
    for (size_t i = 0; i < f->n_ids; i++)
        free(f->ids[i]);
    free(f->ids);
    free(f->channel);
    free(f->since);
    free(f->token);
    memset(f, 0, sizeof *f);
}
