/*
 * envelope: pack, unpack and validate Ramtrain__Envelope (see envelope.h).
 *
 * Validation order on unpack is size, parse, protocol version, run id,
 * sender, body: the size bound comes before protobuf-c allocates anything,
 * and the version comes before any other field is trusted, since another
 * version may give fields another meaning. Body fields are found through the
 * generated descriptor, not a hand-kept table, so a body added to the .proto
 * needs no change here.
 *
 * Text that came from a peer (run id, sender) is quoted into error messages
 * through env_quote: printable ASCII only, cut to a few dozen bytes, so a
 * hostile peer cannot forge log lines or fill the error buffer.
 */
#include "services/common/envelope.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENV_QUOTE_MAX 48 /* peer text shown in an error, in bytes */

typedef struct env_quoted {
    char s[ENV_QUOTE_MAX + 4]; /* + "..." + NUL */
} env_quoted;

/* Returns a printable, bounded copy of peer text s. */
static env_quoted env_quote(const char *s)
{
    env_quoted q;
    size_t i = 0;
    if (s == NULL)
        s = "";
    for (; s[i] != '\0' && i < ENV_QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        q.s[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (s[i] != '\0') {
        memcpy(q.s + i, "...", 3);
        i += 3;
    }
    q.s[i] = '\0';
    return q;
}

/* Returns the descriptor of e's body field, or NULL when the case is not set
 * or not a body field of this build. */
static const ProtobufCFieldDescriptor *env_body_field(const Ramtrain__Envelope *e)
{
    if (e->body_case == RAMTRAIN__ENVELOPE__BODY__NOT_SET)
        return NULL;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&ramtrain__envelope__descriptor,
                                                (unsigned)e->body_case);
    if (f == NULL || !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
        return NULL;
    return f;
}

void env_init(Ramtrain__Envelope *e, const char *run_id, const char *sender,
              uint64_t request_id)
{
    ramtrain__envelope__init(e);
    e->run_id = (char *)run_id;
    e->sender = (char *)sender;
    e->has_request_id = 1;
    e->request_id = request_id;
    e->has_protocol_version = 1;
    e->protocol_version = ENV_PROTOCOL_VERSION;
}

const char *env_body_name(const Ramtrain__Envelope *e)
{
    if (e->body_case == RAMTRAIN__ENVELOPE__BODY__NOT_SET)
        return "none";
    const ProtobufCFieldDescriptor *f = env_body_field(e);
    return f != NULL ? f->name : "unknown";
}

size_t env_packed_size(const Ramtrain__Envelope *e)
{
    return ramtrain__envelope__get_packed_size(e);
}

/* Checks what we are about to send; returns 0 or a negative errno. */
static int env_check_outgoing(const Ramtrain__Envelope *e, size_t *size, rt_err *err)
{
    if (e == NULL)
        return err_set(err, -EINVAL, "envelope: NULL");
    if (e->run_id == NULL || e->run_id[0] == '\0')
        return err_set(err, -EINVAL, "envelope.run_id: not set (body %s)", env_body_name(e));
    if (e->sender == NULL || e->sender[0] == '\0')
        return err_set(err, -EINVAL, "envelope.sender: not set (body %s)", env_body_name(e));
    if (!e->has_protocol_version || e->protocol_version != ENV_PROTOCOL_VERSION)
        return err_set(err, -EINVAL,
                       "envelope.protocol_version: %u, expected %u (use env_init)",
                       e->has_protocol_version ? e->protocol_version : 0u,
                       ENV_PROTOCOL_VERSION);
    if (e->body_case == RAMTRAIN__ENVELOPE__BODY__NOT_SET)
        return err_set(err, -ENOMSG, "envelope.body: not set (sender %s)", e->sender);
    const ProtobufCFieldDescriptor *f = env_body_field(e);
    if (f == NULL)
        return err_set(err, -ENOMSG, "envelope.body: case %d is not a body of this build",
                       (int)e->body_case);
    /* The body pointer lives at the field's offset; protobuf-c would
     * dereference a NULL one while sizing the message. */
    const void *body = *(const void *const *)((const char *)e + f->offset);
    if (body == NULL)
        return err_set(err, -EINVAL, "envelope.%s: body case set but pointer is NULL", f->name);

    *size = ramtrain__envelope__get_packed_size(e);
    if (*size > ENV_MAX_MSG)
        return err_set(err, -EMSGSIZE,
                       "envelope.%s: %zu bytes packed, more than ENV_MAX_MSG (%u bytes)",
                       f->name, *size, ENV_MAX_MSG);
    return 0;
}

int env_pack(const Ramtrain__Envelope *e, uint8_t *buf, size_t cap, size_t *len, rt_err *err)
{
    size_t size = 0;
    int rc = env_check_outgoing(e, &size, err);
    if (rc < 0)
        return rc;
    if (size > cap)
        return err_set(err, -ENOBUFS, "envelope.%s: %zu bytes packed, buffer holds %zu",
                       env_body_name(e), size, cap);
    *len = ramtrain__envelope__pack(e, buf);
    return 0;
}

int env_pack_alloc(const Ramtrain__Envelope *e, uint8_t **out, size_t *len, rt_err *err)
{
    size_t size = 0;
    *out = NULL;
    int rc = env_check_outgoing(e, &size, err);
    if (rc < 0)
        return rc;
    /* malloc(0) may return NULL; an envelope is never empty, but be exact. */
    uint8_t *buf = malloc(size > 0 ? size : 1);
    if (buf == NULL)
        return err_set(err, -ENOMEM, "envelope.%s: cannot allocate %zu bytes",
                       env_body_name(e), size);
    *len = ramtrain__envelope__pack(e, buf);
    *out = buf;
    return 0;
}

int env_unpack(const uint8_t *buf, size_t len, const char *run_id, Ramtrain__Envelope **out,
               uint64_t *request_id, rt_err *err)
{
    static const uint8_t empty[1];
    Ramtrain__Envelope *e = NULL;
    int rc = 0;

    *out = NULL;
    if (request_id != NULL)
        *request_id = 0;
    if (run_id == NULL || (buf == NULL && len > 0))
        return err_set(err, -EINVAL, "envelope: %s is NULL", run_id == NULL ? "run_id" : "buf");
    if (len > ENV_MAX_MSG)
        return err_set(err, -EMSGSIZE, "envelope: %zu bytes, more than ENV_MAX_MSG (%u bytes)",
                       len, ENV_MAX_MSG);

    /* protobuf-c returns NULL both for bad bytes and for a failed malloc;
     * with messages bounded to 1 MiB the first is by far the likelier. */
    e = ramtrain__envelope__unpack(NULL, len, len > 0 ? buf : empty);
    if (e == NULL)
        return err_set(err, -EBADMSG, "envelope: %zu bytes are not a valid envelope "
                       "(malformed or truncated protobuf)", len);
    if (request_id != NULL && e->has_request_id)
        *request_id = e->request_id;

    if (!e->has_protocol_version) {
        rc = err_set(err, -EPROTONOSUPPORT,
                     "envelope.protocol_version: missing (sender \"%s\"), expected %u",
                     env_quote(e->sender).s, ENV_PROTOCOL_VERSION);
        goto cleanup;
    }
    if (e->protocol_version != ENV_PROTOCOL_VERSION) {
        rc = err_set(err, -EPROTONOSUPPORT,
                     "envelope.protocol_version: %u from \"%s\", this build speaks %u "
                     "(run the same ramtrain version on every host)",
                     e->protocol_version, env_quote(e->sender).s, ENV_PROTOCOL_VERSION);
        goto cleanup;
    }
    if (e->run_id == NULL || e->run_id[0] == '\0') {
        rc = err_set(err, -EPERM, "envelope.run_id: missing (sender \"%s\"), expected \"%s\"",
                     env_quote(e->sender).s, env_quote(run_id).s);
        goto cleanup;
    }
    if (strcmp(e->run_id, run_id) != 0) {
        rc = err_set(err, -EPERM,
                     "envelope.run_id: \"%s\" from \"%s\", expected \"%s\" "
                     "(a process left over from another run?)",
                     env_quote(e->run_id).s, env_quote(e->sender).s, env_quote(run_id).s);
        goto cleanup;
    }
    if (e->sender == NULL || e->sender[0] == '\0') {
        rc = err_set(err, -EBADMSG, "envelope.sender: missing (request %llu)",
                     (unsigned long long)e->request_id);
        goto cleanup;
    }
    if (env_body_field(e) == NULL) {
        /* An unknown body from a newer peer is skipped by protobuf-c as an
         * unknown field, so it arrives here as "not set" too. */
        rc = err_set(err, -ENOMSG,
                     "envelope.body: not set, or a message type this build does not know "
                     "(sender \"%s\", request %llu)",
                     env_quote(e->sender).s, (unsigned long long)e->request_id);
        goto cleanup;
    }
    *out = e;
    e = NULL;

cleanup:
    env_free(e);
    return rc;
}

void env_free(Ramtrain__Envelope *e)
{
    if (e != NULL)
        ramtrain__envelope__free_unpacked(e, NULL);
}

int env_error_reply(const char *run_id, const char *sender, uint64_t request_id, int code,
                    const char *message, uint8_t **out, size_t *len, rt_err *err)
{
    char text[ENV_ERROR_MSG_MAX + 1];
    Ramtrain__ErrorReply reply = RAMTRAIN__ERROR_REPLY__INIT;
    Ramtrain__Envelope e;

    *out = NULL;
    if (code >= 0)
        return err_set(err, -EINVAL, "error_reply.code: %d, expected a negative errno", code);
    if (message == NULL)
        return err_set(err, -EINVAL, "error_reply.message: NULL");

    size_t n = strlen(message);
    if (n > ENV_ERROR_MSG_MAX) {
        n = ENV_ERROR_MSG_MAX;
        /* Back off UTF-8 continuation bytes (10xxxxxx) so the cut does not
         * split a character: `string` fields should stay valid UTF-8. */
        while (n > 0 && ((unsigned char)message[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(text, message, n);
    text[n] = '\0';

    reply.has_code = 1;
    reply.code = code;
    reply.message = text;
    env_init(&e, run_id, sender, request_id);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY;
    e.error_reply = &reply;
    return env_pack_alloc(&e, out, len, err);
}
