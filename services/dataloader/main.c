/*
 * ramtrain-dataloader: serves micro-batches to the worker (DESIGN.md §1, §4).
 *
 * GetBatch(k) -> BatchReady(k, slot) once batch k is in the shared-memory
 * ring (services/dataloader/ring.h). Batch k is a pure function of the data
 * config, the seed and k (services/dataloader/data.h), so this process keeps
 * nothing worth saving: killed and restarted, it recreates the ring and
 * serves batch k again, bit for bit.
 *
 * Threads: the main thread owns the ZeroMQ socket and the window; producer
 * threads fill slots. The window is the n_slots batches [floor, floor +
 * n_slots): floor is one below the newest batch asked for, so the batch the
 * worker may still be reading stays put, and producers fill ahead of the
 * worker (backpressure: nothing past the window is produced). A GetBatch for
 * a batch below the window (a restarted worker redoing a step) moves the
 * window back; slots outside the window are refilled as they come due.
 * Producers and the main thread share the window under one mutex; a producer
 * that finishes a slot wakes the main thread through an eventfd that
 * zmq_poll watches.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "services/common/bus.h"
#include "services/common/envelope.h"
#include "services/common/log.h"
#include "services/common/run_config.h"
#include "services/dataloader/data.h"
#include "services/dataloader/ring.h"
#include "services/dataloader/tokenizer.h"
#include "storage/blockstore.h"

#define DL_MAX_PENDING 1024
#define DL_MAX_THREADS 64
#define DL_MAX_PEERS 16

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

typedef struct dl_pending {
    bus_peer peer;
    uint64_t request_id;
    uint64_t batch;
} dl_pending;

typedef struct dl_service {
    bus_server bus;
    ring ring;
    data_pipeline *data;
    uint32_t n_slots, rows, seq;
    /* window and slot ownership, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started;                     /* a GetBatch set the window */
    uint64_t floor;
    uint64_t claimed[RING_MAX_SLOTS]; /* batch a producer is filling into slot s; UINT64_MAX none */
    bool stop;
    int efd;                          /* producers -> main: a slot became READY */
    pthread_t threads[DL_MAX_THREADS];
    int n_threads;
    int fail_rc;                      /* a producer's failure, reported to requesters */
    char fail_msg[1200];
    dl_pending *pending;
    int n_pending;
    unsigned heartbeat_ms;
    bus_peer peers[DL_MAX_PEERS];     /* said Hello: they get our heartbeats ... */
    double peer_seen[DL_MAX_PEERS];   /* ... until silent for 10 intervals */
    int n_peers;
    double last_beat;
    uint64_t beat_seq;
    uint64_t next_request;
    bool shutdown, remove_state;
    uint64_t produced;
} dl_service;

/* ---- producers ------------------------------------------------------------------- */

/* Next batch of the window that no slot holds or is being filled; under mu.
 * Returns false when the window is full. */
static bool next_job(dl_service *sv, uint64_t *k, uint32_t *slot)
{
    if (!sv->started)
        return false;
    for (uint64_t j = sv->floor; j < sv->floor + sv->n_slots; j++) {
        uint32_t s = (uint32_t)(j % sv->n_slots);
        ring_slot_info *si = &sv->ring.hdr->slot[s];
        if (sv->claimed[s] == j)
            continue;
        if (atomic_load(&si->batch) == j && atomic_load(&si->state) == RING_READY)
            continue;
        if (sv->claimed[s] != UINT64_MAX)
            continue; /* the slot is being filled with an older batch: wait for it */
        *k = j;
        *slot = s;
        return true;
    }
    return false;
}

