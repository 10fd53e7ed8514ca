/*
 * ramtrain-paramserver: one shard of the parameter server (DESIGN.md §1, §4,
 * §5). It owns the shard's layer blocks (ps_store) and answers requests on a
 * ZeroMQ ROUTER socket, one protobuf-c envelope per message:
 *
 *   Hello -> Ready            FetchLayer -> LayerReady (when W has the version)
 *   GradReady -> Ack          GradNorm -> GradNormReply
 *   ApplyStep -> StepCommitted (after the last block)
 *   Commit -> StepCommitted   Status -> StatusReply
 *   Checkpoint -> CheckpointDone                Shutdown -> Shutdown
 *   Heartbeat: none; the service sends its own to every peer it knows.
 *
 * Anything else, and every request it cannot serve, gets an ErrorReply and a
 * log line; a peer's bytes never crash it.
 *
 * One thread runs the loop. An optimizer step is done one block per loop
 * turn, in block order, with the socket polled between blocks: a FetchLayer
 * for a block already updated is answered at once, so the next step's
 * forward pass runs behind the optimizer, waiting at most for one block.
 *
 * Signals: SIGTERM/SIGINT only set a flag; the loop finishes the block in
 * hand and exits, leaving the blocks for the next incarnation.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "services/common/bus.h"
#include "services/common/envelope.h"
#include "services/common/log.h"
#include "services/paramserver/ps_store.h"
#include "storage/checkpoint.h"

#define PS_MAX_PENDING 4096            /* FetchLayer requests waiting for a version */
#define PS_MAX_PEERS 64

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

typedef struct ps_pending {
    bus_peer peer;
    uint64_t request_id;
    uint32_t block;
    uint64_t min_version;
} ps_pending;

typedef struct ps_peer {
    bus_peer peer;
    double last_seen;
    char role[32];
} ps_peer;

typedef struct ps_service {
    bus_server bus;
    ps_store *store;
    int shard;
    uint64_t next_request;
    unsigned heartbeat_ms;
    double last_heartbeat;
    uint64_t heartbeat_seq;
    ps_pending *pending;               /* [PS_MAX_PENDING] */
    int n_pending;
    ps_peer peers[PS_MAX_PEERS];
    int n_peers;
    bool step_reply;                   /* ApplyStep requester waits for StepCommitted */
    bus_peer step_peer;
    uint64_t step_request;
    uint64_t step_id;
    double step_t0;
    bool shutdown;
    bool remove_state;
} ps_service;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- replies ---------------------------------------------------------------- */

#define REPLY_INIT(e, req) env_init(&(e), sv->bus.run_id, sv->bus.sender, (req))

static void reply_layer_ready(ps_service *sv, const bus_peer *to, uint64_t req, uint32_t block)
{
    const ps_block *pb = ps_block_get(sv->store, (int)block);
    Ramtrain__Envelope e;
    Ramtrain__LayerReady r = RAMTRAIN__LAYER_READY__INIT;
    REPLY_INIT(e, req);
    r.has_block = 1, r.block = block;
    r.has_version = 1, r.version = ps_block_version(sv->store, (int)block);
    r.has_shard = 1, r.shard = (uint32_t)sv->shard;
    r.shm_path = (char *)pb->shm.path;
    r.has_w_offset = 1, r.w_offset = pb->l->sec_off[LB_SEC_W];
    r.has_w_bytes = 1, r.w_bytes = pb->l->w_bytes;
    r.has_g_offset = 1, r.g_offset = pb->l->sec_off[LB_SEC_G0];
    r.has_n_gslots = 1, r.n_gslots = (uint32_t)pb->l->n_gslots;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_LAYER_READY;
    e.layer_ready = &r;
    bus_server_send(&sv->bus, to, &e);
}

static void reply_committed(ps_service *sv, const bus_peer *to, uint64_t req, uint64_t step,
                            double seconds)
{
    Ramtrain__Envelope e;
    Ramtrain__StepCommitted r = RAMTRAIN__STEP_COMMITTED__INIT;
    REPLY_INIT(e, req);
    r.has_step = 1, r.step = step;
    r.has_data_cursor = 1, r.data_cursor = ps_data_cursor(sv->store);
    r.has_shard = 1, r.shard = (uint32_t)sv->shard;
    r.has_seconds = seconds >= 0, r.seconds = seconds;
    r.has_lr = 1, r.lr = ps_lr(ps_opt(sv->store), step);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_STEP_COMMITTED;
    e.step_committed = &r;
    bus_server_send(&sv->bus, to, &e);
}

