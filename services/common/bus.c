/*
 * bus: ZeroMQ sockets carrying envelopes (see bus.h).
 *
 * A server receives without blocking (the service's loop polls the socket
 * together with its other work) and keeps at most three frames of a message:
 * the identity, the one payload frame and a third to tell "too many" from
 * "one"; further frames are counted and dropped, so a peer cannot make it
 * hold more than one envelope's bytes.
 *
 * Sends never fail the caller: a reply that cannot be packed is a bug logged
 * as an error; one that cannot be sent (EHOSTUNREACH: the peer went away) is
 * a warning, since the peer asks again when it is back.
 */
#include "services/common/bus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "services/common/log.h"

/* ---- server ------------------------------------------------------------------- */

int bus_server_open(bus_server *b, const char *run_id, const char *sender, const char *endpoint,
                    rt_err *err)
{
    memset(b, 0, sizeof *b);
    b->run_id = run_id;
    snprintf(b->sender, sizeof b->sender, "%s", sender);
    b->zctx = zmq_ctx_new();
    b->sock = b->zctx != NULL ? zmq_socket(b->zctx, ZMQ_ROUTER) : NULL;
    if (b->sock == NULL) {
        err_set(err, -ENOMEM, "cannot create a ZeroMQ socket: %s", zmq_strerror(zmq_errno()));
        bus_server_close(b);
        return -ENOMEM;
    }
    int one = 1, zero = 0;
    int64_t maxmsg = BUS_MAX_FRAME;
    zmq_setsockopt(b->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(b->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(b->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (zmq_bind(b->sock, endpoint) < 0) {
        err_set(err, -EADDRINUSE, "cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
        bus_server_close(b);
        return -EADDRINUSE;
    }
    return 0;
}

void bus_server_close(bus_server *b)
{
    if (b->sock != NULL)
        zmq_close(b->sock);
    if (b->zctx != NULL)
        zmq_ctx_term(b->zctx);
    b->sock = b->zctx = NULL;
}

static void send_bytes(bus_server *b, const bus_peer *to, const uint8_t *buf, size_t len)
{
    if (zmq_send(b->sock, to->id, to->len, ZMQ_SNDMORE) < 0 ||
        zmq_send(b->sock, buf, len, 0) < 0)
        log_warn("cannot send to a peer: %s", zmq_strerror(zmq_errno()));
}

void bus_server_send(bus_server *b, const bus_peer *to, const Ramtrain__Envelope *e)
{
    uint8_t *buf;
    size_t len;
    rt_err err = {{0}};
    if (env_pack_alloc(e, &buf, &len, &err) < 0) {
        log_error("cannot pack a %s reply: %s", env_body_name(e), err.msg);
        return;
    }
    send_bytes(b, to, buf, len);
    free(buf);
}

void bus_server_refuse(bus_server *b, const bus_peer *to, uint64_t request_id, int code,
                       const char *msg)
{
    uint8_t *buf;
    size_t len;
    rt_err err = {{0}};
    log_warn("request %llu refused: %s", (unsigned long long)request_id, msg);
    if (env_error_reply(b->run_id, b->sender, request_id, code < 0 ? code : -EINVAL, msg, &buf,
                        &len, &err) < 0) {
        log_error("cannot build an error reply: %s", err.msg);
        return;
    }
    send_bytes(b, to, buf, len);
    free(buf);
}

int bus_server_recv(bus_server *b, bus_peer *from, Ramtrain__Envelope **out, uint64_t *request_id)
{
    zmq_msg_t parts[3];
    int n = 0, more = 1, rc;
    size_t extra = 0;
    *out = NULL;
    *request_id = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, b->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 3)
            parts[n++] = m;
        else
            extra++, zmq_msg_close(&m);
    }
    if (n == 0)
        return -EAGAIN;
    size_t id_len = zmq_msg_size(&parts[0]);
    from->len = id_len < BUS_IDENT_MAX ? id_len : BUS_IDENT_MAX;
    memcpy(from->id, zmq_msg_data(&parts[0]), from->len);
    if (n != 2 || extra > 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "expected one message frame, got %zu", (size_t)n - 1 + extra);
        bus_server_refuse(b, from, 0, -EBADMSG, msg);
        rc = 0;
        goto out;
    }
    rt_err err = {{0}};
    rc = env_unpack(zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), b->run_id, out, request_id,
                    &err);
    if (rc < 0) {
        bus_server_refuse(b, from, *request_id, rc, err.msg);
        rc = 0;
        goto out;
    }
    rc = 1;
out:
    for (int i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
    return rc;
}

/* ---- client ------------------------------------------------------------------- */

int bus_client_connect(bus_client *c, void *zctx, const char *endpoint, rt_err *err)
{
    bus_client_close(c);
    c->sock = zmq_socket(zctx, ZMQ_DEALER);
    if (c->sock == NULL)
        return err_set(err, -ENOMEM, "cannot create a ZeroMQ socket: %s",
                       zmq_strerror(zmq_errno()));
    int zero = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(c->sock, endpoint) < 0)
        return err_set(err, -EINVAL, "connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
    return 0;
}

void bus_client_close(bus_client *c)
{
    if (c->sock != NULL)
        zmq_close(c->sock);
    c->sock = NULL;
}

int bus_client_send(bus_client *c, const Ramtrain__Envelope *e, rt_err *err)
{
    uint8_t *buf;
    size_t len;
    int rc = env_pack_alloc(e, &buf, &len, err);
    if (rc < 0)
        return err_prefix(err, rc, "cannot pack a %s request", env_body_name(e));
    rc = zmq_send(c->sock, buf, len, 0) < 0 ? -zmq_errno() : 0;
    free(buf);
    if (rc < 0)
        return err_set(err, rc, "cannot send a %s request: %s", env_body_name(e),
                       zmq_strerror(-rc));
    return 0;
}

/* 1 when a message is waiting, 0 after timeout_ms or when c->gone says so. */
static int wait_in(bus_client *c, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += BUS_POLL_SLICE_MS) {
        zmq_pollitem_t it = {.socket = c->sock, .events = ZMQ_POLLIN};
        int left = timeout_ms - waited;
        if (zmq_poll(&it, 1, left < BUS_POLL_SLICE_MS ? left : BUS_POLL_SLICE_MS) > 0)
            return 1;
        if (c->gone != NULL && c->gone(c->gone_arg))
            return 0;
    }
    return 0;
}

