/*
 * ramtrain-worker: the process that trains (DESIGN.md §1, §4). It owns the
 * compute backend and holds no training state: everything it needs to go on
 * is the paramserver's committed step, so killed at any moment and started
 * again with the same command line it asks where the run stands and redoes
 * the unfinished step (the paramserver acknowledges, and ignores, gradients
 * it had already counted).
 *
 * For each step s of train.steps, and each micro-batch m of its
 * train.grad_accum: GetBatch(k = s*K + m) from the dataloader, forward and
 * backward through the streaming engine (services/worker/engine.h), which
 * fetches the weights and hands back the gradients. Then GradNorm, the clip
 * factor as torch.nn.utils.clip_grad_norm_ computes it, and ApplyStep with
 * the data cursor. The next step starts without waiting for StepCommitted:
 * its forward waits on each block's new version, so it runs behind the
 * optimizer one block at a time. Checkpoints (every checkpoint.every steps
 * and the last one) are asked of the paramserver at step boundaries.
 *
 * The orchestrator talks to the worker's own ROUTER (RUN_DIR/sock/worker),
 * served by a control thread: Hello -> Ready, Status -> StatusReply,
 * Shutdown (finish_step: end after the step in hand and its checkpoint),
 * heartbeats both ways, and a StepReport after every committed step.
 *
 * Exit codes: 0 done (or stopped on request), 1 failure, 2 bad input.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "gpu/backend.h"
#include "services/common/bus.h"
#include "services/common/envelope.h"
#include "services/common/log.h"
#include "services/common/run_config.h"
#include "services/dataloader/ring.h"
#include "services/worker/engine.h"
#include "services/worker/trace.h"
#include "storage/blockstore.h"

#define WK_MAX_PEERS 16
#define WK_REPORTS 64
#define WK_SLICE_MS 200

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static volatile sig_atomic_t g_term;

static void on_signal(int sig)
{
    (void)sig;
    g_term = 1;
}

typedef struct worker {
    const char *run_id, *run_dir, *config_path;
    char ps_ep[4200], dl_ep[4200], my_ep[4200], ckpt_dir[4200];
    run_config *rc;
    unsigned heartbeat_ms;
    void *zctx;
    bus_client ps, dl;
    uint32_t ps_pid, dl_pid;
    uint64_t req;
    be_backend *be;
    wk_engine *eng;
    tr_trace *trace;
    ring ring;
    bool ring_open;
    uint32_t ring_pid;
    int32_t *inputs, *targets;
    /* shared with the control thread */
    pthread_mutex_t mu;
    _Atomic bool stop_after_step, stop_now, quit;
    _Atomic uint64_t committed;        /* steps committed as last heard (UINT64_MAX: unknown) */
    _Atomic uint64_t cursor;
    Ramtrain__StepReport reports[WK_REPORTS];
    char report_paths[WK_REPORTS][512];
    int n_reports;
    bus_server srv;
    pthread_t ctl;
} worker;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static bool stopping(const worker *w) { return w->stop_now || g_term; }

/* ---- the control thread --------------------------------------------------------- */

typedef struct ctl_peer {
    bus_peer peer;
    bool used;
    double seen;                       /* last message from it; silent 10 intervals: gone */
} ctl_peer;

static void ctl_reply(worker *w, const bus_peer *to, uint64_t req, Ramtrain__Envelope *e)
{
    (void)req;
    bus_server_send(&w->srv, to, e);
}

