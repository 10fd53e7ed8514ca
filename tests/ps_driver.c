/*
 * ps_driver: drives a real ramtrain-paramserver through training steps the
 * way the worker and the orchestrator will, for the parameter-server tests.
 *
 * For each step s and micro-batch m it reads the gradients of (s, m) from
 * <grads>/step-<s>-micro-<m>.safetensors (fp32, Hugging Face names), and for
 * each block (last to first, as backward produces them) asks FetchLayer,
 * maps the block's shared memory from the path in LayerReady, writes the
 * gradients into G slot m % n_gslots (in the compute dtype) and sends
 * GradReady. Then GradNorm, the clip factor as torch.nn.utils.clip_grad_norm_
 * computes it, and ApplyStep. At the end it can ask for a checkpoint and a
 * shutdown.
 *
 * Fault injection: --kill-after N sends SIGKILL to the paramserver (its pid
 * from Ready) right after the N-th acknowledged GradReady; the driver then
 * says Hello until a restarted paramserver (started by the test) answers,
 * resends the last GradReady (which must come back marked duplicate) and goes
 * on. A paramserver that dies while a request is outstanding (the test's
 * RAMTRAIN_FAULT kills it inside an operation) is noticed by its pid; the
 * driver says Hello to the restarted one and resends what it was waiting for
 * (a GradReady must then come back a duplicate: the restart finished it).
 * Exit codes: 0 done, 1 a failure (printed).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "services/common/bus.h"
#include "services/common/envelope.h"
#include "storage/blockstore.h"
#include "storage/safetensors.h"

typedef struct drv {
    const char *run_id, *endpoint;
    void *zctx;
    bus_client bus;                    /* DEALER to the paramserver; gone: ps_dead */
    uint64_t next_req;
    int timeout_ms;
    uint32_t ps_pid;
    int restarts;                      /* paramservers found dead and said Hello to again */
} drv;

static void hello(drv *d, int total_ms);

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ps_driver: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void connect_sock(drv *d)
{
    rt_err err = {{0}};
    if (bus_client_connect(&d->bus, d->zctx, d->endpoint, &err) < 0)
        die("%s", err.msg);
}

static void send_only(drv *d, Ramtrain__Envelope *e)
{
    rt_err err = {{0}};
    if (bus_client_send(&d->bus, e, &err) < 0)
        die("%s", err.msg);
}

/* True when the paramserver that sent Ready is gone (its pid is reaped by
 * the test, which then starts another). */
static bool ps_dead(void *arg)
{
    const drv *d = arg;
    return d->ps_pid != 0 && kill((pid_t)d->ps_pid, 0) < 0 && errno == ESRCH;
}

/* After the paramserver died: a new socket and Hello until its successor answers. */
static void reconnect(drv *d)
{
    fprintf(stderr, "ps_driver: paramserver pid %u died; waiting for its restart\n", d->ps_pid);
    d->restarts++;
    connect_sock(d);
    hello(d, d->timeout_ms);
}

/* The next reply that is not a heartbeat, or NULL on timeout or death. */
static Ramtrain__Envelope *recv_reply(drv *d, int timeout_ms)
{
    Ramtrain__Envelope *r;
    rt_err err = {{0}};
    if (bus_client_recv(&d->bus, NULL, timeout_ms, &r, &err) < 0)
        die("%s", err.msg);
    return r;
}

/* Sends e and waits for the reply with the same request id (skipping
 * heartbeats). Returns the reply, or NULL on timeout or death. */
static Ramtrain__Envelope *call(drv *d, Ramtrain__Envelope *e, int timeout_ms)
{
    Ramtrain__Envelope *r;
    rt_err err = {{0}};
    if (bus_client_call(&d->bus, e, timeout_ms, &r, &err) < 0)
        die("%s", err.msg);
    return r;
}

/* call, resending e to a restarted paramserver when this one died. *resent
 * (may be NULL) says whether it had to. */
static Ramtrain__Envelope *call_retry(drv *d, Ramtrain__Envelope *e, int *resent)
{
    if (resent != NULL)
        *resent = 0;
    for (;;) {
        Ramtrain__Envelope *r = call(d, e, d->timeout_ms);
        if (r != NULL || !ps_dead(d))
            return r;
        reconnect(d);
        if (resent != NULL)
            *resent = 1;
    }
}