/* Answers every pending FetchLayer that block's new version satisfies. */
static void serve_pending(ps_service *sv, int block)
{
    uint64_t v = ps_block_version(sv->store, block);
    int k = 0;
    for (int i = 0; i < sv->n_pending; i++) {
        ps_pending *p = &sv->pending[i];
        if ((int)p->block == block && p->min_version <= v)
            reply_layer_ready(sv, &p->peer, p->request_id, p->block);
        else
            sv->pending[k++] = *p;
    }
    sv->n_pending = k;
}

static void note_peer(ps_service *sv, const bus_peer *id, const char *role)
{
    double t = now_s();
    for (int i = 0; i < sv->n_peers; i++)
        if (sv->peers[i].peer.len == id->len && memcmp(sv->peers[i].peer.id, id->id, id->len) == 0) {
            sv->peers[i].last_seen = t;
            if (role != NULL)
                snprintf(sv->peers[i].role, sizeof sv->peers[i].role, "%s", role);
            return;
        }
    int slot = sv->n_peers < PS_MAX_PEERS ? sv->n_peers++ : 0;
    if (slot == 0 && sv->n_peers == PS_MAX_PEERS) /* full: replace the stalest */
        for (int i = 1; i < PS_MAX_PEERS; i++)
            if (sv->peers[i].last_seen < sv->peers[slot].last_seen)
                slot = i;
    sv->peers[slot].peer = *id;
    sv->peers[slot].last_seen = t;
    snprintf(sv->peers[slot].role, sizeof sv->peers[slot].role, "%s", role ? role : "?");
}

static void send_heartbeats(ps_service *sv)
{
    double t = now_s();
    if (t - sv->last_heartbeat < sv->heartbeat_ms / 1000.0)
        return;
    sv->last_heartbeat = t;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int k = 0;
    for (int i = 0; i < sv->n_peers; i++) {
        /* a peer silent for 10 intervals is gone; stop talking to it */
        if (t - sv->peers[i].last_seen > 10 * sv->heartbeat_ms / 1000.0)
            continue;
        sv->peers[k++] = sv->peers[i];
        Ramtrain__Envelope e;
        Ramtrain__Heartbeat h = RAMTRAIN__HEARTBEAT__INIT;
        REPLY_INIT(e, sv->next_request++);
        h.has_seq = 1, h.seq = sv->heartbeat_seq;
        h.has_time_ns = 1, h.time_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        e.body_case = RAMTRAIN__ENVELOPE__BODY_HEARTBEAT;
        e.heartbeat = &h;
        bus_server_send(&sv->bus, &sv->peers[i].peer, &e);
    }
    sv->n_peers = k;
    sv->heartbeat_seq++;
}

/* ---- requests ------------------------------------------------------------------ */