static void *ctl_main(void *arg)
{
    worker *w = arg;
    ctl_peer peers[WK_MAX_PEERS] = {0};
    uint64_t hb_seq = 0, next_req = 0;
    double last_hb = 0;
    zmq_pollitem_t it = {.socket = w->srv.sock, .events = ZMQ_POLLIN};
    while (!w->quit) {
        zmq_poll(&it, 1, 50);
        for (;;) {
            bus_peer from;
            Ramtrain__Envelope *m = NULL;
            uint64_t req = 0;
            int rc = bus_server_recv(&w->srv, &from, &m, &req);
            if (rc == -EAGAIN)
                break;
            if (rc != 1)
                continue;
            for (int i = 0; i < WK_MAX_PEERS; i++)
                if (peers[i].used && peers[i].peer.len == from.len &&
                    memcmp(peers[i].peer.id, from.id, from.len) == 0)
                    peers[i].seen = now_s();
            Ramtrain__Envelope e;
            env_init(&e, w->run_id, "worker", req);
            switch (m->body_case) {
            case RAMTRAIN__ENVELOPE__BODY_HELLO: {
                int slot = -1;
                for (int i = 0; i < WK_MAX_PEERS; i++)
                    if (peers[i].used && peers[i].peer.len == from.len &&
                        memcmp(peers[i].peer.id, from.id, from.len) == 0)
                        slot = i;
                for (int i = 0; i < WK_MAX_PEERS && slot < 0; i++)
                    if (!peers[i].used)
                        slot = i;
                if (slot < 0)
                    slot = 0; /* full: the oldest entry goes */
                peers[slot].peer = from;
                peers[slot].used = true;
                peers[slot].seen = now_s();
                Ramtrain__Ready r = RAMTRAIN__READY__INIT;
                r.role = "worker";
                r.has_pid = 1, r.pid = (uint32_t)getpid();
                uint64_t c = w->committed;
                if (c != UINT64_MAX && c > 0)
                    r.has_committed_step = 1, r.committed_step = c - 1;
                r.has_data_cursor = 1, r.data_cursor = w->cursor;
                r.has_heartbeat_ms = 1, r.heartbeat_ms = w->heartbeat_ms;
                e.body_case = RAMTRAIN__ENVELOPE__BODY_READY;
                e.ready = &r;
                ctl_reply(w, &from, req, &e);
                break;
            }
            case RAMTRAIN__ENVELOPE__BODY_HEARTBEAT: break;
            case RAMTRAIN__ENVELOPE__BODY_STATUS: {
                Ramtrain__StatusReply r = RAMTRAIN__STATUS_REPLY__INIT;
                uint64_t c = w->committed;
                r.has_steps_committed = 1, r.steps_committed = c == UINT64_MAX ? 0 : c;
                r.has_data_cursor = 1, r.data_cursor = w->cursor;
                e.body_case = RAMTRAIN__ENVELOPE__BODY_STATUS_REPLY;
                e.status_reply = &r;
                ctl_reply(w, &from, req, &e);
                break;
            }
            case RAMTRAIN__ENVELOPE__BODY_SHUTDOWN: {
                bool finish = m->shutdown->has_finish_step && m->shutdown->finish_step;
                log_info("shutdown requested (%s)%s",
                         m->shutdown->reason ? m->shutdown->reason : "no reason given",
                         finish ? ": finishing the step in hand and checkpointing it" : "");
                if (finish)
                    w->stop_after_step = true;
                else {
                    w->stop_now = true;
                    if (w->eng != NULL)
                        wk_engine_cancel(w->eng);
                }
                Ramtrain__Shutdown r = RAMTRAIN__SHUTDOWN__INIT;
                r.reason = "acknowledged";
                e.body_case = RAMTRAIN__ENVELOPE__BODY_SHUTDOWN;
                e.shutdown = &r;
                ctl_reply(w, &from, req, &e);
                break;
            }
            default: {
                char msg[128];
                snprintf(msg, sizeof msg, "the worker does not serve %s", env_body_name(m));
                bus_server_refuse(&w->srv, &from, req, -ENOTSUP, msg);
            }
            }
            env_free(m);
        }
        double t = now_s();
        bool beat = t - last_hb >= w->heartbeat_ms * 1e-3;
        bool any_peer = false;
        for (int i = 0; i < WK_MAX_PEERS; i++)
            any_peer |= peers[i].used;
        pthread_mutex_lock(&w->mu);
        int n = any_peer ? w->n_reports : 0; /* no one to tell yet: keep them */
        Ramtrain__StepReport reps[WK_REPORTS];
        memcpy(reps, w->reports, (size_t)n * sizeof *reps);
        char paths[WK_REPORTS][512];
        memcpy(paths, w->report_paths, (size_t)n * sizeof paths[0]);
        w->n_reports -= n;
        pthread_mutex_unlock(&w->mu);
        for (int i = 0; i < WK_MAX_PEERS; i++) {
            if (peers[i].used && t - peers[i].seen > 10 * w->heartbeat_ms * 1e-3)
                peers[i].used = false; /* gone: stop talking to it */
            if (!peers[i].used)
                continue;
            Ramtrain__Envelope e;
            for (int k = 0; k < n; k++) {
                env_init(&e, w->run_id, "worker", ++next_req);
                reps[k].checkpoint_path = paths[k][0] ? paths[k] : NULL;
                e.body_case = RAMTRAIN__ENVELOPE__BODY_STEP_REPORT;
                e.step_report = &reps[k];
                bus_server_send(&w->srv, &peers[i].peer, &e);
            }
            if (beat) {
                Ramtrain__Heartbeat h = RAMTRAIN__HEARTBEAT__INIT;
                env_init(&e, w->run_id, "worker", 0);
                h.has_seq = 1, h.seq = hb_seq;
                h.has_time_ns = 1, h.time_ns = (uint64_t)(t * 1e9);
                e.body_case = RAMTRAIN__ENVELOPE__BODY_HEARTBEAT;
                e.heartbeat = &h;
                bus_server_send(&w->srv, &peers[i].peer, &e);
            }
        }
        if (beat) {
            hb_seq++;
            last_hb = t;
        }
    }
    return NULL;
}

