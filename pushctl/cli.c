/* cli: see cli.h. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "b64.h"
#include "log.h"
#include "natsx.h"

int cli_parse(const char *usage, config_opt_t *opts, size_t n, int argc, char **argv,
              int *positional, const config_common_t *common)
{
    int rc = config_parse("pushctl", usage, opts, n, argc, argv, positional);
    if (rc == CONFIG_EXIT_OK)
        return 0;
    if (rc == CONFIG_EXIT_USAGE)
        return 2;
    log_set_level_name(common->log_level);
    log_set_format_name(common->log_format);
    return -1;
}

int cli_nats_connect(const config_common_t *common, int timeout_ms, natsConnection **out)
{
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetServers(opts, (const char *[]){common->nats_url}, 1);
    if (s == NATS_OK && strchr(common->nats_url, ',')) {
        /* A list: let nats.c split it the way the services do. */
        s = natsOptions_SetURL(opts, common->nats_url);
        if (s == NATS_OK)
            s = natsOptions_SetServers(opts, NULL, 0);
    }
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(opts, timeout_ms);
    if (s == NATS_OK)
        s = natsOptions_SetName(opts, "pushctl");
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, opts);
    natsOptions_Destroy(opts);
    if (s != NATS_OK) {
        fprintf(stderr, "pushctl: cannot reach NATS at %s: %s\n", common->nats_url,
                natsStatus_GetText(s));
        return -1;
    }
    *out = nc;
    return 0;
}

static json_t *cli_bytes_to_json(const char *field, const ProtobufCBinaryData *b)
{
    if (strcmp(field, "data") == 0 && b->len) {
        json_t *j = json_loadb((const char *)b->data, b->len, JSON_DECODE_ANY, NULL);
        if (j)
            return j;
    }
    char *enc = malloc(b64_encoded_len(b->len, 0) + 1);
    if (!enc)
        return json_null();
    b64_encode(enc, b->data, b->len, 0);
    json_t *j = json_string(enc);
    free(enc);
    return j;
}

static json_t *cli_value_to_json(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_integer(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return json_integer((json_int_t) * (const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return json_real(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_real(*(const double *)p);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(const char *const *)p;
        return s ? json_string(s) : json_null();
    }
    case PROTOBUF_C_TYPE_BYTES:
        return cli_bytes_to_json(f->name, p);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(const ProtobufCMessage *const *)p;
        return m ? cli_pb_to_json(m) : json_null();
    }
    }
    return json_null();
}

static size_t cli_value_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

json_t *cli_pb_to_json(const ProtobufCMessage *msg)
{
    json_t *obj = json_object();
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)msg;
        const void *member = base + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(const char *const *)member;
            json_t *a = json_array();
            for (size_t k = 0; k < n; k++)
                json_array_append_new(a, cli_value_to_json(f, arr + k * cli_value_size(f)));
            json_object_set_new(obj, f->name, a);
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
            if (f->quantifier_offset && !*(const protobuf_c_boolean *)(base + f->quantifier_offset))
                continue;
            if ((f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) &&
                !*(const void *const *)member)
                continue;
        }
        json_object_set_new(obj, f->name, cli_value_to_json(f, member));
    }
    return obj;
}
