/*
 * engine: the streaming engine (see engine.h).
 *
 * Units. Compute needs weights in "units": unit b is block b, except that
 * the head unit of a model with tied embeddings is the head block followed
 * by the embedding (head_loss reads both). A micro-batch requests units in
 * the order compute uses them: the embedding, layers 1..L, the head, then
 * layers L..1 for the backward (the embedding's backward needs no weights).
 *
 * One mutex guards the request list, the buffers and the gradient queue;
 * every change broadcasts one condition variable. The copy threads do their
 * copying and messaging with the mutex released.
 */
#include "services/worker/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "services/common/bus.h"
#include "services/common/envelope.h"
#include "services/common/log.h"
#include "storage/blockstore.h"
#include "storage/layer_block.h"

#define WK_N_GBUF 3            /* gradient buffers: head (+ tied embedding) and the layer in hand */
#define WK_WAIT_SLICE_MS 200   /* a copy thread's wait for a reply checks for cancel this often */

enum { BUF_FREE = 0, BUF_LOADING, BUF_READY, BUF_INUSE };
enum { GB_FREE = 0, GB_COMPUTE, GB_QUEUED };

typedef struct wbuf {
    float *mem;
    uint64_t cap;
    int unit;                  /* unit it holds, -1: none */
    uint64_t version;
    int state;
    int req;                   /* request it is READY/INUSE for */
    uint64_t lru;
    int resident_unit;         /* >= 0: reserved for this unit */
} wbuf;

typedef struct gbuf {
    float *mem;
    int state;
} gbuf;

typedef struct gjob {
    int block;
    int gbuf;
    uint64_t step;
    uint32_t micro;
} gjob;

typedef struct blockmap {
    void *base;                /* mapping of header + W + G slots, or NULL */
    uint64_t map_bytes;
    lb_layout lc;              /* the block's layout in the compute dtype (paramserver's n_gslots) */
    uint64_t known_version;    /* version W had at the last LayerReady */
    char path[BS_NAME_LEN];
} blockmap;

struct wk_engine {
    wk_config c;
    model_config cfg;
    int L, n_blocks, n_units, head;
    lb_layout *lf;             /* [n_blocks] fp32 layouts: a unit's buffer holds W in this layout */
    uint64_t *unit_bytes;      /* [n_units] */
    int *unit_rbuf;            /* [n_units] resident buffer index, or -1 */
    blockmap *bm;              /* [n_blocks] */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    wbuf *buf;
    int n_buf, n_stream, n_resident;
    uint64_t resident_bytes, stream_bytes;
    uint64_t tick;
    /* the micro-batch in hand */
    uint64_t step;
    uint32_t micro;
    int n_req, next_load;
    int *req_unit, *req_buf;   /* [2L + 2] */
    double *req_fetch_wait;    /* [2L + 2] seconds the copy path waited for the version */
    /* gradients */
    gbuf gb[WK_N_GBUF];
    uint64_t gbuf_bytes;
    gjob *jobs;                /* FIFO of [n_blocks * 2] */
    int job_head, job_tail, job_cap;
    int outstanding;           /* gradients queued or being sent */
    /* failure, reset, exit */
    int fail_rc;
    char fail_msg[sizeof(rt_err)];
    bool resetting, quit;
    _Atomic bool cancel;
    bool h2d_busy, d2h_busy;
    uint64_t gen;              /* bumped by reset: the threads reconnect */
    _Atomic uint32_t ps_pid;
    /* per micro-batch accounting, under mu */
    double copy_in_s, copy_out_s;
    uint64_t bytes_in, bytes_out;