static void queue_report(worker *w, const Ramtrain__StepReport *r, const char *ckpt_path)
{
    pthread_mutex_lock(&w->mu);
    if (w->n_reports < WK_REPORTS) {
        w->reports[w->n_reports] = *r;
        snprintf(w->report_paths[w->n_reports], sizeof w->report_paths[0], "%s",
                 ckpt_path ? ckpt_path : "");
        w->n_reports++;
    }
    pthread_mutex_unlock(&w->mu);
}

/* ---- talking to the services ------------------------------------------------------ */

static bool ps_gone(void *arg)
{
    const worker *w = arg;
    return stopping(w) || !wk_pid_alive(w->ps_pid);
}

static bool dl_gone(void *arg)
{
    const worker *w = arg;
    return stopping(w) || !wk_pid_alive(w->dl_pid);
}

/* Says Hello on a fresh socket until the service answers Ready; its pid
 * goes to *pid. -ECANCELED when the worker is asked to stop meanwhile. */
static int hello(worker *w, bus_client *c, const char *ep, const char *what, uint32_t *pid,
                 rt_err *err)
{
    double t0 = now_s(), last_log = t0;
    for (;;) {
        if (stopping(w))
            return err_set(err, -ECANCELED, "stopping");
        int rc = bus_client_connect(c, w->zctx, ep, err);
        if (rc < 0)
            return rc;
        uint32_t saved = *pid;
        *pid = 0; /* no pid to watch while we wait for an answer */
        Ramtrain__Envelope e, *r = NULL;
        Ramtrain__Hello h = RAMTRAIN__HELLO__INIT;
        env_init(&e, w->run_id, "worker", ++w->req);
        h.role = "worker";
        h.has_pid = 1, h.pid = (uint32_t)getpid();
        e.body_case = RAMTRAIN__ENVELOPE__BODY_HELLO;
        e.hello = &h;
        rc = bus_client_call(c, &e, 1000, &r, err);
        if (rc == 1 && r->body_case == RAMTRAIN__ENVELOPE__BODY_READY && r->ready->has_pid) {
            *pid = r->ready->pid;
            env_free(r);
            log_info("%s ready (pid %u)", what, *pid);
            return 0;
        }
        env_free(r);
        *pid = saved;
        if (now_s() - last_log > 10) {
            log_warn("still waiting for the %s at %s (%.0f s)", what, ep, now_s() - t0);
            last_log = now_s();
        }
    }
}

/* A request on the paramserver's control socket and its reply. 0 with *out,
 * -EPIPE when the paramserver went away (the caller reconnects), or another
 * negative errno with err. */
static int ps_request(worker *w, Ramtrain__Envelope *e, Ramtrain__Envelope **out, rt_err *err)
{
    *out = NULL;
    int rc = bus_client_send(&w->ps, e, err);
    if (rc < 0)
        return rc;
    for (;;) {
        rc = bus_client_recv(&w->ps, &e->request_id, WK_SLICE_MS, out, err);
        if (rc < 0)
            return rc;
        if (rc == 1)
            break;
        if (stopping(w))
            return err_set(err, -ECANCELED, "stopping");
        if (!wk_pid_alive(w->ps_pid))
            return err_set(err, -EPIPE, "the paramserver (pid %u) went away", w->ps_pid);
    }
    if ((*out)->body_case == RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY) {
        const Ramtrain__ErrorReply *x = (*out)->error_reply;
        rc = err_set(err, x->has_code && x->code < 0 ? x->code : -EIO, "paramserver refused %s: %s",
                     env_body_name(e), x->message ? x->message : "(no message)");
        env_free(*out);
        *out = NULL;
        return rc == -EPIPE ? -EIO : rc;
    }
    return 0;
}

static int ps_status(worker *w, uint64_t *committed, uint64_t *cursor, rt_err *err)
{
    Ramtrain__Envelope e, *r;
    Ramtrain__Status s = RAMTRAIN__STATUS__INIT;
    env_init(&e, w->run_id, "worker", ++w->req);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_STATUS;
    e.status = &s;
    int rc = ps_request(w, &e, &r, err);
    if (rc < 0)
        return rc;
    if (r->body_case != RAMTRAIN__ENVELOPE__BODY_STATUS_REPLY ||
        !r->status_reply->has_steps_committed) {
        env_free(r);
        return err_set(err, -EBADMSG, "status answered with %s", env_body_name(r));
    }
    *committed = r->status_reply->steps_committed;
    *cursor = r->status_reply->has_data_cursor ? r->status_reply->data_cursor : 0;
    env_free(r);
    return 0;
}