#define NEED(msg, field, name)                                                              \
    do {                                                                                    \
        if (!(msg)->has_##field) {                                                          \
            bus_server_refuse(&sv->bus, from, req, -EINVAL, name "." #field ": not set");               \
            return;                                                                         \
        }                                                                                   \
    } while (0)

static void on_hello(ps_service *sv, const bus_peer *from, uint64_t req,
                     const Ramtrain__Hello *m)
{
    note_peer(sv, from, m->role);
    log_info("hello from %s (pid %u, incarnation %llu)", m->role ? m->role : "?",
             m->has_pid ? m->pid : 0, (unsigned long long)m->incarnation);
    Ramtrain__Envelope e;
    Ramtrain__Ready r = RAMTRAIN__READY__INIT;
    REPLY_INIT(e, req);
    r.role = "paramserver";
    r.has_pid = 1, r.pid = (uint32_t)getpid();
    uint64_t done = ps_steps_committed(sv->store);
    r.has_committed_step = done > 0, r.committed_step = done - 1;
    r.has_data_cursor = 1, r.data_cursor = ps_data_cursor(sv->store);
    r.has_heartbeat_ms = 1, r.heartbeat_ms = sv->heartbeat_ms;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_READY;
    e.ready = &r;
    bus_server_send(&sv->bus, from, &e);
}

static void on_fetch(ps_service *sv, const bus_peer *from, uint64_t req,
                     const Ramtrain__FetchLayer *m)
{
    NEED(m, block, "fetch_layer");
    NEED(m, min_version, "fetch_layer");
    char msg[256];
    if (ps_block_get(sv->store, (int)m->block) == NULL) {
        snprintf(msg, sizeof msg, "fetch_layer.block: %u is not on this shard (blocks %d..%d)",
                 m->block, ps_first_block(sv->store),
                 ps_first_block(sv->store) + ps_n_blocks(sv->store) - 1);
        bus_server_refuse(&sv->bus, from, req, -EINVAL, msg);
        return;
    }
    uint64_t v = ps_block_version(sv->store, (int)m->block);
    if (m->min_version <= v) {
        reply_layer_ready(sv, from, req, m->block);
        return;
    }
    /* Version v+1 comes with the step being applied (or the next one). */
    uint64_t done = ps_steps_committed(sv->store);
    if (m->min_version > done + 1) {
        snprintf(msg, sizeof msg,
                 "fetch_layer.min_version: %llu is more than one step past the %llu steps "
                 "committed",
                 (unsigned long long)m->min_version, (unsigned long long)done);
        bus_server_refuse(&sv->bus, from, req, -EINVAL, msg);
        return;
    }
    if (sv->n_pending == PS_MAX_PENDING) {
        bus_server_refuse(&sv->bus, from, req, -EAGAIN, "fetch_layer: too many requests waiting");
        return;
    }
    sv->pending[sv->n_pending++] = (ps_pending){.peer = *from, .request_id = req,
                                                .block = m->block, .min_version = m->min_version};
}

static void on_grad_ready(ps_service *sv, const bus_peer *from, uint64_t req,
                          const Ramtrain__GradReady *m)
{
    NEED(m, block, "grad_ready");
    NEED(m, step, "grad_ready");
    NEED(m, micro, "grad_ready");
    NEED(m, slot, "grad_ready");
    rt_err err = {{0}};
    int rc = ps_grad_ready(sv->store, (int)m->block, m->step, m->micro, m->slot, &err);
    if (rc < 0) {
        bus_server_refuse(&sv->bus, from, req, rc, err.msg);
        return;
    }
    Ramtrain__Envelope e;
    Ramtrain__Ack a = RAMTRAIN__ACK__INIT;
    REPLY_INIT(e, req);
    a.has_block = 1, a.block = m->block;
    a.has_step = 1, a.step = m->step;
    a.has_micro = 1, a.micro = m->micro;
    a.has_duplicate = 1, a.duplicate = rc == 1;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_ACK;
    e.ack = &a;
    bus_server_send(&sv->bus, from, &e);
}

static void on_grad_norm(ps_service *sv, const bus_peer *from, uint64_t req,
                         const Ramtrain__GradNorm *m)
{
    NEED(m, step, "grad_norm");
    rt_err err = {{0}};
    double sumsq;
    int rc = ps_grad_sumsq(sv->store, m->step, &sumsq, &err);
    if (rc < 0) {
        bus_server_refuse(&sv->bus, from, req, rc, err.msg);
        return;
    }
    Ramtrain__Envelope e;
    Ramtrain__GradNormReply r = RAMTRAIN__GRAD_NORM_REPLY__INIT;
    REPLY_INIT(e, req);
    r.has_step = 1, r.step = m->step;
    r.has_sumsq = 1, r.sumsq = sumsq;
    r.has_shard = 1, r.shard = (uint32_t)sv->shard;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_GRAD_NORM_REPLY;
    e.grad_norm_reply = &r;
    bus_server_send(&sv->bus, from, &e);
}

static void on_apply_step(ps_service *sv, const bus_peer *from, uint64_t req,
                          const Ramtrain__ApplyStep *m)
{
    NEED(m, step, "apply_step");
    if (sv->step_reply) {
        bus_server_refuse(&sv->bus, from, req, -EBUSY, "apply_step: a step is already being applied");
        return;
    }
    double clip = m->has_clip_factor ? m->clip_factor : 1.0;
    rt_err err = {{0}};
    int rc = ps_step_begin(sv->store, m->step, clip, m->has_data_cursor, m->data_cursor, &err);
    if (rc < 0) {
        bus_server_refuse(&sv->bus, from, req, rc, err.msg);
        return;
    }
    sv->step_reply = true;
    sv->step_peer = *from;
    sv->step_request = req;
    sv->step_id = m->step;
    sv->step_t0 = now_s();
}

static void on_commit(ps_service *sv, const bus_peer *from, uint64_t req,
                      const Ramtrain__Commit *m)
{
    NEED(m, step, "commit");
    NEED(m, data_cursor, "commit");
    rt_err err = {{0}};
    int rc = ps_stepping(sv->store) ? err_set(&err, -EBUSY, "commit: the step is still running")
                                    : ps_commit(sv->store, m->step, m->data_cursor, &err);
    if (rc < 0) {
        bus_server_refuse(&sv->bus, from, req, rc, err.msg);
        return;
    }
    reply_committed(sv, from, req, m->step, -1);
}

static void on_status(ps_service *sv, const bus_peer *from, uint64_t req)
{
    Ramtrain__Envelope e;
    Ramtrain__StatusReply r = RAMTRAIN__STATUS_REPLY__INIT;
    REPLY_INIT(e, req);
    uint64_t ram, spill, astep;
    uint32_t amicro;
    ps_usage(sv->store, &ram, &spill);
    ps_accum_state(sv->store, &astep, &amicro);
    r.has_steps_committed = 1, r.steps_committed = ps_steps_committed(sv->store);
    r.has_data_cursor = 1, r.data_cursor = ps_data_cursor(sv->store);
    r.has_shard = 1, r.shard = (uint32_t)sv->shard;
    r.has_n_blocks = 1, r.n_blocks = (uint32_t)ps_n_blocks(sv->store);
    r.has_accum_step = 1, r.accum_step = astep;
    r.has_accum_micros = 1, r.accum_micros = amicro;
    r.has_ram_bytes = 1, r.ram_bytes = ram;
    r.has_spill_bytes = 1, r.spill_bytes = spill;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_STATUS_REPLY;
    e.status_reply = &r;
    bus_server_send(&sv->bus, from, &e);
}

static void on_checkpoint(ps_service *sv, const bus_peer *from, uint64_t req,
                          const Ramtrain__Checkpoint *m)
{
    if (m->dir == NULL || m->dir[0] == '\0') {
        bus_server_refuse(&sv->bus, from, req, -EINVAL, "checkpoint.dir: not set");
        return;
    }
    char path[4096];
    uint64_t bytes = 0;
    rt_err err = {{0}};
    double t0 = now_s();
    int rc = ps_checkpoint(sv->store, m->dir, m->has_keep ? m->keep : 0,
                           m->has_compute_dtype && m->compute_dtype, path, sizeof path, &bytes,
                           &err);
    if (rc < 0) {
        bus_server_refuse(&sv->bus, from, req, rc, err.msg);
        return;
    }
    Ramtrain__Envelope e;
    Ramtrain__CheckpointDone r = RAMTRAIN__CHECKPOINT_DONE__INIT;
    REPLY_INIT(e, req);
    r.has_step = 1, r.step = ps_steps_committed(sv->store);
    r.path = path;
    r.has_bytes = 1, r.bytes = bytes;
    r.has_seconds = 1, r.seconds = now_s() - t0;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_CHECKPOINT_DONE;
    e.checkpoint_done = &r;
    bus_server_send(&sv->bus, from, &e);
}

static void on_shutdown(ps_service *sv, const bus_peer *from, uint64_t req,
                        const Ramtrain__Shutdown *m)
{
    log_info("shutdown requested (%s)%s", m->reason ? m->reason : "no reason given",
             m->has_remove_state && m->remove_state ? ": removing the run's blocks" : "");
    sv->shutdown = true;
    sv->remove_state = m->has_remove_state && m->remove_state;
    Ramtrain__Envelope e;
    Ramtrain__Shutdown r = RAMTRAIN__SHUTDOWN__INIT;
    REPLY_INIT(e, req);
    r.reason = "acknowledged";
    e.body_case = RAMTRAIN__ENVELOPE__BODY_SHUTDOWN;
    e.shutdown = &r;
    bus_server_send(&sv->bus, from, &e);
}

/* Takes one message and serves it; bus_server_recv's return. */
static int on_message(ps_service *sv)
{
    bus_peer from;
    Ramtrain__Envelope *e;
    uint64_t req;
    int rc = bus_server_recv(&sv->bus, &from, &e, &req);
    if (rc <= 0)
        return rc;
    note_peer(sv, &from, NULL);
    switch (e->body_case) {
    case RAMTRAIN__ENVELOPE__BODY_HELLO: on_hello(sv, &from, req, e->hello); break;
    case RAMTRAIN__ENVELOPE__BODY_HEARTBEAT: break;
    case RAMTRAIN__ENVELOPE__BODY_FETCH_LAYER: on_fetch(sv, &from, req, e->fetch_layer); break;
    case RAMTRAIN__ENVELOPE__BODY_GRAD_READY: on_grad_ready(sv, &from, req, e->grad_ready); break;
    case RAMTRAIN__ENVELOPE__BODY_GRAD_NORM: on_grad_norm(sv, &from, req, e->grad_norm); break;
    case RAMTRAIN__ENVELOPE__BODY_APPLY_STEP: on_apply_step(sv, &from, req, e->apply_step); break;
    case RAMTRAIN__ENVELOPE__BODY_COMMIT: on_commit(sv, &from, req, e->commit); break;
    case RAMTRAIN__ENVELOPE__BODY_STATUS: on_status(sv, &from, req); break;
    case RAMTRAIN__ENVELOPE__BODY_CHECKPOINT: on_checkpoint(sv, &from, req, e->checkpoint); break;
    case RAMTRAIN__ENVELOPE__BODY_SHUTDOWN: on_shutdown(sv, &from, req, e->shutdown); break;
    default: {
        char msg[128];
        snprintf(msg, sizeof msg, "envelope.%s: not a request the parameter server serves",
                 env_body_name(e));
        bus_server_refuse(&sv->bus, &from, req, -ENOTSUP, msg);
    }
    }
    env_free(e);
    return rc;
}

/* One block of the step in progress; replies when the step is done. */
static void step_one(ps_service *sv)
{
    rt_err err = {{0}};
    int block = -1;
    int rc = ps_step_next(sv->store, &block, &err);
    if (rc == 0) {
        serve_pending(sv, block);
        return;
    }
    if (rc < 0) {
        log_error("optimizer step %llu failed: %s", (unsigned long long)sv->step_id, err.msg);
        if (sv->step_reply)
            bus_server_refuse(&sv->bus, &sv->step_peer, sv->step_request, rc, err.msg);
        sv->step_reply = false;
        return;
    }
    double secs = now_s() - sv->step_t0;
    log_debug("step %llu applied in %.3f s", (unsigned long long)sv->step_id, secs);
    if (sv->step_reply)
        reply_committed(sv, &sv->step_peer, sv->step_request, sv->step_id, secs);
    sv->step_reply = false;
}

static int serve(ps_service *sv)
{
    while (!g_stop && !(sv->shutdown && !ps_stepping(sv->store))) {
        zmq_pollitem_t it = {.socket = sv->bus.sock, .events = ZMQ_POLLIN};
        long timeout = ps_stepping(sv->store) ? 0 : (long)sv->heartbeat_ms;
        int n = zmq_poll(&it, 1, timeout);
        if (n < 0 && zmq_errno() != EINTR) {
            log_error("zmq_poll: %s", zmq_strerror(zmq_errno()));
            return -EIO;
        }
        for (int k = 0; n > 0 && k < 64 && (it.revents & ZMQ_POLLIN); k++)
            if (on_message(sv) == -EAGAIN)
                break;
        if (ps_stepping(sv->store))
            step_one(sv);
        send_heartbeats(sv);
    }
    return 0;
}

/* ---- command line -------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ramtrain-paramserver --run-id ID (--endpoint EP | --run-dir DIR)\n"
            "         (--config CONFIG.json [--seed N] | --model HF_DIR | --resume-from CKPT)\n"
            "  model:      --compute f32|bf16  --gslots N  --shard N  --blocks FIRST:COUNT\n"
            "  optimizer:  --lr X --beta1 X --beta2 X --eps X --weight-decay X\n"
            "              --schedule constant|cosine|linear --warmup-steps N --total-steps N\n"
            "              --min-lr X --micro-batches K\n"
            "  machine:    --threads N --numa interleave|none|gpu:PCI_ID --ram-budget SIZE\n"
            "              --spill-dir DIR --io auto|uring|sync --no-huge-pages\n"
            "  service:    --heartbeat-ms N\n"
            "Blocks of an existing run are attached to (and validated) instead of created.\n");
}

static int bad(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "ramtrain-paramserver: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 2;
}

static int parse_double(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno != 0 || !(v >= lo && v <= hi)) {
        fprintf(stderr, "ramtrain-paramserver: option %s: \"%s\" is not a number in [%g, %g]\n",
                opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_u64(const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    return bus_opt_u64("ramtrain-paramserver", opt, s, lo, hi, out);
}

/* "512M", "8G", "1048576": bytes. */
static int parse_size(const char *opt, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1ull << 10, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1ull << 20, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1ull << 30, end++;
    else if (*end == 't' || *end == 'T')
        mul = 1ull << 40, end++;
    if (*end == 'i' && mul > 1)
        end++;
    if (*end == 'B' && mul > 1)
        end++;
    if (*s == '\0' || *end != '\0' || errno != 0 || !(v >= 0) || v * (double)mul > 1e18) {
        fprintf(stderr, "ramtrain-paramserver: option %s: \"%s\" is not a size (e.g. 512M, 8G)\n",
                opt, s);
        return -1;
    }
    *out = (uint64_t)(v * (double)mul);
    return 0;
}

enum {
    O_RUN_ID = 256, O_ENDPOINT, O_RUN_DIR, O_CONFIG, O_MODEL, O_RESUME, O_SEED, O_COMPUTE,
    O_GSLOTS, O_SHARD, O_BLOCKS, O_LR, O_BETA1, O_BETA2, O_EPS, O_WD, O_SCHED, O_WARMUP,
    O_TOTAL, O_MIN_LR, O_MICRO, O_THREADS, O_NUMA, O_BUDGET, O_SPILL, O_IO, O_NO_HUGE, O_HB,
    O_HELP,
};

static const struct option OPTS[] = {
    {"run-id", required_argument, 0, O_RUN_ID}, {"endpoint", required_argument, 0, O_ENDPOINT},
    {"run-dir", required_argument, 0, O_RUN_DIR}, {"config", required_argument, 0, O_CONFIG},
    {"model", required_argument, 0, O_MODEL}, {"resume-from", required_argument, 0, O_RESUME},
    {"seed", required_argument, 0, O_SEED}, {"compute", required_argument, 0, O_COMPUTE},
    {"gslots", required_argument, 0, O_GSLOTS}, {"shard", required_argument, 0, O_SHARD},
    {"blocks", required_argument, 0, O_BLOCKS}, {"lr", required_argument, 0, O_LR},
    {"beta1", required_argument, 0, O_BETA1}, {"beta2", required_argument, 0, O_BETA2},
    {"eps", required_argument, 0, O_EPS}, {"weight-decay", required_argument, 0, O_WD},
    {"schedule", required_argument, 0, O_SCHED}, {"warmup-steps", required_argument, 0, O_WARMUP},
    {"total-steps", required_argument, 0, O_TOTAL}, {"min-lr", required_argument, 0, O_MIN_LR},
    {"micro-batches", required_argument, 0, O_MICRO}, {"threads", required_argument, 0, O_THREADS},
    {"numa", required_argument, 0, O_NUMA}, {"ram-budget", required_argument, 0, O_BUDGET},
    {"spill-dir", required_argument, 0, O_SPILL}, {"io", required_argument, 0, O_IO},
    {"no-huge-pages", no_argument, 0, O_NO_HUGE}, {"heartbeat-ms", required_argument, 0, O_HB},
    {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0},
};

int main(int argc, char **argv)
{
    log_init("paramserver", LOG_LEVEL_INFO);
    ps_config c = {.compute = DT_F32, .n_gslots = 2, .try_huge = true, .io = IO_KIND_AUTO,
                   .opt = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                           .weight_decay = 0.01, .micro_batches = 1}};
    const char *endpoint = NULL, *run_dir = NULL, *config = NULL;
    uint64_t u, hb = 1000;
    int opt, li = -1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", OPTS, &li)) != -1) {
        char name[64];
        snprintf(name, sizeof name, "--%s", li >= 0 ? OPTS[li].name : "?");
        li = -1;
        switch (opt) {
        case O_RUN_ID: c.run_id = optarg; break;
        case O_ENDPOINT: endpoint = optarg; break;
        case O_RUN_DIR: run_dir = optarg; break;
        case O_CONFIG: config = optarg; break;
        case O_MODEL: c.init_from = optarg; break;
        case O_RESUME: c.resume_from = optarg; break;
        case O_SEED: if (parse_u64(name, optarg, 0, UINT64_MAX, &c.seed) < 0) return 2; break;
        case O_COMPUTE:
            if (strcmp(optarg, "f32") == 0 || strcmp(optarg, "fp32") == 0)
                c.compute = DT_F32;
            else if (strcmp(optarg, "bf16") == 0)
                c.compute = DT_BF16;
            else
                return bad("option --compute: \"%s\" is not f32 or bf16%s", optarg, "");
            break;
        case O_GSLOTS: if (parse_u64(name, optarg, 1, 4, &u) < 0) return 2; c.n_gslots = (int)u; break;
        case O_SHARD: if (parse_u64(name, optarg, 0, 1023, &u) < 0) return 2; c.shard = (int)u; break;
        case O_BLOCKS: {
            int a, b, k = -1;
            if (sscanf(optarg, "%d:%d%n", &a, &b, &k) != 2 || k != (int)strlen(optarg) || a < 0 ||
                b < 1)
                return bad("option --blocks: \"%s\" is not FIRST:COUNT%s", optarg, "");
            c.first_block = a, c.n_blocks = b;
            break;
        }
        case O_LR: if (parse_double(name, optarg, 0, 10, &c.opt.lr) < 0) return 2; break;
        case O_BETA1: if (parse_double(name, optarg, 0, 0.999999, &c.opt.beta1) < 0) return 2; break;
        case O_BETA2: if (parse_double(name, optarg, 0, 0.999999999, &c.opt.beta2) < 0) return 2; break;
        case O_EPS: if (parse_double(name, optarg, 0, 1, &c.opt.eps) < 0) return 2; break;
        case O_WD: if (parse_double(name, optarg, 0, 10, &c.opt.weight_decay) < 0) return 2; break;
        case O_SCHED:
            if (strcmp(optarg, "constant") == 0)
                c.opt.schedule = PS_SCHED_CONSTANT;
            else if (strcmp(optarg, "cosine") == 0)
                c.opt.schedule = PS_SCHED_COSINE;
            else if (strcmp(optarg, "linear") == 0)
                c.opt.schedule = PS_SCHED_LINEAR;
            else
                return bad("option --schedule: \"%s\" is not constant, cosine or linear%s", optarg, "");
            break;
        case O_WARMUP: if (parse_u64(name, optarg, 0, UINT32_MAX, &c.opt.warmup_steps) < 0) return 2; break;
        case O_TOTAL: if (parse_u64(name, optarg, 0, UINT32_MAX, &c.opt.total_steps) < 0) return 2; break;
        case O_MIN_LR: if (parse_double(name, optarg, 0, 10, &c.opt.min_lr) < 0) return 2; break;
        case O_MICRO:
            if (parse_u64(name, optarg, 1, BS_MAX_MICRO, &u) < 0) return 2;
            c.opt.micro_batches = (uint32_t)u;
            break;
        case O_THREADS: if (parse_u64(name, optarg, 1, ADAMW_MAX_THREADS, &u) < 0) return 2; c.threads = (int)u; break;
        case O_NUMA: c.numa = optarg; break;
        case O_BUDGET: if (parse_size(name, optarg, &c.ram_budget) < 0) return 2; break;
        case O_SPILL: c.spill_dir = optarg; break;
        case O_IO:
            if (strcmp(optarg, "auto") == 0)
                c.io = IO_KIND_AUTO;
            else if (strcmp(optarg, "uring") == 0)
                c.io = IO_KIND_URING;
            else if (strcmp(optarg, "sync") == 0)
                c.io = IO_KIND_SYNC;
            else
                return bad("option --io: \"%s\" is not auto, uring or sync%s", optarg, "");
            break;
        case O_NO_HUGE: c.try_huge = false; break;
        case O_HB: if (parse_u64(name, optarg, 10, 60000, &hb) < 0) return 2; break;
        case O_HELP: usage(stdout); return 0;
        default:
            fprintf(stderr, "ramtrain-paramserver: unknown option or missing value: %s\n",
                    optind > 1 ? argv[optind - 1] : "?");
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc)
        return bad("unexpected argument \"%s\"%s", argv[optind], "");
    if (c.run_id == NULL)
        return bad("--run-id is required%s%s", "", "");
    rt_err rerr = {{0}};
    if (bs_run_id_check(c.run_id, &rerr) < 0)
        return bad("--run-id: %s%s", rerr.msg, "");
    if ((endpoint == NULL) == (run_dir == NULL))
        return bad("give exactly one of --endpoint and --run-dir%s%s", "", "");
    int sources = (config != NULL) + (c.init_from != NULL) + (c.resume_from != NULL);
    if (sources != 1)
        return bad("give exactly one of --config, --model and --resume-from%s%s", "", "");
    if (c.opt.schedule != PS_SCHED_CONSTANT && c.opt.total_steps <= c.opt.warmup_steps)
        return bad("--schedule %s needs --total-steps greater than --warmup-steps%s",
                   c.opt.schedule == PS_SCHED_COSINE ? "cosine" : "linear", "");
    if (c.opt.min_lr > c.opt.lr)
        return bad("--min-lr must not exceed --lr%s%s", "", "");

    char cfg_path[CKPT_PATH_MAX + 16], ep[4200];
    if (config == NULL) {
        const char *dir = c.init_from ? c.init_from : c.resume_from;
        struct stat st;
        if (c.resume_from != NULL) {
            rt_err e2 = {{0}};
            char step_dir[CKPT_PATH_MAX];
            uint64_t step;
            if (ckpt_locate(c.resume_from, &step, step_dir, sizeof step_dir, &e2) < 0)
                return bad("%s%s", e2.msg, "");
            snprintf(cfg_path, sizeof cfg_path, "%s/config.json", step_dir);
        } else if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
            snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
        } else {
            return bad("--model %s: give the model's directory (with config.json)%s", dir, "");
        }
        config = cfg_path;
    }
    rt_err err = {{0}};
    if (model_config_load(config, &c.model, &err) < 0)
        return bad("%s%s", err.msg, "");
    if (run_dir != NULL) {
        char sock_dir[4096];
        snprintf(sock_dir, sizeof sock_dir, "%s/sock", run_dir);
        mkdir(run_dir, 0700);
        if (mkdir(sock_dir, 0700) < 0 && errno != EEXIST)
            return bad("cannot create %s: %s", sock_dir, strerror(errno));
        snprintf(ep, sizeof ep, "ipc://%s/sock/paramserver", run_dir);
        if (c.shard > 0)
            snprintf(ep, sizeof ep, "ipc://%s/sock/paramserver.%d", run_dir, c.shard);
        endpoint = ep;
    }

    ps_service sv = {.shard = c.shard, .heartbeat_ms = (unsigned)hb};
    sv.pending = calloc(PS_MAX_PENDING, sizeof *sv.pending);
    if (sv.pending == NULL)
        return 1;

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = ps_store_open(&c, &sv.store, &err);
    if (rc < 0) {
        log_error("%s", err.msg);
        free(sv.pending);
        return rc == -ENOMEM || rc == -EIO ? 1 : 2;
    }
    char sender[64];
    snprintf(sender, sizeof sender, "paramserver.%d", c.shard);
    if ((rc = bus_server_open(&sv.bus, c.run_id, sender, endpoint, &err)) < 0) {
        log_error("%s", err.msg);
    } else {
        log_info("serving run %s shard %d on %s (blocks %d..%d, step %llu)", c.run_id, c.shard,
                 endpoint, ps_first_block(sv.store),
                 ps_first_block(sv.store) + ps_n_blocks(sv.store) - 1,
                 (unsigned long long)ps_steps_committed(sv.store));
        rc = serve(&sv);
    }
    bus_server_close(&sv.bus);
    ps_store_close(sv.store, sv.remove_state);
    free(sv.pending);
    log_info("exiting%s", g_stop ? " on a signal" : "");
    return rc < 0 ? 1 : 0;
}