static void *producer(void *arg)
{
    dl_service *sv = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&sv->mu);
    for (;;) {
        uint64_t k;
        uint32_t s;
        while (!sv->stop && !next_job(sv, &k, &s))
            pthread_cond_wait(&sv->cv, &sv->mu);
        if (sv->stop)
            break;
        ring_slot_info *si = &sv->ring.hdr->slot[s];
        sv->claimed[s] = k;
        atomic_store_explicit(&si->state, RING_FILLING, memory_order_relaxed);
        atomic_store_explicit(&si->batch, k, memory_order_release);
        pthread_mutex_unlock(&sv->mu);

        rt_err err = {{0}};
        data_batch_buf b = {.tokens = ring_tokens(&sv->ring, s),
                            .loss_mask = ring_mask(&sv->ring, s), .doc = ring_doc(&sv->ring, s)};
        int rc = data_batch(sv->data, k, &b, &err);

        pthread_mutex_lock(&sv->mu);
        sv->claimed[s] = UINT64_MAX;
        if (rc < 0) {
            if (sv->fail_rc == 0) {
                sv->fail_rc = rc;
                snprintf(sv->fail_msg, sizeof sv->fail_msg, "batch %llu: %s",
                         (unsigned long long)k, err.msg);
            }
            atomic_store(&si->state, RING_EMPTY);
        } else {
            si->n_rows = sv->rows;
            atomic_store_explicit(&si->state, RING_READY, memory_order_release);
            sv->produced++;
        }
        uint64_t one = 1;
        if (write(sv->efd, &one, sizeof one) < 0) {
            /* the counter cannot overflow in practice; the main loop polls anyway */
        }
        pthread_cond_broadcast(&sv->cv);
    }
    pthread_mutex_unlock(&sv->mu);
    return NULL;
}

/* ---- replies -------------------------------------------------------------------- */

static void reply_ready(dl_service *sv, const bus_peer *to, uint64_t req, uint64_t k)
{
    Ramtrain__Envelope e;
    Ramtrain__BatchReady r = RAMTRAIN__BATCH_READY__INIT;
    env_init(&e, sv->bus.run_id, sv->bus.sender, req);
    r.has_batch = 1, r.batch = k;
    r.has_ring_slot = 1, r.ring_slot = (uint32_t)(k % sv->n_slots);
    r.has_n_tokens = 1, r.n_tokens = sv->rows * sv->seq;
    r.has_n_rows = 1, r.n_rows = sv->rows;
    r.has_data_cursor = 1, r.data_cursor = k + 1;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_BATCH_READY;
    e.batch_ready = &r;
    bus_server_send(&sv->bus, to, &e);
}

static bool slot_ready(dl_service *sv, uint64_t k)
{
    ring_slot_info *si = &sv->ring.hdr->slot[k % sv->n_slots];
    return atomic_load_explicit(&si->batch, memory_order_acquire) == k &&
           atomic_load_explicit(&si->state, memory_order_acquire) == RING_READY;
}

/* Answers the pending requests whose batch is ready (or that failed). */
static void serve_pending(dl_service *sv)
{
    if (sv->n_pending == 0)
        return;
    pthread_mutex_lock(&sv->mu);
    int fail = sv->fail_rc;
    char msg[1200];
    snprintf(msg, sizeof msg, "%s", sv->fail_msg);
    pthread_mutex_unlock(&sv->mu);
    int k = 0;
    for (int i = 0; i < sv->n_pending; i++) {
        dl_pending *p = &sv->pending[i];
        if (slot_ready(sv, p->batch))
            reply_ready(sv, &p->peer, p->request_id, p->batch);
        else if (fail < 0)
            bus_server_refuse(&sv->bus, &p->peer, p->request_id, fail, msg);
        else
            sv->pending[k++] = *p;
    }
    sv->n_pending = k;
}