/* Fills w->inputs/targets with micro-batch k; *n_trained counts the targets
 * the loss takes. A dataloader that dies is waited for and asked again. */
static int get_batch(worker *w, uint64_t k, uint64_t *n_trained, double *waited, int *retries,
                     rt_err *err)
{
    const int B = (int)w->rc->batch_size, T = (int)w->rc->seq_len;
    double t0 = now_s();
    Ramtrain__Envelope *r = NULL;
    for (;;) {
        if (stopping(w))
            return err_set(err, -ECANCELED, "stopping");
        Ramtrain__Envelope e;
        Ramtrain__GetBatch g = RAMTRAIN__GET_BATCH__INIT;
        env_init(&e, w->run_id, "worker", ++w->req);
        g.has_batch = 1, g.batch = k;
        e.body_case = RAMTRAIN__ENVELOPE__BODY_GET_BATCH;
        e.get_batch = &g;
        int rc = bus_client_call(&w->dl, &e, 1 << 30, &r, err);
        if (rc < 0)
            return rc;
        if (rc == 1)
            break;
        if (stopping(w))
            return err_set(err, -ECANCELED, "stopping");
        log_warn("the dataloader (pid %u) went away; waiting for its restart", w->dl_pid);
        if ((rc = hello(w, &w->dl, w->dl_ep, "dataloader", &w->dl_pid, err)) < 0)
            return rc;
    }
    *waited += now_s() - t0;
    int rc = 0;
    if (r->body_case == RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY) {
        rc = err_set(err, -EIO, "the dataloader cannot make batch %llu: %s", (unsigned long long)k,
                     r->error_reply->message ? r->error_reply->message : "(no message)");
        env_free(r);
        return rc;
    }
    if (r->body_case != RAMTRAIN__ENVELOPE__BODY_BATCH_READY || !r->batch_ready->has_ring_slot ||
        r->batch_ready->batch != k) {
        rc = err_set(err, -EBADMSG, "get_batch(%llu) answered with %s", (unsigned long long)k,
                     env_body_name(r));
        env_free(r);
        return rc;
    }
    uint32_t slot = r->batch_ready->ring_slot;
    env_free(r);
    if (!w->ring_open || w->ring_pid != w->dl_pid) {
        ring_close(&w->ring);
        w->ring_open = false;
        if ((rc = ring_attach(w->run_id, &w->ring, err)) < 0)
            return rc;
        w->ring_open = true;
        w->ring_pid = w->dl_pid;
    }
    const ring_header *h = w->ring.hdr;
    if (h->rows != (uint32_t)B || h->seq != (uint32_t)T || slot >= h->n_slots)
        return err_set(err, -EPROTO,
                       "the dataloader's ring holds %u rows of %u tokens (slot %u of %u); the "
                       "worker trains on %d rows of %d",
                       h->rows, h->seq, slot, h->n_slots, B, T);
    if (atomic_load_explicit(&h->slot[slot].batch, memory_order_acquire) != k ||
        atomic_load_explicit(&h->slot[slot].state, memory_order_acquire) != RING_READY) {
        /* a restarted dataloader recreated the ring after we mapped it: map
         * the new one and ask again */
        log_warn("ring slot %u does not hold batch %llu; re-attaching the ring", slot,
                 (unsigned long long)k);
        ring_close(&w->ring);
        w->ring_open = false;
        if (++*retries > 50)
            return err_set(err, -EPROTO, "ring slot %u does not hold batch %llu", slot,
                           (unsigned long long)k);
        usleep(20 * 1000);
        return get_batch(w, k, n_trained, waited, retries, err);
    }
    const int32_t *ids = ring_tokens(&w->ring, slot);
    const uint8_t *mask = ring_mask(&w->ring, slot);
    uint64_t n = 0;
    for (int row = 0; row < B; row++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)row * (size_t)T + (size_t)t;
            w->inputs[i] = ids[(size_t)row * (size_t)(T + 1) + (size_t)t];
            bool on = mask[(size_t)row * (size_t)T + (size_t)t] != 0;
            w->targets[i] = on ? ids[(size_t)row * (size_t)(T + 1) + (size_t)t + 1] : BE_IGNORE_INDEX;
            n += on;
        }
    *n_trained = n;
    return 0;
}

static bool ckpt_exists(const worker *w, uint64_t step)
{
    char p[4400];
    struct stat st;
    snprintf(p, sizeof p, "%s/step-%llu/DONE", w->ckpt_dir, (unsigned long long)step);
    return stat(p, &st) == 0;
}