    float *acts, *dx;          /* activation checkpoints [L + 1][N][hidden], gradient [N][hidden] */
    pthread_t h2d, d2h;
    bool threads_started;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Records the first failure and wakes everyone. Called with mu held. */
static void fail_locked(wk_engine *e, int rc, const char *msg)
{
    if (e->fail_rc == 0) {
        e->fail_rc = rc < 0 ? rc : -EIO;
        snprintf(e->fail_msg, sizeof e->fail_msg, "%s", msg);
    }
    pthread_cond_broadcast(&e->cv);
}

bool wk_pid_alive(uint32_t pid)
{
    if (pid == 0)
        return true;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%u/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return !(p != NULL && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

/* bus_client's `gone`: the paramserver died, or the engine is being reset or cancelled. */
static bool ps_gone(void *arg)
{
    wk_engine *e = arg;
    return e->cancel || !wk_pid_alive(e->ps_pid);
}

/* Sends req on c and waits for its reply (no timeout: the paramserver may
 * hold a FetchLayer until an optimizer step is done; its death or a cancel
 * ends the wait). Returns 0 with *out, or a negative errno with err (an
 * ErrorReply is its code). */
static int ps_call(wk_engine *e, bus_client *c, Ramtrain__Envelope *req, Ramtrain__Envelope **out,
                   rt_err *err)
{
    *out = NULL;
    int rc = bus_client_send(c, req, err);
    if (rc < 0)
        return rc;
    for (;;) {
        Ramtrain__Envelope *r = NULL;
        rc = bus_client_recv(c, &req->request_id, WK_WAIT_SLICE_MS, &r, err);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            if (r->body_case == RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY) {
                rc = err_set(err, r->error_reply->has_code ? r->error_reply->code : -EIO,
                             "paramserver refused %s: %s", env_body_name(req),
                             r->error_reply->message ? r->error_reply->message : "(no message)");
                env_free(r);
                return rc < 0 ? rc : -EIO;
            }
            *out = r;
            return 0;
        }
        if (ps_gone(e))
            return e->cancel ? err_set(err, -ECANCELED, "cancelled")
                             : err_set(err, -EPIPE, "the paramserver (pid %u) went away",
                                       (unsigned)e->ps_pid);
    }
}

/* ---- blocks ------------------------------------------------------------------------ */

static void unmap_block(blockmap *m)
{
    if (m->base != NULL)
        munmap(m->base, m->map_bytes);
    m->base = NULL;
    m->known_version = 0;
    m->path[0] = '\0';
}

/* Maps what LayerReady names and checks it against the layout the model gives. */
static int map_block(wk_engine *e, int b, const Ramtrain__LayerReady *r, rt_err *err)
{
    blockmap *m = &e->bm[b];
    if (r->shm_path == NULL || !r->has_w_offset || !r->has_w_bytes || !r->has_g_offset ||
        !r->has_n_gslots || r->n_gslots < 1 || r->n_gslots > 4)
        return err_set(err, -EBADMSG, "layer_ready of block %d: missing or bad fields", b);
    if (m->base != NULL && strcmp(m->path, r->shm_path) == 0)
        return 0;
    unmap_block(m);
    lb_layout lc;
    int rc = model_block_layout(&e->cfg, b, e->c.compute, (int)r->n_gslots, &lc, err);
    if (rc < 0)
        return rc;
    if (lc.sec_off[LB_SEC_W] != r->w_offset || lc.w_bytes != r->w_bytes ||
        lc.sec_off[LB_SEC_G0] != r->g_offset)
        return err_set(err, -ESTALE,
                       "block %d at %s: W at %llu (%llu bytes), G at %llu; this model's layout "
                       "has %llu (%llu bytes), %llu: the paramserver serves another model or dtype",
                       b, r->shm_path, (unsigned long long)r->w_offset,
                       (unsigned long long)r->w_bytes, (unsigned long long)r->g_offset,
                       (unsigned long long)lc.sec_off[LB_SEC_W], (unsigned long long)lc.w_bytes,
                       (unsigned long long)lc.sec_off[LB_SEC_G0]);
    uint64_t len = r->g_offset + (uint64_t)r->n_gslots * r->w_bytes;
    int fd = open(r->shm_path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return err_set(err, -errno, "cannot open block %d at %s: %s", b, r->shm_path,
                       strerror(errno));
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e_mmap = errno;
    close(fd);
    if (p == MAP_FAILED)
        return err_set(err, -e_mmap, "cannot map block %d at %s: %s", b, r->shm_path,
                       strerror(e_mmap));
    const bs_header *h = p;
    if (h->magic != BS_MAGIC || h->layout_hash != lb_layout_hash(&lc) || (int)h->block != b) {
        munmap(p, len);
        return err_set(err, -ESTALE, "block %d at %s: header does not match this model's layout", b,
                       r->shm_path);
    }
    m->base = p;
    m->map_bytes = len;
    m->lc = lc;
    snprintf(m->path, sizeof m->path, "%s", r->shm_path);
    return 0;
}

/* Makes sure block b is mapped and its W holds version v (FetchLayer). */
static int ensure_block(wk_engine *e, bus_client *c, uint64_t *req_id, int b, uint64_t v,
                        double *waited, rt_err *err)
{
    blockmap *m = &e->bm[b];
    if (m->base != NULL && m->known_version == v)
        return 0;
    Ramtrain__Envelope q;
    Ramtrain__FetchLayer f = RAMTRAIN__FETCH_LAYER__INIT;
    env_init(&q, e->c.run_id, "worker", ++*req_id);
    f.has_block = 1, f.block = (uint32_t)b;
    f.has_min_version = 1, f.min_version = v;
    q.body_case = RAMTRAIN__ENVELOPE__BODY_FETCH_LAYER;
    q.fetch_layer = &f;
    double t0 = now_s();
    Ramtrain__Envelope *r;
    int rc = ps_call(e, c, &q, &r, err);
    *waited += now_s() - t0;
    if (rc < 0)
        return rc;
    if (r->body_case != RAMTRAIN__ENVELOPE__BODY_LAYER_READY || !r->layer_ready->has_version) {
        rc = err_set(err, -EBADMSG, "fetch_layer of block %d answered with %s", b, env_body_name(r));
    } else if (r->layer_ready->version != v) {
        rc = err_set(err, -ESTALE, "block %d is at version %llu, not %llu: the worker is out of step",
                     b, (unsigned long long)r->layer_ready->version, (unsigned long long)v);
    } else if ((rc = map_block(e, b, r->layer_ready, err)) == 0) {
        m->known_version = v;
    }
    env_free(r);
    return rc;
}

/* Copies block b's W (compute dtype) into dst laid out as lf[b]'s W. */
static uint64_t copy_w(wk_engine *e, int b, float *dst)
{
    const blockmap *m = &e->bm[b];
    const lb_layout *lc = &m->lc, *lf = &e->lf[b];
    const char *w = (const char *)m->base + lc->sec_off[LB_SEC_W];
    uint64_t bytes = 0;
    for (int i = 0; i < lc->n_tensors; i++) {
        float *d = (float *)((char *)dst + lf->t[i].offset);
        const void *s = w + lc->t[i].offset;
        if (lc->compute == DT_F32)
            memcpy(d, s, lc->t[i].numel * sizeof(float));
        else
            dt_to_f32(lc->compute, s, d, lc->t[i].numel);
        bytes += lc->t[i].numel * dt_size(lc->compute);
    }
    return bytes;
}

/* Writes the fp32 gradient src (lf[b] layout) into G slot `slot` of block b. */
static uint64_t copy_g(wk_engine *e, int b, int slot, const float *src)
{
    const blockmap *m = &e->bm[b];
    const lb_layout *lc = &m->lc, *lf = &e->lf[b];
    char *g = (char *)m->base + lc->sec_off[LB_SEC_G0] + (uint64_t)slot * lc->w_bytes;
    uint64_t bytes = 0;
    for (int i = 0; i < lc->n_tensors; i++) {
        const float *s = (const float *)((const char *)src + lf->t[i].offset);
        void *d = g + lc->t[i].offset;
        if (lc->compute == DT_F32)
            memcpy(d, s, lc->t[i].numel * sizeof(float));
        else
            dt_from_f32(lc->compute, s, d, lc->t[i].numel);
        bytes += lc->t[i].numel * dt_size(lc->compute);
    }
    return bytes;
}

/* ---- copy in ----------------------------------------------------------------------- */

/* Loads unit u at version v into dst: fetch (and map) its blocks, then copy. */
static int load_unit(wk_engine *e, bus_client *c, uint64_t *req_id, int u, uint64_t v, float *dst,
                     double *fetch_wait, uint64_t *bytes, rt_err *err)
{
    int blocks[2] = {u, -1};
    if (u == e->head && e->cfg.tie_embeddings)
        blocks[1] = 0;
    uint64_t off = 0;
    for (int k = 0; k < 2 && blocks[k] >= 0; k++) {
        int rc = ensure_block(e, c, req_id, blocks[k], v, fetch_wait, err);
        if (rc < 0)
            return rc;
        *bytes += copy_w(e, blocks[k], (float *)((char *)dst + off));
        off += e->lf[blocks[k]].w_bytes;
    }
    return 0;
}

/* Picks the buffer for request j (mu held): a hit (a free buffer already
 * holding the unit at this version), else a free buffer to load into.
 * Returns the index and sets *hit, or -1 when it must wait. */
static int pick_buffer(wk_engine *e, int u, uint64_t v, bool *hit)
{
    int rb = e->unit_rbuf[u];
    if (rb >= 0) {
        if (e->buf[rb].state != BUF_FREE)
            return -1;
        *hit = e->buf[rb].unit == u && e->buf[rb].version == v;
        return rb;
    }
    int best = -1;
    for (int i = 0; i < e->n_buf; i++) {
        wbuf *b = &e->buf[i];
        if (b->resident_unit >= 0)
            continue;
        if (b->unit == u && b->version == v) {
            if (b->state != BUF_FREE)
                return -1; /* it will be free again: wait for it rather than copy twice */
            *hit = true;
            return i;
        }
        if (b->state == BUF_FREE && (best < 0 || b->lru < e->buf[best].lru))
            best = i;
    }
    *hit = false;
    return best;
}

static void *h2d_main(void *arg)
{
    wk_engine *e = arg;
    bus_client c = {.run_id = e->c.run_id, .gone = ps_gone, .gone_arg = e};
    uint64_t gen = UINT64_MAX, req_id = 0;
    rt_err err = {{0}};
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->quit && (e->resetting || e->fail_rc != 0 || e->next_load >= e->n_req))
            pthread_cond_wait(&e->cv, &e->mu);
        if (e->quit)
            break;
        if (gen != e->gen) {
            gen = e->gen;
            int rc = bus_client_connect(&c, e->c.zctx, e->c.ps_endpoint, &err);
            if (rc < 0) {
                fail_locked(e, rc, err.msg);
                continue;
            }
        }
        int j = e->next_load, u = e->req_unit[j];
        uint64_t v = e->step;
        bool hit = false;
        int bi = pick_buffer(e, u, v, &hit);
        if (bi < 0) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        wbuf *b = &e->buf[bi];
        if (!hit) {
            b->state = BUF_LOADING;
            b->unit = -1;
            e->h2d_busy = true;
            pthread_mutex_unlock(&e->mu);
            double fetch_wait = 0, t0 = tr_now_us();
            uint64_t bytes = 0;
            int rc = load_unit(e, &c, &req_id, u, v, b->mem, &fetch_wait, &bytes, &err);
            double t1 = tr_now_us();
            if (fetch_wait > 1e-4)
                tr_span(e->c.trace, TR_COPY_IN, "wait version", t0, t0 + fetch_wait * 1e6, u, v,
                        (int)e->micro);
            tr_span(e->c.trace, TR_COPY_IN, "copy W", t0 + fetch_wait * 1e6, t1, u, v,
                    (int)e->micro);
            pthread_mutex_lock(&e->mu);
            e->h2d_busy = false;
            b->state = BUF_FREE;
            if (rc < 0) {
                fail_locked(e, rc, err.msg);
                continue;
            }
            if (e->resetting || e->fail_rc != 0)
                continue;
            e->copy_in_s += (t1 - t0) * 1e-6 - fetch_wait;
            e->bytes_in += bytes;
            e->req_fetch_wait[j] = fetch_wait;
            b->unit = u;
            b->version = v;
        }
        b->state = BUF_READY;
        b->req = j;
        e->req_buf[j] = bi;
        e->next_load++;
        pthread_cond_broadcast(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    bus_client_close(&c);
    return NULL;
}

/* ---- copy out ---------------------------------------------------------------------- */

static int send_grad(wk_engine *e, bus_client *c, uint64_t *req_id, const gjob *j, rt_err *err)
{
    const blockmap *m = &e->bm[j->block];
    if (m->base == NULL)
        return err_set(err, -EPROTO, "block %d has no mapping for its gradient", j->block);
    int slot = (int)(j->micro % (uint32_t)m->lc.n_gslots);
    double t0 = tr_now_us();
    uint64_t bytes = copy_g(e, j->block, slot, e->gb[j->gbuf].mem);
    double t1 = tr_now_us();
    tr_span(e->c.trace, TR_COPY_OUT, "copy G", t0, t1, j->block, j->step, (int)j->micro);
    Ramtrain__Envelope q;
    Ramtrain__GradReady g = RAMTRAIN__GRAD_READY__INIT;
    env_init(&q, e->c.run_id, "worker", ++*req_id);
    g.has_block = 1, g.block = (uint32_t)j->block;
    g.has_step = 1, g.step = j->step;
    g.has_micro = 1, g.micro = j->micro;
    g.has_slot = 1, g.slot = (uint32_t)slot;
    q.body_case = RAMTRAIN__ENVELOPE__BODY_GRAD_READY;
    q.grad_ready = &g;
    Ramtrain__Envelope *r;
    int rc = ps_call(e, c, &q, &r, err);
    double t2 = tr_now_us();
    tr_span(e->c.trace, TR_COPY_OUT, "grad ack", t1, t2, j->block, j->step, (int)j->micro);
    if (rc < 0)
        return rc;
    if (r->body_case != RAMTRAIN__ENVELOPE__BODY_ACK)
        rc = err_set(err, -EBADMSG, "grad_ready of block %d answered with %s", j->block,
                     env_body_name(r));
    env_free(r);
    pthread_mutex_lock(&e->mu);
    e->copy_out_s += (t1 - t0) * 1e-6;
    e->bytes_out += bytes;
    pthread_mutex_unlock(&e->mu);
    return rc;
}

static void *d2h_main(void *arg)
{
    wk_engine *e = arg;
    bus_client c = {.run_id = e->c.run_id, .gone = ps_gone, .gone_arg = e};
    uint64_t gen = UINT64_MAX, req_id = 0;
    rt_err err = {{0}};
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->quit && (e->resetting || e->fail_rc != 0 || e->job_head == e->job_tail))
            pthread_cond_wait(&e->cv, &e->mu);
        if (e->quit)
            break;
        if (gen != e->gen) {
            gen = e->gen;
            int rc = bus_client_connect(&c, e->c.zctx, e->c.ps_endpoint, &err);
            if (rc < 0) {
                fail_locked(e, rc, err.msg);
                continue;
            }
        }
        gjob j = e->jobs[e->job_head % e->job_cap];
        e->d2h_busy = true;
        pthread_mutex_unlock(&e->mu);
        int rc = send_grad(e, &c, &req_id, &j, &err);
        pthread_mutex_lock(&e->mu);
        e->d2h_busy = false;
        if (rc < 0) {
            fail_locked(e, rc, err.msg);
            continue;
        }
        if (e->resetting)
            continue;
        e->job_head++;
        e->gb[j.gbuf].state = GB_FREE;
        e->outstanding--;
        pthread_cond_broadcast(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    bus_client_close(&c);
    return NULL;
}

/* ---- compute ----------------------------------------------------------------------- */

/* Waits for request j's buffer; returns it, or NULL on failure. */
static wbuf *acquire(wk_engine *e, int j, wk_times *t)
{
    double t0 = now_s();
    pthread_mutex_lock(&e->mu);
    while (e->fail_rc == 0 && !e->cancel && e->req_buf[j] < 0)
        pthread_cond_wait(&e->cv, &e->mu);
    wbuf *b = NULL;
    if (e->fail_rc == 0 && !e->cancel) {
        b = &e->buf[e->req_buf[j]];
        b->state = BUF_INUSE;
    } else if (e->fail_rc == 0) {
        fail_locked(e, -ECANCELED, "cancelled");
    }
    double fw = e->req_fetch_wait[j];
    pthread_mutex_unlock(&e->mu);
    double w = now_s() - t0;
    t->wait_weights += w;
    t->wait_optimizer += w < fw ? w : fw;
    if (w > 1e-4)
        tr_span(e->c.trace, TR_COMPUTE, "wait weights", t0 * 1e6, (t0 + w) * 1e6, e->req_unit[j],
                e->step, (int)e->micro);
    return b;
}

static void release(wk_engine *e, wbuf *b)
{
    pthread_mutex_lock(&e->mu);
    b->state = BUF_FREE;
    b->lru = ++e->tick;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* A zeroed gradient buffer for block `block`. */
static int gbuf_get(wk_engine *e, int block)
{
    pthread_mutex_lock(&e->mu);
    int g = -1;
    for (;;) {
        if (e->fail_rc != 0 || e->cancel)
            break;
        for (int i = 0; i < WK_N_GBUF && g < 0; i++)
            if (e->gb[i].state == GB_FREE)
                g = i;
        if (g >= 0) {
            e->gb[g].state = GB_COMPUTE;
            break;
        }
        pthread_cond_wait(&e->cv, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    if (g >= 0)
        memset(e->gb[g].mem, 0, e->lf[block].w_bytes);
    return g;
}

static void gbuf_send(wk_engine *e, int g, int block)
{
    pthread_mutex_lock(&e->mu);
    e->gb[g].state = GB_QUEUED;
    e->jobs[e->job_tail % e->job_cap] =
        (gjob){.block = block, .gbuf = g, .step = e->step, .micro = e->micro};
    e->job_tail++;
    e->outstanding++;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* Pointers of block b's tensors inside an fp32 buffer laid out as lf[b]'s W. */
static void bind(wk_engine *e, int b, void *mem, void *ptrs)
{
    rt_err err = {{0}};
    /* cannot fail: lf[b] is an fp32 layout of this model */
    (void)model_block_bind(&e->cfg, &e->lf[b], (char *)mem - e->lf[b].sec_off[LB_SEC_W], LB_SEC_W,
                           ptrs, &err);
}

static int engine_error(wk_engine *e, rt_err *err)
{
    pthread_mutex_lock(&e->mu);
    int rc = e->fail_rc != 0 ? e->fail_rc : -ECANCELED;
    err_set(err, rc, "%s", e->fail_rc != 0 ? e->fail_msg : "cancelled");
    pthread_mutex_unlock(&e->mu);
    return rc;
}

#define SPAN(name, blk, t0) \
    tr_span(e->c.trace, TR_COMPUTE, name, (t0) * 1e6, now_s() * 1e6, blk, e->step, (int)e->micro)

int wk_engine_micro(wk_engine *e, uint64_t step, uint32_t micro, const int32_t *inputs,
                    const int32_t *targets, float grad_scale, double *loss_sum, wk_times *t,
                    rt_err *err)
{
    be_backend *be = e->c.be;
    const be_ops *ops = be->ops;
    const int L = e->L, N = e->c.B * e->c.T;
    const size_t NH = (size_t)N * (size_t)e->cfg.hidden;
    pthread_mutex_lock(&e->mu);
    if (e->fail_rc != 0) {
        pthread_mutex_unlock(&e->mu);
        return engine_error(e, err);
    }
    e->step = step;
    e->micro = micro;
    e->n_req = 2 * L + 2;
    e->next_load = 0;
    for (int j = 0; j < e->n_req; j++) {
        e->req_buf[j] = -1;
        e->req_fetch_wait[j] = 0;
    }
    e->copy_in_s = e->copy_out_s = 0;
    e->bytes_in = e->bytes_out = 0;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);

    int rc = 0, j = 0;
    double t0;
    wbuf *b;
    /* forward */
    if ((b = acquire(e, j++, t)) == NULL)
        return engine_error(e, err);
    model_embed_ptrs we;
    bind(e, 0, b->mem, &we);
    t0 = now_s();
    rc = ops->embed_forward(be, &we, inputs, N, e->acts);
    t->compute += now_s() - t0;
    SPAN("embed fwd", 0, t0);
    release(e, b);
    if (rc < 0)
        return err_set(err, rc, "embedding forward failed (a token id out of range?)");
    for (int l = 1; l <= L; l++) {
        if ((b = acquire(e, j++, t)) == NULL)
            return engine_error(e, err);
        model_layer_ptrs wl;
        bind(e, l, b->mem, &wl);
        t0 = now_s();
        rc = ops->layer_forward(be, &wl, e->acts + (size_t)(l - 1) * NH, e->acts + (size_t)l * NH,
                                e->c.B, e->c.T, l == L ? BE_KEEP_FOR_BACKWARD : BE_DISCARD);
        t->compute += now_s() - t0;
        SPAN("layer fwd", l, t0);
        release(e, b);
        if (rc < 0)
            return err_set(err, rc, "layer %d forward failed", l - 1);
    }
    /* head: loss and its gradient */
    if ((b = acquire(e, j++, t)) == NULL)
        return engine_error(e, err);
    int g_head = gbuf_get(e, e->head);
    int g_embed = e->cfg.tie_embeddings ? gbuf_get(e, 0) : -1;
    if (g_head < 0 || (e->cfg.tie_embeddings && g_embed < 0)) {
        release(e, b);
        return engine_error(e, err);
    }
    model_head_ptrs wh, gh;
    bind(e, e->head, b->mem, &wh);
    bind(e, e->head, e->gb[g_head].mem, &gh);
    const float *embed = NULL;
    float *gemb = NULL;
    if (e->cfg.tie_embeddings) {
        model_embed_ptrs w0, g0;
        bind(e, 0, (char *)b->mem + e->lf[e->head].w_bytes, &w0);
        bind(e, 0, e->gb[g_embed].mem, &g0);
        embed = w0.embed;
        gemb = g0.embed;
    }
    t0 = now_s();
    rc = ops->head_loss(be, &wh, embed, e->acts + (size_t)L * NH, targets, N, grad_scale,
                        loss_sum, e->dx, &gh, gemb);
    t->compute += now_s() - t0;
    SPAN("head + loss", e->head, t0);
    release(e, b);
    if (rc < 0)
        return err_set(err, rc, "head forward failed (a target id out of range?)");
    gbuf_send(e, g_head, e->head);
    /* backward */
    for (int l = L; l >= 1; l--) {
        if ((b = acquire(e, j++, t)) == NULL)
            return engine_error(e, err);
        int g = gbuf_get(e, l);
        if (g < 0) {
            release(e, b);
            return engine_error(e, err);
        }
        model_layer_ptrs wl, gl;
        bind(e, l, b->mem, &wl);
        bind(e, l, e->gb[g].mem, &gl);
        t0 = now_s();
        rc = ops->layer_backward(be, &wl, e->acts + (size_t)(l - 1) * NH, e->dx, e->dx, &gl,
                                 e->c.B, e->c.T);
        t->compute += now_s() - t0;
        SPAN("layer bwd", l, t0);
        release(e, b);
        if (rc < 0)
            return err_set(err, rc, "layer %d backward failed", l - 1);
        gbuf_send(e, g, l);
    }
    if (g_embed < 0 && (g_embed = gbuf_get(e, 0)) < 0)
        return engine_error(e, err);
    model_embed_ptrs g0;
    bind(e, 0, e->gb[g_embed].mem, &g0);
    t0 = now_s();
    rc = ops->embed_backward(be, inputs, N, e->dx, &g0);
    t->compute += now_s() - t0;
    SPAN("embed bwd", 0, t0);
    if (rc < 0)
        return err_set(err, rc, "embedding backward failed");
    gbuf_send(e, g_embed, 0);
    pthread_mutex_lock(&e->mu);
    t->copy_in += e->copy_in_s;
    t->bytes_in += e->bytes_in;
    pthread_mutex_unlock(&e->mu);
    return 0;
}

int wk_engine_drain(wk_engine *e, rt_err *err)
{
    pthread_mutex_lock(&e->mu);
    while (e->fail_rc == 0 && !e->cancel && e->outstanding > 0)
        pthread_cond_wait(&e->cv, &e->mu);
    bool ok = e->fail_rc == 0 && !e->cancel;
    pthread_mutex_unlock(&e->mu);
    return ok ? 0 : engine_error(e, err);
}

void wk_engine_reset(wk_engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->resetting = true;
    e->cancel = true;
    pthread_cond_broadcast(&e->cv);
    while (e->h2d_busy || e->d2h_busy)
        pthread_cond_wait(&e->cv, &e->mu);
    e->n_req = e->next_load = 0;
    e->job_head = e->job_tail = 0;
    e->outstanding = 0;
    for (int i = 0; i < WK_N_GBUF; i++)
        e->gb[i].state = GB_FREE;
    for (int i = 0; i < e->n_buf; i++) {
        e->buf[i].state = BUF_FREE;
        e->buf[i].unit = -1;
    }
    for (int b = 0; b < e->n_blocks; b++)
        unmap_block(&e->bm[b]);
    e->fail_rc = 0;
    e->fail_msg[0] = '\0';
    e->gen++;
    e->cancel = false;
    e->resetting = false;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void wk_engine_cancel(wk_engine *e)
{
    e->cancel = true;
    pthread_mutex_lock(&e->mu);
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void wk_engine_set_ps_pid(wk_engine *e, uint32_t pid) { e->ps_pid = pid; }

void wk_engine_describe(const wk_engine *e, int *n_resident, uint64_t *resident_bytes,
                        uint64_t *stream_bytes)
{
    *n_resident = e->n_resident;
    *resident_bytes = e->resident_bytes;
    *stream_bytes = e->stream_bytes;
}

/* ---- set-up ------------------------------------------------------------------------ */

static uint64_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    unsigned long long kb = 0;
    char line[256];
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return (uint64_t)kb * 1024;
}

static float *alloc_f32(uint64_t bytes)
{
    void *p = NULL;
    if (bytes == 0)
        bytes = 64;
    if (posix_memalign(&p, 4096, bytes) != 0)
        return NULL;
    return p;
}

int wk_engine_create(const wk_config *c, wk_engine **out, rt_err *err)
{
    *out = NULL;
    if (c->prefetch < 1 || c->B < 1 || c->T < 1)
        return err_set(err, -EINVAL, "prefetch %d, B %d, T %d: each must be at least 1",
                       c->prefetch, c->B, c->T);
    wk_engine *e = calloc(1, sizeof *e);
    if (e == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    e->c = *c;
    e->cfg = *c->model;
    e->c.model = &e->cfg;
    e->L = (int)e->cfg.n_layers;
    e->n_blocks = model_n_blocks(&e->cfg);
    e->n_units = e->n_blocks;
    e->head = e->n_blocks - 1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    int rc = 0;
    e->lf = calloc((size_t)e->n_blocks, sizeof *e->lf);
    e->bm = calloc((size_t)e->n_blocks, sizeof *e->bm);
    e->unit_bytes = calloc((size_t)e->n_units, sizeof *e->unit_bytes);
    e->unit_rbuf = calloc((size_t)e->n_units, sizeof *e->unit_rbuf);
    int n_req = 2 * e->L + 2;
    e->req_unit = calloc((size_t)n_req, sizeof *e->req_unit);
    e->req_buf = calloc((size_t)n_req, sizeof *e->req_buf);
    e->req_fetch_wait = calloc((size_t)n_req, sizeof *e->req_fetch_wait);
    e->job_cap = 2 * e->n_blocks + 4;
    e->jobs = calloc((size_t)e->job_cap, sizeof *e->jobs);
    if (!e->lf || !e->bm || !e->unit_bytes || !e->unit_rbuf || !e->req_unit || !e->req_buf ||
        !e->req_fetch_wait || !e->jobs) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    for (int b = 0; b < e->n_blocks; b++)
        if ((rc = model_block_layout(&e->cfg, b, DT_F32, 1, &e->lf[b], err)) < 0)
            goto fail;
    uint64_t max_unit = 0, max_block = 0, all_units = 0;
    for (int u = 0; u < e->n_units; u++) {
        e->unit_bytes[u] = e->lf[u].w_bytes;
        if (u == e->head && e->cfg.tie_embeddings)
            e->unit_bytes[u] += e->lf[0].w_bytes;
        if (e->unit_bytes[u] > max_unit)
            max_unit = e->unit_bytes[u];
        if (e->lf[u].w_bytes > max_block)
            max_block = e->lf[u].w_bytes;
        all_units += e->unit_bytes[u];
        e->unit_rbuf[u] = -1;
    }
    /* the request order: embedding, layers, head, layers backward */
    int j = 0;
    e->req_unit[j++] = 0;
    for (int l = 1; l <= e->L; l++)
        e->req_unit[j++] = l;
    e->req_unit[j++] = e->head;
    for (int l = e->L; l >= 1; l--)
        e->req_unit[j++] = l;
    /* resident units: the last layers first (their forward and backward are
     * closest), then the rest of the layers, the head and the embedding */
    int64_t budget = c->resident;
    if (budget == WK_RESIDENT_ALL)
        budget = (int64_t)all_units;
    else if (budget == WK_RESIDENT_AUTO)
        budget = (int64_t)(mem_available() / 4);
    bool *res = calloc((size_t)e->n_units, sizeof *res);
    if (res == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    int order_n = 0;
    int *order = e->req_buf; /* scratch: n_req >= n_units */
    for (int l = e->L; l >= 1; l--)
        order[order_n++] = l;
    order[order_n++] = e->head;
    order[order_n++] = 0;
    uint64_t used = 0;
    for (int k = 0; k < order_n; k++) {
        int u = order[k];
        if (budget > 0 && used + e->unit_bytes[u] <= (uint64_t)budget) {
            res[u] = true;
            used += e->unit_bytes[u];
            e->n_resident++;
        }
    }
    e->n_stream = e->n_resident == e->n_units ? 0 : c->prefetch;
    e->n_buf = e->n_stream + e->n_resident;
    e->buf = calloc((size_t)e->n_buf, sizeof *e->buf);
    if (e->buf == NULL) {
        free(res);
        rc = err_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    int bi = 0;
    for (int i = 0; i < e->n_stream; i++, bi++) {
        e->buf[bi] = (wbuf){.cap = max_unit, .unit = -1, .resident_unit = -1};
        e->stream_bytes += max_unit;
    }
    for (int u = 0; u < e->n_units; u++) {
        if (!res[u])
            continue;
        e->buf[bi] = (wbuf){.cap = e->unit_bytes[u], .unit = -1, .resident_unit = u};
        e->unit_rbuf[u] = bi++;
        e->resident_bytes += e->unit_bytes[u];
    }
    free(res);
    for (int i = 0; i < e->n_buf; i++)
        if ((e->buf[i].mem = alloc_f32(e->buf[i].cap)) == NULL) {
            rc = err_set(err, -ENOMEM, "cannot allocate %llu bytes of weight buffers",
                         (unsigned long long)e->buf[i].cap);
            goto fail;
        }
    e->gbuf_bytes = max_block;
    for (int i = 0; i < WK_N_GBUF; i++)
        if ((e->gb[i].mem = alloc_f32(max_block)) == NULL) {
            rc = err_set(err, -ENOMEM, "cannot allocate gradient buffers");
            goto fail;
        }
    size_t NH = (size_t)c->B * (size_t)c->T * (size_t)e->cfg.hidden;
    e->acts = alloc_f32((uint64_t)(e->L + 1) * NH * sizeof(float));
    e->dx = alloc_f32(NH * sizeof(float));
    if (e->acts == NULL || e->dx == NULL) {
        rc = err_set(err, -ENOMEM, "cannot allocate activations for %d x %d tokens", c->B, c->T);
        goto fail;
    }
    if (pthread_create(&e->h2d, NULL, h2d_main, e) != 0) {
        rc = err_set(err, -EAGAIN, "cannot start the copy-in thread");
        goto fail;
    }
    if (pthread_create(&e->d2h, NULL, d2h_main, e) != 0) {
        pthread_mutex_lock(&e->mu);
        e->quit = true;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->h2d, NULL);
        rc = err_set(err, -EAGAIN, "cannot start the copy-out thread");
        goto fail;
    }
    e->threads_started = true;
    *out = e;
    return 0;
fail:
    wk_engine_destroy(e);
    return rc;
}

void wk_engine_destroy(wk_engine *e)
{
    if (e == NULL)
        return;
    if (e->threads_started) {
        pthread_mutex_lock(&e->mu);
        e->quit = true;
        e->cancel = true;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->h2d, NULL);
        pthread_join(e->d2h, NULL);
    }
    if (e->bm != NULL)
        for (int b = 0; b < e->n_blocks; b++)
            unmap_block(&e->bm[b]);
    for (int i = 0; e->buf != NULL && i < e->n_buf; i++)
        free(e->buf[i].mem);
    for (int i = 0; i < WK_N_GBUF; i++)
        free(e->gb[i].mem);
    free(e->buf);
    free(e->lf);
    free(e->bm);
    free(e->unit_bytes);
    free(e->unit_rbuf);
    free(e->req_unit);
    free(e->req_buf);
    free(e->req_fetch_wait);
    free(e->jobs);
    free(e->acts);
    free(e->dx);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}
