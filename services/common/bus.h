/*
 * bus: the ZeroMQ side of the services' messaging (DESIGN.md §5). Every
 * message is one envelope (services/common/envelope.h) in one frame.
 *
 * Server side (a service: the parameter server, the data loader): a ROUTER
 * socket bound to the service's endpoint. bus_server_recv takes one
 * [identity, payload] message, checks its frames and unpacks and validates
 * the envelope; whatever it cannot accept it answers itself with an
 * ErrorReply and a "request N refused: ..." warning, so a peer's bytes never
 * reach the service's handlers unchecked. Replies go back to the identity.
 *
 * Client side (a worker, the tests' drivers, the benches): a DEALER socket
 * connected to a service. bus_client_call sends a request and waits for the
 * reply with the same request id, skipping heartbeats and stale replies.
 *
 * Threads: a bus_server or bus_client is used by one thread (ZeroMQ sockets
 * are not thread-safe). Nothing here keeps global state.
 *
 * Rejected: czmq's zsock/zmsg. Two message shapes do not need another
 * dependency, and the frames are small control messages (the tensor traffic
 * goes through shared memory).
 */
#ifndef RAMTRAIN_SERVICES_COMMON_BUS_H
#define RAMTRAIN_SERVICES_COMMON_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "services/common/envelope.h"
#include "storage/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BUS_IDENT_MAX 256              /* ZeroMQ routing ids are at most 255 bytes */
#define BUS_MAX_FRAME (64u << 20)      /* ZMQ_MAXMSGSIZE of a server: far above ENV_MAX_MSG,
                                          so an oversized envelope still gets an error reply */
#define BUS_POLL_SLICE_MS 100          /* a client's wait checks `gone` this often */

/* A peer of a ROUTER socket: its routing id. */
typedef struct bus_peer {
    uint8_t id[BUS_IDENT_MAX];
    size_t len;
} bus_peer;

typedef struct bus_server {
    void *zctx, *sock;                 /* ROUTER, bound */
    const char *run_id;                /* envelopes of another run are refused; caller's string */
    char sender[64];                   /* sender of every reply */
} bus_server;

/* Creates a ZeroMQ context and a ROUTER socket (ROUTER_MANDATORY, no linger,
 * ZMQ_MAXMSGSIZE BUS_MAX_FRAME) bound to endpoint. run_id must outlive b.
 * Returns 0, or -EADDRINUSE with err ("cannot bind EP: why") and nothing left
 * open. Does not block. */
int bus_server_open(bus_server *b, const char *run_id, const char *sender, const char *endpoint,
                    rt_err *err);

/* Closes the socket and terminates the context (a zeroed b is fine). */
void bus_server_close(bus_server *b);

/* Takes one message from the socket without blocking. Returns 1 with *from,
 * *request_id and *out (the envelope, owned by the caller, env_free()), 0
 * when the message was refused (wrong frame count, an envelope env_unpack
 * rejects: answered with an ErrorReply and logged; *from is set), or -EAGAIN
 * when nothing is waiting. */
int bus_server_recv(bus_server *b, bus_peer *from, Ramtrain__Envelope **out, uint64_t *request_id);

/* Packs e and sends it to peer `to`. A failure (a peer gone away: the socket
 * is ROUTER_MANDATORY) is logged, not returned: the peer asks again. Does not
 * block beyond ZeroMQ's queueing. */
void bus_server_send(bus_server *b, const bus_peer *to, const Ramtrain__Envelope *e);

/* Logs "request N refused: msg" and sends `to` an ErrorReply for request_id
 * with code (a negative errno; anything else is sent as -EINVAL). */
void bus_server_refuse(bus_server *b, const bus_peer *to, uint64_t request_id, int code,
                       const char *msg);

typedef struct bus_client {
    void *sock;                        /* DEALER, connected; NULL before bus_client_connect */
    const char *run_id;                /* replies of another run are errors; caller's string */
    bool (*gone)(void *arg);           /* may be NULL: asked every BUS_POLL_SLICE_MS while
                                          waiting; true ends the wait (the service died) */
    void *gone_arg;
} bus_client;

/* (Re)connects c: closes its socket, if any, and opens a DEALER (no linger)
 * on zctx connected to endpoint; what was queued on the old socket is
 * dropped. Returns 0 or a negative errno with err. Does not block. */
int bus_client_connect(bus_client *c, void *zctx, const char *endpoint, rt_err *err);

/* Closes c's socket (NULL is fine). */
void bus_client_close(bus_client *c);

/* Packs e and sends it. Returns 0 or a negative errno with err. Blocks only
 * while the socket's queue is full. */
int bus_client_send(bus_client *c, const Ramtrain__Envelope *e, rt_err *err);

/* Waits up to timeout_ms for an envelope that is not a heartbeat and, when
 * request_id is not NULL, answers *request_id (others are dropped). Returns 1
 * with *out (owned by the caller, env_free()), 0 on timeout or when c->gone
 * said so, or a negative errno with err when a receive fails or the bytes are
 * not a valid envelope of c->run_id. Blocks up to timeout_ms. */
int bus_client_recv(bus_client *c, const uint64_t *request_id, int timeout_ms,
                    Ramtrain__Envelope **out, rt_err *err);

/* bus_client_send(e), then bus_client_recv for e's request id. Same returns. */
int bus_client_call(bus_client *c, const Ramtrain__Envelope *e, int timeout_ms,
                    Ramtrain__Envelope **out, rt_err *err);

/* Parses command-line value s of option opt ("--threads") as a decimal
 * integer in [lo, hi]. On anything else prints "<prog>: option OPT: "S" is
 * not an integer in [LO, HI]" on stderr and returns -1; else 0. */
int bus_opt_u64(const char *prog, const char *opt, const char *s, uint64_t lo, uint64_t hi,
                uint64_t *out);

#ifdef __cplusplus
}
#endif

#endif
