/*
 * envelope: the message layer of the services (DESIGN.md §5).
 *
 * Every message is one protobuf-c Ramtrain__Envelope (proto/ramtrain.proto):
 * run id, sender, request id, protocol version and one body. This module
 * packs envelopes into bytes and unpacks bytes into envelopes, and refuses
 * anything a peer should not have sent: oversized, malformed or truncated
 * bytes, another protocol version, another run, no (or an unknown) body. Each
 * refusal is a negative errno plus an rt_err line naming the field, ready to
 * be logged and returned to the peer with env_error_reply().
 *
 * It does no I/O: the ZeroMQ sockets (bus_) hand it frames. It has no state;
 * every function is safe to call from any thread on distinct arguments.
 *
 * Rejected: zero-copy unpack into a caller arena (protobuf-c's allocator
 * hook). Messages are small and rare next to the tensor traffic, which goes
 * through shared memory, so one malloc'd tree per message costs nothing.
 */
#ifndef RAMTRAIN_SERVICES_COMMON_ENVELOPE_H
#define RAMTRAIN_SERVICES_COMMON_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "ramtrain.pb-c.h"
#include "storage/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bump when a field changes meaning or disappears (not when one is added). */
#define ENV_PROTOCOL_VERSION 1u
/* Upper bound of a packed envelope, both ways. Control messages are tens of
 * bytes; the bound keeps a hostile or broken peer from making us allocate. */
#define ENV_MAX_MSG (1u << 20)
/* ErrorReply messages are cut to this many bytes (at a UTF-8 boundary). */
#define ENV_ERROR_MSG_MAX 1024

/* Fills the header of e (run id, sender, request id, ENV_PROTOCOL_VERSION)
 * and clears its body; the caller then sets e->body_case and the matching
 * body pointer. e points at run_id and sender, which the caller keeps alive
 * until the envelope is packed. */
void env_init(Ramtrain__Envelope *e, const char *run_id, const char *sender,
              uint64_t request_id);

/* Returns the proto name of e's body ("fetch_layer", ...), or "none" when no
 * body is set and "unknown" for a case this build does not know. Static
 * storage. */
const char *env_body_name(const Ramtrain__Envelope *e);

/* Returns the packed size of e in bytes (no validation). */
size_t env_packed_size(const Ramtrain__Envelope *e);

/* Packs e into buf[cap] and sets *len. Checks e first: run_id and sender set,
 * protocol_version == ENV_PROTOCOL_VERSION, a body set (-EINVAL / -ENOMSG),
 * packed size <= ENV_MAX_MSG (-EMSGSIZE) and <= cap (-ENOBUFS). Returns 0 or
 * that negative errno with err filled. Does not block. */
int env_pack(const Ramtrain__Envelope *e, uint8_t *buf, size_t cap, size_t *len, rt_err *err);

/* As env_pack, into a malloc'd buffer of exactly *len bytes that the caller
 * free()s. -ENOMEM when it cannot allocate. */
int env_pack_alloc(const Ramtrain__Envelope *e, uint8_t **out, size_t *len, rt_err *err);

/* Unpacks buf[len] and validates it against this process's run_id:
 *   -EMSGSIZE          len > ENV_MAX_MSG (not parsed)
 *   -EBADMSG           malformed or truncated bytes; sender missing
 *   -EPROTONOSUPPORT   protocol_version missing or not ENV_PROTOCOL_VERSION
 *   -EPERM             run_id missing or not run_id
 *   -ENOMSG            no body, or a body this build does not know
 *   -EINVAL            run_id is NULL, or buf is NULL with len > 0
 * On 0, *out is the envelope, owned by the caller, freed with env_free().
 * On failure *out is NULL and err names the field at fault. request_id (may
 * be NULL) receives the peer's request id whenever the bytes parsed, even if
 * rejected, so the error reply can echo it; 0 otherwise. Does not block. */
int env_unpack(const uint8_t *buf, size_t len, const char *run_id, Ramtrain__Envelope **out,
               uint64_t *request_id, rt_err *err);

/* Frees an envelope returned by env_unpack (NULL is fine). */
void env_free(Ramtrain__Envelope *e);

/* Builds and packs an ErrorReply envelope (code: a negative errno; message:
 * one line, cut to ENV_ERROR_MSG_MAX bytes) answering request_id, into a
 * malloc'd buffer of *len bytes that the caller free()s. Returns 0, -EINVAL
 * (code >= 0, or run_id / sender / message missing) or -ENOMEM. */
int env_error_reply(const char *run_id, const char *sender, uint64_t request_id, int code,
                    const char *message, uint8_t **out, size_t *len, rt_err *err);

#ifdef __cplusplus
}
#endif

#endif