static void on_get_batch(dl_service *sv, const bus_peer *from, uint64_t req,
                         const Ramtrain__GetBatch *m)
{
    if (!m->has_batch) {
        bus_server_refuse(&sv->bus, from, req, -EINVAL, "get_batch.batch: not set");
        return;
    }
    uint64_t k = m->batch;
    pthread_mutex_lock(&sv->mu);
    uint64_t want = k > 0 ? k - 1 : 0;
    if (!sv->started || want > sv->floor || k < sv->floor) {
        /* forward as the worker advances; back when it redoes an older batch */
        sv->floor = k < sv->floor || !sv->started ? k : want;
        sv->started = true;
        pthread_cond_broadcast(&sv->cv);
    }
    pthread_mutex_unlock(&sv->mu);
    if (slot_ready(sv, k)) {
        reply_ready(sv, from, req, k);
        return;
    }
    if (sv->n_pending == DL_MAX_PENDING) {
        bus_server_refuse(&sv->bus, from, req, -EAGAIN, "get_batch: too many requests waiting");
        return;
    }
    sv->pending[sv->n_pending++] = (dl_pending){.peer = *from, .request_id = req, .batch = k};
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void on_hello(dl_service *sv, const bus_peer *from, uint64_t req, const Ramtrain__Hello *m)
{
    log_info("hello from %s (pid %u)", m->role ? m->role : "?", m->has_pid ? m->pid : 0);
    int slot = -1;
    for (int i = 0; i < sv->n_peers && slot < 0; i++)
        if (sv->peers[i].len == from->len && memcmp(sv->peers[i].id, from->id, from->len) == 0)
            slot = i;
    if (slot < 0)
        slot = sv->n_peers < DL_MAX_PEERS ? sv->n_peers++ : 0; /* full: the first goes */
    sv->peers[slot] = *from;
    sv->peer_seen[slot] = now_mono();
    Ramtrain__Envelope e;
    Ramtrain__Ready r = RAMTRAIN__READY__INIT;
    env_init(&e, sv->bus.run_id, sv->bus.sender, req);
    r.role = "dataloader";
    r.has_pid = 1, r.pid = (uint32_t)getpid();
    r.has_heartbeat_ms = 1, r.heartbeat_ms = sv->heartbeat_ms;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_READY;
    e.ready = &r;
    bus_server_send(&sv->bus, from, &e);
}

static void on_shutdown(dl_service *sv, const bus_peer *from, uint64_t req,
                        const Ramtrain__Shutdown *m)
{
    sv->shutdown = true;
    sv->remove_state = m->has_remove_state && m->remove_state;
    Ramtrain__Envelope e;
    Ramtrain__Shutdown r = RAMTRAIN__SHUTDOWN__INIT;
    env_init(&e, sv->bus.run_id, sv->bus.sender, req);
    r.reason = "acknowledged";
    e.body_case = RAMTRAIN__ENVELOPE__BODY_SHUTDOWN;
    e.shutdown = &r;
    bus_server_send(&sv->bus, from, &e);
}

/* Takes one message and serves it; bus_server_recv's return. */
static int on_message(dl_service *sv)
{
    bus_peer from;
    Ramtrain__Envelope *e;
    uint64_t req;
    int rc = bus_server_recv(&sv->bus, &from, &e, &req);
    if (rc <= 0)
        return rc;
    for (int i = 0; i < sv->n_peers; i++)
        if (sv->peers[i].len == from.len && memcmp(sv->peers[i].id, from.id, from.len) == 0)
            sv->peer_seen[i] = now_mono();
    switch (e->body_case) {
    case RAMTRAIN__ENVELOPE__BODY_HELLO: on_hello(sv, &from, req, e->hello); break;
    case RAMTRAIN__ENVELOPE__BODY_HEARTBEAT: break;
    case RAMTRAIN__ENVELOPE__BODY_GET_BATCH: on_get_batch(sv, &from, req, e->get_batch); break;
    case RAMTRAIN__ENVELOPE__BODY_SHUTDOWN: on_shutdown(sv, &from, req, e->shutdown); break;
    default: {
        char msg[128];
        snprintf(msg, sizeof msg, "envelope.%s: not a request the data loader serves",
                 env_body_name(e));
        bus_server_refuse(&sv->bus, &from, req, -ENOTSUP, msg);
    }
    }
    env_free(e);
    return rc;
}

static void serve(dl_service *sv)
{
    while (!g_stop && !sv->shutdown) {
        zmq_pollitem_t it[2] = {{.socket = sv->bus.sock, .events = ZMQ_POLLIN},
                                {.fd = sv->efd, .events = ZMQ_POLLIN}};
        if (zmq_poll(it, 2, (long)sv->heartbeat_ms) < 0 && zmq_errno() != EINTR) {
            log_error("zmq_poll: %s", zmq_strerror(zmq_errno()));
            return;
        }
        if (it[1].revents & ZMQ_POLLIN) {
            uint64_t v;
            if (read(sv->efd, &v, sizeof v) < 0 && errno != EAGAIN)
                log_warn("eventfd: %s", strerror(errno));
        }
        for (int k = 0; k < 64 && (it[0].revents & ZMQ_POLLIN); k++)
            if (on_message(sv) == -EAGAIN)
                break;
        serve_pending(sv);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double t = now_mono();
        if (t - sv->last_beat >= sv->heartbeat_ms * 1e-3) {
            sv->last_beat = t;
            Ramtrain__Envelope e;
            Ramtrain__Heartbeat h = RAMTRAIN__HEARTBEAT__INIT;
            env_init(&e, sv->bus.run_id, sv->bus.sender, 0);
            h.has_seq = 1, h.seq = sv->beat_seq++;
            h.has_time_ns = 1, h.time_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
            e.body_case = RAMTRAIN__ENVELOPE__BODY_HEARTBEAT;
            e.heartbeat = &h;
            int k = 0;
            for (int i = 0; i < sv->n_peers; i++) {
                if (t - sv->peer_seen[i] > 10 * sv->heartbeat_ms * 1e-3)
                    continue; /* gone: stop talking to it */
                sv->peer_seen[k] = sv->peer_seen[i];
                sv->peers[k++] = sv->peers[i];
                bus_server_send(&sv->bus, &sv->peers[i], &e);
            }
            sv->n_peers = k;
        }
    }
}

/* ---- command line ---------------------------------------------------------------- */

static int bad(const char *fmt, const char *a)
{
    fprintf(stderr, "ramtrain-dataloader: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n");
    return 2;
}

static int parse_u64(const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    return bus_opt_u64("ramtrain-dataloader", opt, s, lo, hi, out);
}

int main(int argc, char **argv)
{
    log_init("dataloader", LOG_LEVEL_INFO);
    static const struct option opts[] = {
        {"run-id", 1, 0, 'r'}, {"run-dir", 1, 0, 'd'}, {"endpoint", 1, 0, 'e'},
        {"data", 1, 0, 'c'}, {"config", 1, 0, 'C'}, {"slots", 1, 0, 's'}, {"threads", 1, 0, 't'},
        {"vocab", 1, 0, 'v'}, {"heartbeat-ms", 1, 0, 'H'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *run_id = NULL, *run_dir = NULL, *endpoint = NULL, *data_path = NULL, *config_path = NULL;
    uint64_t slots = 8, threads = 2, vocab = 0, hb = 1000;
    int o, li = -1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, &li)) != -1) {
        char name[32];
        snprintf(name, sizeof name, "--%s", li >= 0 ? opts[li].name : "?");
        li = -1;
        switch (o) {
        case 'r': run_id = optarg; break;
        case 'd': run_dir = optarg; break;
        case 'e': endpoint = optarg; break;
        case 'c': data_path = optarg; break;
        case 'C': config_path = optarg; break;
        case 's': if (parse_u64(name, optarg, 2, RING_MAX_SLOTS, &slots) < 0) return 2; break;
        case 't': if (parse_u64(name, optarg, 1, DL_MAX_THREADS, &threads) < 0) return 2; break;
        case 'v': if (parse_u64(name, optarg, 1, INT32_MAX, &vocab) < 0) return 2; break;
        case 'H': if (parse_u64(name, optarg, 10, 60000, &hb) < 0) return 2; break;
        case 'h':
            printf("usage: ramtrain-dataloader --run-id ID (--run-dir DIR | --endpoint EP) "
                   "(--data DATA.yaml | --config RUN.yaml) [--slots N] [--threads N] [--vocab N]\n"
                   "  --config: the run config's data mapping (train.seq_len, train.batch_size);\n"
                   "            --vocab defaults to the model's vocab_size\n");
            return 0;
        default:
            return bad("unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad("unexpected argument \"%s\"", argv[optind]);
    if (run_id == NULL)
        return bad("--run-id is required%s", "");
    if ((data_path == NULL) == (config_path == NULL))
        return bad("give exactly one of --data and --config%s", "");
    if ((run_dir == NULL) == (endpoint == NULL))
        return bad("give exactly one of --run-dir and --endpoint%s", "");
    rt_err err = {{0}};
    if (bs_run_id_check(run_id, &err) < 0)
        return bad("--run-id: %s", err.msg);
    char ep[4200];
    if (run_dir != NULL) {
        char sock_dir[4200];
        snprintf(sock_dir, sizeof sock_dir, "%s/sock", run_dir);
        mkdir(run_dir, 0700);
        if (mkdir(sock_dir, 0700) < 0 && errno != EEXIST)
            return bad("cannot create %s", sock_dir);
        snprintf(ep, sizeof ep, "ipc://%s/sock/dataloader", run_dir);
        endpoint = ep;
    }

    dl_service sv = {.heartbeat_ms = (unsigned)hb, .efd = -1};
    data_config *cfg = NULL;
    run_config *run = NULL; /* with --config: owns cfg */
    tok *t = NULL;
    int rc;
    if (config_path != NULL) {
        if ((rc = rc_load_file(config_path, NULL, 0, &run, &err)) < 0) {
            log_error("%s", err.msg);
            return rc == -ENOMEM || rc == -EIO ? 1 : 2;
        }
        cfg = run->data;
        if (vocab == 0)
            vocab = (uint64_t)run->model.vocab;
    } else if ((rc = data_config_load(data_path, &cfg, &err)) < 0) {
        log_error("%s", err.msg);
        return 2;
    }
    data_open_opts dopts = {.threads = (int)threads, .vocab_size = vocab};
    if ((rc = tok_open(cfg->tokenizer, &t, &err)) < 0 ||
        (rc = data_open(cfg, t, &dopts, &sv.data, &err)) < 0) {
        log_error("%s", err.msg);
        tok_close(t);
        if (run != NULL)
            rc_free(run);
        else
            data_config_free(cfg);
        return rc == -ENOMEM || rc == -EIO ? 1 : 2;
    }
    const data_stats *st = data_get_stats(sv.data);
    for (uint32_t i = 0; i < st->n_sources; i++) {
        const data_source_stats *ss = &st->sources[i];
        log_info("source %s: %u files (%u indexed now), %llu documents, %llu tokens, %llu rows, "
                 "share %.3f%s%s", ss->path, ss->files, ss->files_indexed,
                 (unsigned long long)ss->documents, (unsigned long long)ss->tokens,
                 (unsigned long long)ss->rows, ss->share, ss->lines_skipped ? "; skipped: " : "",
                 ss->lines_skipped ? ss->first_skipped : "");
    }
    sv.rows = (uint32_t)cfg->batch_rows;
    sv.seq = (uint32_t)cfg->seq_len;
    sv.n_slots = (uint32_t)slots;
    sv.pending = calloc(DL_MAX_PENDING, sizeof *sv.pending);
    if (sv.pending == NULL || ring_create(run_id, sv.n_slots, sv.rows, sv.seq, &sv.ring, &err) < 0) {
        log_error("%s", sv.pending == NULL ? "out of memory" : err.msg);
        return 1;
    }
    log_info("tokenizer: %s; ring %s: %u slots of %u x %u tokens", tok_describe(t), sv.ring.path,
             sv.n_slots, sv.rows, sv.seq);
    for (uint32_t s = 0; s < RING_MAX_SLOTS; s++)
        sv.claimed[s] = UINT64_MAX;
    pthread_mutex_init(&sv.mu, NULL);
    pthread_cond_init(&sv.cv, NULL);
    sv.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < (int)threads; i++)
        if (pthread_create(&sv.threads[sv.n_threads], NULL, producer, &sv) == 0)
            sv.n_threads++;

    if (bus_server_open(&sv.bus, run_id, "dataloader", endpoint, &err) < 0) {
        log_error("%s", err.msg);
        rc = 1;
    } else {
        log_info("serving run %s on %s", run_id, endpoint);
        serve(&sv);
        rc = 0;
    }
    pthread_mutex_lock(&sv.mu);
    sv.stop = true;
    pthread_cond_broadcast(&sv.cv);
    pthread_mutex_unlock(&sv.mu);
    for (int i = 0; i < sv.n_threads; i++)
        pthread_join(sv.threads[i], NULL);
    bus_server_close(&sv.bus);
    ring_close(&sv.ring);
    if (sv.remove_state)
        ring_unlink(run_id, NULL);
    close(sv.efd);
    log_info("exiting: %llu batches produced", (unsigned long long)sv.produced);
    data_close(sv.data);
    tok_close(t);
    if (run != NULL)
        rc_free(run);
    else
        data_config_free(cfg);
    free(sv.pending);
    return rc;
}