static Ramtrain__Envelope *call_expect(drv *d, Ramtrain__Envelope *e, int body)
{
    Ramtrain__Envelope *r = call_retry(d, e, NULL);
    if (r == NULL)
        die("no reply to %s within %d ms", env_body_name(e), d->timeout_ms);
    if (r->body_case == RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY)
        die("%s refused: %s", env_body_name(e), r->error_reply->message);
    if ((int)r->body_case != body)
        die("%s answered with %s", env_body_name(e), env_body_name(r));
    return r;
}

#define REQ(e) env_init(&(e), d->run_id, "ps_driver", d->next_req++)

/* Says Hello until a paramserver answers; returns its Ready. */
static void hello(drv *d, int total_ms)
{
    for (int waited = 0; waited < total_ms; waited += 200) {
        Ramtrain__Envelope e;
        Ramtrain__Hello h = RAMTRAIN__HELLO__INIT;
        REQ(e);
        h.role = "worker";
        h.has_pid = 1, h.pid = (uint32_t)getpid();
        e.body_case = RAMTRAIN__ENVELOPE__BODY_HELLO;
        e.hello = &h;
        Ramtrain__Envelope *r = call(d, &e, 200);
        if (r == NULL) {
            connect_sock(d); /* drop what is queued for the dead peer */
            continue;
        }
        if (r->body_case != RAMTRAIN__ENVELOPE__BODY_READY)
            die("hello answered with %s", env_body_name(r));
        d->ps_pid = r->ready->pid;
        env_free(r);
        return;
    }
    die("no paramserver answered on %s within %d ms", d->endpoint, total_ms);
}

typedef struct mapped {
    void *base;
    size_t len;
    char path[BS_NAME_LEN];
} mapped;