int bus_client_recv(bus_client *c, const uint64_t *request_id, int timeout_ms,
                    Ramtrain__Envelope **out, rt_err *err)
{
    *out = NULL;
    for (;;) {
        if (!wait_in(c, timeout_ms))
            return 0;
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->sock, 0) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&m);
            return err_set(err, -e, "receive: %s", zmq_strerror(e));
        }
        Ramtrain__Envelope *r = NULL;
        int rc = env_unpack(zmq_msg_data(&m), zmq_msg_size(&m), c->run_id, &r, NULL, err);
        zmq_msg_close(&m);
        if (rc < 0)
            return err_prefix(err, rc, "bad reply");
        if (r->body_case != RAMTRAIN__ENVELOPE__BODY_HEARTBEAT &&
            (request_id == NULL || r->request_id == *request_id)) {
            *out = r;
            return 1;
        }
        env_free(r);
    }
}

int bus_client_call(bus_client *c, const Ramtrain__Envelope *e, int timeout_ms,
                    Ramtrain__Envelope **out, rt_err *err)
{
    *out = NULL;
    int rc = bus_client_send(c, e, err);
    return rc < 0 ? rc : bus_client_recv(c, &e->request_id, timeout_ms, out, err);
}

/* ---- command line ------------------------------------------------------------- */

int bus_opt_u64(const char *prog, const char *opt, const char *s, uint64_t lo, uint64_t hi,
                uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    /* a digit first: strtoull would take " -1" as 2^64 - 1 */
    if (!(*s >= '0' && *s <= '9') || *end != '\0' || errno != 0 || v < lo || v > hi) {
        fprintf(stderr, "%s: option %s: \"%s\" is not an integer in [%llu, %llu]\n", prog, opt,
                s, (unsigned long long)lo, (unsigned long long)hi);
        return -1;
    }
    *out = v;
    return 0;
}