/* Asks the paramserver for a checkpoint of its committed step. */
static int checkpoint(worker *w, uint64_t step, char *path, size_t len, double *secs, rt_err *err)
{
    Ramtrain__Envelope e, *r;
    Ramtrain__Checkpoint c = RAMTRAIN__CHECKPOINT__INIT;
    env_init(&e, w->run_id, "worker", ++w->req);
    c.dir = w->ckpt_dir;
    c.has_keep = 1, c.keep = w->rc->ckpt_keep;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_CHECKPOINT;
    e.checkpoint = &c;
    double t0 = now_s();
    double t0us = tr_now_us();
    int rc = ps_request(w, &e, &r, err);
    if (rc < 0)
        return rc;
    if (r->body_case != RAMTRAIN__ENVELOPE__BODY_CHECKPOINT_DONE || r->checkpoint_done->step != step) {
        rc = err_set(err, -EBADMSG, "checkpoint of step %llu answered with %s",
                     (unsigned long long)step, env_body_name(r));
        env_free(r);
        return rc;
    }
    snprintf(path, len, "%s", r->checkpoint_done->path ? r->checkpoint_done->path : "");
    env_free(r);
    *secs = now_s() - t0;
    tr_span(w->trace, TR_CONTROL, "checkpoint", t0us, tr_now_us(), -1, step, 0);
    log_info("checkpoint of step %llu: %s (%.2f s)", (unsigned long long)step, path, *secs);
    return 0;
}

static bool ckpt_due(const worker *w, uint64_t committed)
{
    if (committed == 0)
        return false;
    if (committed >= w->rc->steps)
        return true;
    return w->rc->ckpt_every > 0 && committed % w->rc->ckpt_every == 0;
}

/* ---- training --------------------------------------------------------------------- */

/* What a step leaves for its report, sent once its commit is in. */
typedef struct step_stats {
    uint64_t step, tokens, tokens_seen, apply_req;
    double loss_sum, grad_norm, t0, t_sent, wait_data;
    wk_times times;
} step_stats;

enum { TRAIN_DONE = 1, TRAIN_STOPPED = 2 };

/* Waits for the StepCommitted of ApplyStep request st->apply_req, reports the
 * step and writes its checkpoint when one is due (or forced). */
static int finish_step(worker *w, step_stats *st, bool force_ckpt, rt_err *err)
{
    double t0 = now_s(), t0us = tr_now_us();
    Ramtrain__Envelope *r = NULL;
    for (;;) {
        int rc = bus_client_recv(&w->ps, &st->apply_req, WK_SLICE_MS, &r, err);
        if (rc < 0)
            return rc;
        if (rc == 1)
            break;
        if (!wk_pid_alive(w->ps_pid))
            return err_set(err, -EPIPE, "the paramserver (pid %u) went away", w->ps_pid);
    }
    double wait_commit = now_s() - t0;
    tr_span(w->trace, TR_CONTROL, "wait commit", t0us, tr_now_us(), -1, st->step, 0);
    if (r->body_case != RAMTRAIN__ENVELOPE__BODY_STEP_COMMITTED ||
        r->step_committed->step != st->step) {
        int rc = err_set(err, r->body_case == RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY ? -EIO : -EBADMSG,
                         "apply_step(%llu) answered with %s%s%s", (unsigned long long)st->step,
                         env_body_name(r),
                         r->body_case == RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY ? ": " : "",
                         r->body_case == RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY &&
                                 r->error_reply->message
                             ? r->error_reply->message
                             : "");
        env_free(r);
        return rc;
    }
    double lr = r->step_committed->has_lr ? r->step_committed->lr : 0;
    env_free(r);
    uint64_t committed = st->step + 1;
    w->committed = committed;
    w->cursor = committed * w->rc->grad_accum;
    char path[1024] = "";
    double ck_s = 0;
    if ((force_ckpt || ckpt_due(w, committed)) && !ckpt_exists(w, committed)) {
        int rc = checkpoint(w, committed, path, sizeof path, &ck_s, err);
        if (rc < 0)
            return rc;
    }
    Ramtrain__StepReport rep = RAMTRAIN__STEP_REPORT__INIT;
    rep.has_step = 1, rep.step = st->step;
    rep.has_total_steps = 1, rep.total_steps = w->rc->steps;
    rep.has_loss = 1, rep.loss = st->tokens > 0 ? st->loss_sum / (double)st->tokens : 0;
    rep.has_tokens = 1, rep.tokens = st->tokens;
    rep.has_tokens_seen = 1, rep.tokens_seen = st->tokens_seen;
    rep.has_seconds = 1, rep.seconds = st->t_sent - st->t0 + wait_commit;
    rep.has_compute_s = 1, rep.compute_s = st->times.compute;
    rep.has_wait_weights_s = 1,
    rep.wait_weights_s = st->times.wait_weights - st->times.wait_optimizer;
    rep.has_wait_optimizer_s = 1, rep.wait_optimizer_s = st->times.wait_optimizer + wait_commit;
    rep.has_wait_data_s = 1, rep.wait_data_s = st->wait_data;
    rep.has_lr = 1, rep.lr = lr;
    rep.has_grad_norm = 1, rep.grad_norm = st->grad_norm;
    rep.has_checkpoint_s = 1, rep.checkpoint_s = ck_s;
    queue_report(w, &rep, path);
    log_info("step %llu/%llu loss %.4f lr %.3g norm %.3g (%.2f s)", (unsigned long long)committed,
             (unsigned long long)w->rc->steps, rep.loss, lr, st->grad_norm, rep.seconds);
    return 0;
}