static void map_block(mapped *mb, const char *path)
{
    if (mb->base != NULL && strcmp(mb->path, path) == 0)
        return;
    if (mb->base != NULL)
        munmap(mb->base, mb->len);
    int fd = open(path, O_RDWR);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die("open %s: %s", path, strerror(errno));
    mb->len = (size_t)st.st_size;
    mb->base = mmap(NULL, mb->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (mb->base == MAP_FAILED)
        die("mmap %s: %s", path, strerror(errno));
    snprintf(mb->path, sizeof mb->path, "%s", path);
}

static void fetch(drv *d, uint32_t block, uint64_t version, mapped *mb)
{
    Ramtrain__Envelope e;
    Ramtrain__FetchLayer f = RAMTRAIN__FETCH_LAYER__INIT;
    REQ(e);
    f.has_block = 1, f.block = block;
    f.has_min_version = 1, f.min_version = version;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_FETCH_LAYER;
    e.fetch_layer = &f;
    Ramtrain__Envelope *r = call_expect(d, &e, RAMTRAIN__ENVELOPE__BODY_LAYER_READY);
    if (r->layer_ready->version < version || r->layer_ready->shm_path == NULL)
        die("LayerReady for block %u: version %llu < %llu", block,
            (unsigned long long)r->layer_ready->version, (unsigned long long)version);
    map_block(mb, r->layer_ready->shm_path);
    env_free(r);
}

/* GradReady; returns 1 when acknowledged as a duplicate, 0 when counted,
 * -1 when no reply came. *resent: the paramserver died first and the
 * request went to its successor. */
static int grad_ready(drv *d, uint32_t block, uint64_t step, uint32_t micro, uint32_t slot,
                      int *resent)
{
    Ramtrain__Envelope e;
    Ramtrain__GradReady g = RAMTRAIN__GRAD_READY__INIT;
    REQ(e);
    g.has_block = 1, g.block = block;
    g.has_step = 1, g.step = step;
    g.has_micro = 1, g.micro = micro;
    g.has_slot = 1, g.slot = slot;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_GRAD_READY;
    e.grad_ready = &g;
    Ramtrain__Envelope *r = call_retry(d, &e, resent);
    if (r == NULL)
        return -1;
    if (r->body_case != RAMTRAIN__ENVELOPE__BODY_ACK)
        die("GradReady(%u, %llu, %u) answered with %s: %s", block, (unsigned long long)step,
            micro, env_body_name(r),
            r->body_case == RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY ? r->error_reply->message : "");
    int dup = r->ack->duplicate;
    env_free(r);
    return dup;
}

int main(int argc, char **argv)
{
    drv dd = {.timeout_ms = 60000}, *d = &dd;
    const char *grads = NULL, *ckpt = NULL, *dump_w = NULL;
    int steps = 1, micro = 1, kill_after = -1, first_block = 0, n_blocks = -1;
    double max_norm = 0;
    int shutdown = 0, remove_state = 0, ckpt_keep = 0, ckpt_compute = 0;
    static const struct option opts[] = {
        {"endpoint", 1, 0, 'e'}, {"run-id", 1, 0, 'r'}, {"grads", 1, 0, 'g'},
        {"steps", 1, 0, 's'}, {"micro", 1, 0, 'm'}, {"max-grad-norm", 1, 0, 'n'},
        {"kill-after", 1, 0, 'k'}, {"checkpoint", 1, 0, 'c'}, {"keep", 1, 0, 'K'},
        {"compute-dtype", 0, 0, 'C'}, {"shutdown", 0, 0, 'S'}, {"remove-state", 0, 0, 'R'},
        {"blocks", 1, 0, 'b'}, {"timeout-ms", 1, 0, 't'}, {"dump-w", 1, 0, 'w'},
        {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'e': d->endpoint = optarg; break;
        case 'r': d->run_id = optarg; break;
        case 'g': grads = optarg; break;
        case 's': steps = atoi(optarg); break;
        case 'm': micro = atoi(optarg); break;
        case 'n': max_norm = atof(optarg); break;
        case 'k': kill_after = atoi(optarg); break;
        case 'c': ckpt = optarg; break;
        case 'K': ckpt_keep = atoi(optarg); break;
        case 'C': ckpt_compute = 1; break;
        case 'S': shutdown = 1; break;
        case 'R': remove_state = 1; break;
        case 'b': if (sscanf(optarg, "%d:%d", &first_block, &n_blocks) != 2) die("--blocks A:N"); break;
        case 't': d->timeout_ms = atoi(optarg); break;
        case 'w': dump_w = optarg; break;
        default: die("bad option %s", argv[optind - 1]);
        }
    }
    if (d->endpoint == NULL || d->run_id == NULL)
        die("--endpoint and --run-id are required");
    d->zctx = zmq_ctx_new();
    d->bus = (bus_client){.run_id = d->run_id, .gone = ps_dead, .gone_arg = d};
    connect_sock(d);
    hello(d, d->timeout_ms);

    /* where the run stands */
    Ramtrain__Envelope e;
    Ramtrain__Status stq = RAMTRAIN__STATUS__INIT;
    REQ(e);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_STATUS;
    e.status = &stq;
    Ramtrain__Envelope *r = call_expect(d, &e, RAMTRAIN__ENVELOPE__BODY_STATUS_REPLY);
    uint64_t start = r->status_reply->steps_committed;
    if (n_blocks < 0)
        n_blocks = (int)r->status_reply->n_blocks;
    env_free(r);

    mapped mb = {0};
    int acked = 0;
    for (uint64_t s = start; grads != NULL && s < (uint64_t)steps; s++) {
        for (int m = 0; m < micro; m++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/step-%llu-micro-%d.safetensors", grads,
                     (unsigned long long)s, m);
            st_set *set;
            rt_err err = {{0}};
            if (st_open(path, &set, &err) < 0)
                die("%s", err.msg);
            for (int b = first_block + n_blocks - 1; b >= first_block; b--) {
                fetch(d, (uint32_t)b, s, &mb);
                const bs_header *h = mb.base;
                const lb_layout *l = &h->layout;
                uint32_t slot = (uint32_t)(m % l->n_gslots);
                for (int i = 0; i < l->n_tensors; i++) {
                    const st_tensor *t = st_find(set, l->t[i].name);
                    if (t == NULL)
                        die("%s: no tensor %s", path, l->t[i].name);
                    float *tmp = malloc(l->t[i].numel * sizeof *tmp);
                    if (st_tensor_read_f32(t, tmp, l->t[i].numel, &err) < 0)
                        die("%s", err.msg);
                    dt_from_f32(l->compute, tmp,
                                lb_tensor_ptr(l, mb.base, LB_SEC_G0 + (lb_section)slot, i),
                                l->t[i].numel);
                    free(tmp);
                }
                int resent;
                int rc = grad_ready(d, (uint32_t)b, s, (uint32_t)m, slot, &resent);
                if (rc < 0)
                    die("no Ack for GradReady(%d, %llu, %d)", b, (unsigned long long)s, m);
                if (rc == 1 && !resent)
                    die("GradReady(%d, %llu, %d) was taken for a resend", b, (unsigned long long)s, m);
                if (rc != 1 && resent)
                    die("GradReady(%d, %llu, %d), interrupted by the paramserver's death, was "
                        "not finished by its restart (counted again)", b, (unsigned long long)s, m);
                if (++acked == kill_after) {
                    fprintf(stderr, "ps_driver: SIGKILL to paramserver pid %u after %d GradReady\n",
                            d->ps_pid, acked);
                    kill((pid_t)d->ps_pid, SIGKILL);
                    munmap(mb.base, mb.len);
                    mb.base = NULL;
                    connect_sock(d);
                    hello(d, d->timeout_ms);
                    /* the last one again: it must be recognised */
                    if (grad_ready(d, (uint32_t)b, s, (uint32_t)m, slot, NULL) != 1)
                        die("the resent GradReady(%d, %llu, %d) was not acknowledged as a "
                            "duplicate after the restart", b, (unsigned long long)s, m);
                    fetch(d, (uint32_t)b, s, &mb);
                }
            }
            st_close(set);
        }
        Ramtrain__GradNorm gn = RAMTRAIN__GRAD_NORM__INIT;
        REQ(e);
        gn.has_step = 1, gn.step = s;
        e.body_case = RAMTRAIN__ENVELOPE__BODY_GRAD_NORM;
        e.grad_norm = &gn;
        r = call_expect(d, &e, RAMTRAIN__ENVELOPE__BODY_GRAD_NORM_REPLY);
        double norm = sqrt(r->grad_norm_reply->sumsq);
        env_free(r);
        double clip = 1.0;
        if (max_norm > 0) {
            clip = max_norm / (norm + 1e-6);
            if (clip > 1.0)
                clip = 1.0;
        }
        Ramtrain__ApplyStep as = RAMTRAIN__APPLY_STEP__INIT;
        REQ(e);
        as.has_step = 1, as.step = s;
        as.has_clip_factor = 1, as.clip_factor = clip;
        as.has_data_cursor = 1, as.data_cursor = (s + 1) * (uint64_t)micro;
        e.body_case = RAMTRAIN__ENVELOPE__BODY_APPLY_STEP;
        e.apply_step = &as;
        /* The next step's first FetchLayer goes out before ApplyStep: the
         * paramserver must hold it and answer once that block is updated,
         * with the new version, before the step finishes. */
        Ramtrain__Envelope ef;
        Ramtrain__FetchLayer fl = RAMTRAIN__FETCH_LAYER__INIT;
        REQ(ef);
        fl.has_block = 1, fl.block = (uint32_t)first_block;
        fl.has_min_version = 1, fl.min_version = s + 1;
        ef.body_case = RAMTRAIN__ENVELOPE__BODY_FETCH_LAYER;
        ef.fetch_layer = &fl;
        send_only(d, &ef);
        send_only(d, &e);
        int got_fetch = 0, got_step = 0;
        while (!got_step) {
            r = recv_reply(d, d->timeout_ms);
            if (r == NULL && ps_dead(d)) {
                /* died inside the step: the restart finishes it; ask again */
                reconnect(d);
                if (!got_fetch)
                    send_only(d, &ef);
                send_only(d, &e);
                continue;
            }
            if (r == NULL)
                die("no reply to ApplyStep(%llu) within %d ms", (unsigned long long)s, d->timeout_ms);
            if (r->body_case == RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY)
                die("request %llu refused: %s", (unsigned long long)r->request_id,
                    r->error_reply->message);
            if (r->request_id == ef.request_id) {
                if (r->body_case != RAMTRAIN__ENVELOPE__BODY_LAYER_READY ||
                    r->layer_ready->version != s + 1)
                    die("the early FetchLayer(%d, %llu) got %s version %llu", first_block,
                        (unsigned long long)s + 1, env_body_name(r),
                        r->body_case == RAMTRAIN__ENVELOPE__BODY_LAYER_READY
                            ? (unsigned long long)r->layer_ready->version : 0ull);
                got_fetch = 1;
            } else if (r->request_id == e.request_id) {
                if (r->body_case != RAMTRAIN__ENVELOPE__BODY_STEP_COMMITTED)
                    die("ApplyStep answered with %s", env_body_name(r));
                got_step = 1;
            }
            env_free(r);
        }
        if (!got_fetch && n_blocks > 1)
            die("FetchLayer(%d, min_version %llu) was not answered before step %llu finished: "
                "the next forward would wait for the whole optimizer step",
                first_block, (unsigned long long)s + 1, (unsigned long long)s);
        if (!got_fetch) {
            r = recv_reply(d, d->timeout_ms);
            if (r == NULL || r->request_id != ef.request_id)
                die("the early FetchLayer was never answered");
            env_free(r);
        }
        printf("step %llu norm %.9g clip %.9g\n", (unsigned long long)s, norm, clip);
    }
    if (dump_w != NULL) {
        /* W of every block as the worker sees it (compute dtype), to check
         * the rounding of the master weights bitwise. */
        st_writer w;
        st_writer_init(&w);
        mapped *maps = calloc((size_t)n_blocks, sizeof *maps);
        rt_err err = {{0}};
        for (int b = first_block; b < first_block + n_blocks; b++) {
            mapped *mp = &maps[b - first_block];
            fetch(d, (uint32_t)b, 0, mp);
            const bs_header *h = mp->base;
            const lb_layout *l = &h->layout;
            for (int i = 0; i < l->n_tensors; i++)
                if (st_writer_add(&w, l->t[i].name, l->compute, l->t[i].ndim, l->t[i].shape,
                                  lb_tensor_ptr(l, mp->base, LB_SEC_W, i), &err) < 0)
                    die("%s", err.msg);
        }
        if (st_writer_write(&w, dump_w, &err) < 0)
            die("%s", err.msg);
        st_writer_free(&w);
        for (int b = 0; b < n_blocks; b++)
            munmap(maps[b].base, maps[b].len);
        free(maps);
    }
    if (ckpt != NULL) {
        Ramtrain__Checkpoint c = RAMTRAIN__CHECKPOINT__INIT;
        REQ(e);
        c.dir = (char *)ckpt;
        c.has_keep = ckpt_keep > 0, c.keep = (uint32_t)ckpt_keep;
        c.has_compute_dtype = 1, c.compute_dtype = ckpt_compute;
        e.body_case = RAMTRAIN__ENVELOPE__BODY_CHECKPOINT;
        e.checkpoint = &c;
        r = call_expect(d, &e, RAMTRAIN__ENVELOPE__BODY_CHECKPOINT_DONE);
        printf("checkpoint %s\n", r->checkpoint_done->path);
        env_free(r);
    }
    if (shutdown) {
        Ramtrain__Shutdown sd = RAMTRAIN__SHUTDOWN__INIT;
        REQ(e);
        sd.reason = "test done";
        sd.has_remove_state = 1, sd.remove_state = remove_state;
        e.body_case = RAMTRAIN__ENVELOPE__BODY_SHUTDOWN;
        e.shutdown = &sd;
        r = call_expect(d, &e, RAMTRAIN__ENVELOPE__BODY_SHUTDOWN);
        env_free(r);
    }
    if (d->restarts > 0)
        printf("restarts %d\n", d->restarts);
    if (mb.base != NULL)
        munmap(mb.base, mb.len);
    bus_client_close(&d->bus);
    zmq_ctx_term(d->zctx);
    return 0;
}