/* Trains from the paramserver's committed step to the end (or a stop).
 * Returns TRAIN_DONE, TRAIN_STOPPED, -EPIPE when the paramserver went away,
 * or another negative errno with err. */
static int train(worker *w, rt_err *err)
{
    const run_config *rc_ = w->rc;
    const uint32_t K = rc_->grad_accum;
    uint64_t S = 0, cursor = 0;
    int rc = ps_status(w, &S, &cursor, err);
    if (rc < 0)
        return rc;
    w->committed = S;
    w->cursor = cursor;
    if (S > 0 && ckpt_due(w, S) && !ckpt_exists(w, S)) {
        char path[1024];
        double secs;
        if ((rc = checkpoint(w, S, path, sizeof path, &secs, err)) == -EPIPE)
            return rc;
        if (rc < 0) /* e.g. the next step's gradients already landed: it is too late */
            log_warn("no checkpoint of step %llu: %s", (unsigned long long)S, err->msg);
    }
    if (S >= rc_->steps)
        return TRAIN_DONE;
    if (S > 0)
        log_info("resuming at step %llu of %llu (data cursor %llu)", (unsigned long long)S,
                 (unsigned long long)rc_->steps, (unsigned long long)cursor);
    step_stats prev = {0};
    bool pending = false;
    for (uint64_t s = S; s < rc_->steps; s++) {
        step_stats st = {.step = s, .t0 = now_s()};
        for (uint32_t m = 0; m < K; m++) {
            uint64_t n_trained = 0;
            double t0us = tr_now_us();
            int retries = 0;
            if ((rc = get_batch(w, s * K + m, &n_trained, &st.wait_data, &retries, err)) < 0)
                return rc == -ECANCELED ? TRAIN_STOPPED : rc;
            tr_span(w->trace, TR_CONTROL, "get batch", t0us, tr_now_us(), -1, s, (int)m);
            float scale = n_trained > 0 ? (float)(1.0 / (double)n_trained) : 0.0f;
            rc = wk_engine_micro(w->eng, s, m, w->inputs, w->targets, scale, &st.loss_sum,
                                 &st.times, err);
            if (rc < 0)
                return stopping(w) ? TRAIN_STOPPED : rc;
            st.tokens += n_trained;
            st.tokens_seen += (uint64_t)rc_->batch_size * (uint64_t)rc_->seq_len;
            if (stopping(w))
                return TRAIN_STOPPED;
        }
        if (pending) {
            if ((rc = finish_step(w, &prev, false, err)) < 0)
                return rc;
            pending = false;
        }
        if ((rc = wk_engine_drain(w->eng, err)) < 0)
            return stopping(w) ? TRAIN_STOPPED : rc;
        /* clip factor as torch.nn.utils.clip_grad_norm_ */
        double t0us = tr_now_us();
        Ramtrain__Envelope e, *r;
        Ramtrain__GradNorm gn = RAMTRAIN__GRAD_NORM__INIT;
        env_init(&e, w->run_id, "worker", ++w->req);
        gn.has_step = 1, gn.step = s;
        e.body_case = RAMTRAIN__ENVELOPE__BODY_GRAD_NORM;
        e.grad_norm = &gn;
        if ((rc = ps_request(w, &e, &r, err)) < 0)
            return rc;
        if (r->body_case != RAMTRAIN__ENVELOPE__BODY_GRAD_NORM_REPLY || !r->grad_norm_reply->has_sumsq) {
            env_free(r);
            return err_set(err, -EBADMSG, "grad_norm answered with %s", env_body_name(r));
        }
        double norm = sqrt(r->grad_norm_reply->sumsq);
        env_free(r);
        st.grad_norm = norm;
        double clip = 1.0;
        if (rc_->clip > 0) {
            clip = rc_->clip / (norm + 1e-6);
            if (clip > 1.0)
                clip = 1.0;
        }
        Ramtrain__ApplyStep as = RAMTRAIN__APPLY_STEP__INIT;
        env_init(&e, w->run_id, "worker", ++w->req);
        as.has_step = 1, as.step = s;
        as.has_clip_factor = 1, as.clip_factor = clip;
        as.has_data_cursor = 1, as.data_cursor = (s + 1) * K;
        e.body_case = RAMTRAIN__ENVELOPE__BODY_APPLY_STEP;
        e.apply_step = &as;
        if ((rc = bus_client_send(&w->ps, &e, err)) < 0)
            return rc;
        tr_span(w->trace, TR_CONTROL, "grad norm + apply step", t0us, tr_now_us(), -1, s, 0);
        st.apply_req = e.request_id;
        st.t_sent = now_s();
        prev = st;
        pending = true;
        bool last = s + 1 == rc_->steps;
        if (last || w->stop_after_step || ckpt_due(w, s + 1)) {
            /* the checkpoint must be taken before the next step's gradients land */
            bool stop = w->stop_after_step;
            if ((rc = finish_step(w, &prev, stop, err)) < 0)
                return rc;
            pending = false;
            if (last || stop)
                return last ? TRAIN_DONE : TRAIN_STOPPED;
        }
    }
    return TRAIN_DONE;
}

/* ---- command line ------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: ramtrain-worker --run-id ID --run-dir DIR --config RUN_DIR/config.yaml\n"
               "                       [--trace FILE] [--heartbeat-ms N]\n"
               "Trains the run whose paramserver and dataloader serve DIR/sock/; see DESIGN.md §4.\n");
}

static int bad(const char *fmt, const char *a)
{
    fprintf(stderr, "ramtrain-worker: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n");
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    log_init("worker", LOG_LEVEL_INFO);
    worker w = {.heartbeat_ms = 500, .committed = UINT64_MAX};
    const char *trace_path = NULL;
    enum { O_RUN_ID = 1, O_RUN_DIR, O_CONFIG, O_TRACE, O_HB, O_HELP };
    static const struct option opts[] = {
        {"run-id", required_argument, 0, O_RUN_ID}, {"run-dir", required_argument, 0, O_RUN_DIR},
        {"config", required_argument, 0, O_CONFIG}, {"trace", required_argument, 0, O_TRACE},
        {"heartbeat-ms", required_argument, 0, O_HB}, {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    int o;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        uint64_t v;
        switch (o) {
        case O_RUN_ID: w.run_id = optarg; break;
        case O_RUN_DIR: w.run_dir = optarg; break;
        case O_CONFIG: w.config_path = optarg; break;
        case O_TRACE: trace_path = optarg; break;
        case O_HB:
            if (bus_opt_u64("ramtrain-worker", "--heartbeat-ms", optarg, 10, 60000, &v) < 0)
                return EXIT_USAGE;
            w.heartbeat_ms = (unsigned)v;
            break;
        case O_HELP: usage(stdout); return EXIT_OK;
        default:
            fprintf(stderr, "ramtrain-worker: unknown option or missing value: %s\n",
                    optind > 1 ? argv[optind - 1] : "?");
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return bad("unexpected argument \"%s\"", argv[optind]);
    if (w.run_id == NULL || w.run_dir == NULL || w.config_path == NULL)
        return bad("--run-id, --run-dir and --config are required%s", "");
    rt_err err = {{0}};
    if (bs_run_id_check(w.run_id, &err) < 0)
        return bad("--run-id: %s", err.msg);
    if (rc_load_file(w.config_path, NULL, 0, &w.rc, &err) < 0)
        return bad("%s", err.msg);
    const run_config *rc_ = w.rc;
    if (rc_->device == RC_DEV_CUDA) {
        rc_free(w.rc);
        return bad("compute.device is cuda, but the CUDA backend is not built into this worker "
                   "yet; use cpu or auto%s", "");
    }
    snprintf(w.ps_ep, sizeof w.ps_ep, "ipc://%s/sock/paramserver", w.run_dir);
    snprintf(w.dl_ep, sizeof w.dl_ep, "ipc://%s/sock/dataloader", w.run_dir);
    snprintf(w.my_ep, sizeof w.my_ep, "ipc://%s/sock/worker", w.run_dir);
    snprintf(w.ckpt_dir, sizeof w.ckpt_dir, "%s/checkpoints", w.run_dir);

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int code = EXIT_FAIL;
    pthread_mutex_init(&w.mu, NULL);
    const int B = (int)rc_->batch_size, T = (int)rc_->seq_len;
    w.inputs = malloc((size_t)B * (size_t)T * sizeof *w.inputs);
    w.targets = malloc((size_t)B * (size_t)T * sizeof *w.targets);
    if (w.inputs == NULL || w.targets == NULL) {
        log_error("out of memory");
        goto out;
    }
    if (tr_open(trace_path, &w.trace, &err) < 0) {
        log_error("%s", err.msg);
        code = EXIT_USAGE;
        goto out;
    }
    if (be_cpu_create(&rc_->model, B * T, T, (int)rc_->threads, &w.be, &err) < 0) {
        log_error("%s", err.msg);
        goto out;
    }
    w.zctx = zmq_ctx_new();
    if (bus_server_open(&w.srv, w.run_id, "worker", w.my_ep, &err) < 0) {
        log_error("%s", err.msg);
        goto out;
    }
    int64_t resident = rc_->resident == RC_RESIDENT_ALL    ? WK_RESIDENT_ALL
                       : rc_->resident == RC_RESIDENT_AUTO ? WK_RESIDENT_AUTO
                                                           : rc_->resident;
    wk_config wc = {
        .model = &rc_->model, .compute = rc_->bf16 ? DT_BF16 : DT_F32, .B = B, .T = T,
        .prefetch = (int)rc_->prefetch, .resident = resident, .be = w.be, .run_id = w.run_id,
        .ps_endpoint = w.ps_ep, .zctx = w.zctx, .trace = w.trace,
    };
    if (wk_engine_create(&wc, &w.eng, &err) < 0) {
        log_error("%s", err.msg);
        goto out;
    }
    int n_res;
    uint64_t res_bytes, stream_bytes;
    wk_engine_describe(w.eng, &n_res, &res_bytes, &stream_bytes);
    log_info("cpu backend, %d threads; %d rows x %d tokens, %u micro-batches per step; "
             "prefetch %u (%.1f MiB), %d of %d blocks resident (%.1f MiB)",
             w.be->n_threads, B, T, rc_->grad_accum, rc_->prefetch, stream_bytes / 1048576.0,
             n_res, model_n_blocks(&rc_->model), res_bytes / 1048576.0);
    if (pthread_create(&w.ctl, NULL, ctl_main, &w) != 0) {
        log_error("cannot start the control thread");
        goto out;
    }
    w.ps.run_id = w.dl.run_id = w.run_id;
    w.ps.gone = ps_gone, w.ps.gone_arg = &w;
    w.dl.gone = dl_gone, w.dl.gone_arg = &w;
    if (hello(&w, &w.ps, w.ps_ep, "paramserver", &w.ps_pid, &err) < 0 ||
        hello(&w, &w.dl, w.dl_ep, "dataloader", &w.dl_pid, &err) < 0) {
        code = stopping(&w) ? EXIT_OK : EXIT_FAIL;
        goto stop;
    }
    wk_engine_set_ps_pid(w.eng, w.ps_pid);
    for (;;) {
        int rc = train(&w, &err);
        if (rc == TRAIN_DONE) {
            log_info("training done: %llu steps committed", (unsigned long long)rc_->steps);
            code = EXIT_OK;
            break;
        }
        if (rc == TRAIN_STOPPED || stopping(&w)) {
            log_info("stopped at step %llu", (unsigned long long)w.committed);
            code = EXIT_OK;
            break;
        }
        if (rc == -EPIPE || !wk_pid_alive(w.ps_pid)) {
            log_warn("%s; waiting for its restart, then redoing the step", err.msg);
            wk_engine_reset(w.eng);
            if (hello(&w, &w.ps, w.ps_ep, "paramserver", &w.ps_pid, &err) < 0) {
                code = stopping(&w) ? EXIT_OK : EXIT_FAIL;
                break;
            }
            wk_engine_set_ps_pid(w.eng, w.ps_pid);
            continue;
        }
        if (rc == -ESTALE) {
            /* a block is already past the step we were redoing: the
             * paramserver is finishing an ApplyStep a previous worker sent */
            log_info("%s; asking again where the run stands", err.msg);
            wk_engine_reset(w.eng);
            usleep(100 * 1000);
            continue;
        }
        log_error("%s", err.msg);
        code = rc == -EINVAL || rc == -ERANGE ? EXIT_USAGE : EXIT_FAIL;
        break;
    }
stop:
    /* let the control thread send the last reports */
    for (int i = 0; i < 20; i++) {
        pthread_mutex_lock(&w.mu);
        int n = w.n_reports;
        pthread_mutex_unlock(&w.mu);
        if (n == 0)
            break;
        usleep(50 * 1000);
    }
    usleep(100 * 1000);
    w.quit = true;
    pthread_join(w.ctl, NULL);
out:
    if (w.eng != NULL)
        wk_engine_destroy(w.eng);
    if (w.be != NULL)
        w.be->ops->destroy(w.be);
    bus_client_close(&w.ps);
    bus_client_close(&w.dl);
    bus_server_close(&w.srv);
    if (w.zctx != NULL)
        zmq_ctx_term(w.zctx);
    ring_close(&w.ring);
    tr_close(w.trace, code == EXIT_OK);
    free(w.inputs);
    free(w.targets);
    rc_free(w.rc);
    return code;
}
