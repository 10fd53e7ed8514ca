/*
 * bench_dataloader: batches/s of the data-loader service, end to end
 * (GetBatch over ZeroMQ, the producer threads, the shared-memory ring, the
 * worker reading the slot), against the pipeline's own data_batch called in
 * this process on the same config: how much the service's machinery costs,
 * and whether its read-ahead hides the batch production from the worker.
 *
 * Data: one raw .u32 source of --tokens random ids written to --dir (the
 * page cache holds it after the first pass, as it would in a run), shuffled
 * rows of seq_len + 1 tokens, --rows rows per batch. The service is the real
 * ramtrain-dataloader binary (path in RAMTRAIN_BIN_DIR at build time, or
 * --dataloader), with its ring in a private directory (RAMTRAIN_SHM_DIR).
 * The client asks for batches 0..N-1 in order and sums every token of the
 * slot, as a worker copying the batch out would touch it.
 *
 * Prints `service <x> batches/s ... in-process data_batch <y> batches/s
 * ratio <x/y>`; ratio >= 1 means the worker never waits for a batch longer
 * than the pipeline takes to make one (producers run ahead on other cores).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "services/common/bus.h"
#include "services/common/envelope.h"
#include "services/common/rng.h"
#include "services/dataloader/data.h"
#include "services/dataloader/ring.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench_dataloader: %s: %s\n", what, msg);
    exit(1);
}

/* The reply to e, or NULL when none came within ms. */
static Ramtrain__Envelope *call(bus_client *c, Ramtrain__Envelope *e, int ms)
{
    Ramtrain__Envelope *r;
    rt_err err = {{0}};
    if (bus_client_call(c, e, ms, &r, &err) < 0)
        die(env_body_name(e), err.msg);
    return r;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *bin = NULL;
    long tokens = 64l << 20, seq = 2048, rows = 8, batches = 400, threads = 2;
    static const struct option opts[] = {
        {"dir", 1, 0, 'd'}, {"dataloader", 1, 0, 'b'}, {"tokens", 1, 0, 'n'}, {"seq", 1, 0, 's'},
        {"rows", 1, 0, 'r'}, {"batches", 1, 0, 'k'}, {"threads", 1, 0, 't'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'd': dir = optarg; break;
        case 'b': bin = optarg; break;
        case 'n': tokens = atol(optarg); break;
        case 's': seq = atol(optarg); break;
        case 'r': rows = atol(optarg); break;
        case 'k': batches = atol(optarg); break;
        case 't': threads = atol(optarg); break;
        default:
            fprintf(stderr, "usage: bench_dataloader [--dir DIR] [--dataloader BIN] [--tokens N] "
                            "[--seq T] [--rows B] [--batches K] [--threads N]\n");
            return 2;
        }
    }
    if (tokens < (seq + 1) * rows * 2 || seq < 1 || rows < 1 || batches < 10 || threads < 1) {
        fprintf(stderr, "bench_dataloader: sizes out of range\n");
        return 2;
    }
    char bin_path[4096];
    if (bin == NULL) {
        snprintf(bin_path, sizeof bin_path, "%s/ramtrain-dataloader", RAMTRAIN_BIN_DIR);
        bin = bin_path;
    }
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/bench-dl-XXXXXX", dir ? dir : "/var/tmp");
    char *work = mkdtemp(tmpl);
    char shm[] = "/dev/shm/bench-dl-XXXXXX";
    if (work == NULL || mkdtemp(shm) == NULL)
        die("mkdtemp", strerror(errno));
    setenv("RAMTRAIN_SHM_DIR", shm, 1);

    /* the data */
    char path[4200], yaml[4200];
    snprintf(path, sizeof path, "%s/data.u32", work);
    FILE *f = fopen(path, "wb");
    rng_state r;
    rng_seed(&r, 1);
    for (long i = 0; i < tokens && f; i++) {
        uint32_t id = (uint32_t)(rng_next(&r) % 256);
        fwrite(&id, 4, 1, f);
    }
    if (f == NULL || fclose(f) != 0)
        die(path, strerror(errno));
    snprintf(yaml, sizeof yaml, "%s/data.yaml", work);
    f = fopen(yaml, "w");
    fprintf(f, "seq_len: %ld\nbatch_rows: %ld\nshuffle: true\nseed: 3\nsources:\n  - path: data.u32\n",
            seq, rows);
    fclose(f);

    /* in process */
    data_config *cfg;
    data_pipeline *p;
    rt_err err = {{0}};
    if (data_config_load(yaml, &cfg, &err) < 0 || data_open(cfg, NULL, NULL, &p, &err) < 0)
        die("data", err.msg);
    int32_t *toks = malloc((size_t)rows * (seq + 1) * 4);
    uint8_t *mask = malloc((size_t)rows * seq);
    uint32_t *doc = malloc((size_t)rows * (seq + 1) * 4);
    data_batch_buf b = {.tokens = toks, .loss_mask = mask, .doc = doc};
    double best_in = 1e30;
    uint64_t sum_in = 0;
    for (int pass = 0; pass < 2; pass++) {
        double t0 = now_s();
        sum_in = 0;
        for (long k = 0; k < batches; k++) {
            if (data_batch(p, (uint64_t)k, &b, &err) < 0)
                die("data_batch", err.msg);
            for (long i = 0; i < rows * (seq + 1); i++)
                sum_in += (uint32_t)toks[i];
        }
        double t = now_s() - t0;
        best_in = t < best_in ? t : best_in;
    }

    /* the service */
    char run_dir[4200];
    snprintf(run_dir, sizeof run_dir, "%s/run", work);
    char thr[32];
    snprintf(thr, sizeof thr, "%ld", threads);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        execl(bin, bin, "--run-id", "bench", "--run-dir", run_dir, "--data", yaml, "--slots", "8",
              "--threads", thr, (char *)NULL);
        _exit(127);
    }
    void *zc = zmq_ctx_new();
    bus_client bc = {.run_id = "bench"};
    char ep[4300];
    snprintf(ep, sizeof ep, "ipc://%s/sock/dataloader", run_dir);
    if (bus_client_connect(&bc, zc, ep, &err) < 0)
        die("connect", err.msg);
    uint64_t req = 1;
    Ramtrain__Envelope e, *rep = NULL;
    for (int i = 0; i < 600 && rep == NULL; i++) {
        Ramtrain__Hello h = RAMTRAIN__HELLO__INIT;
        env_init(&e, "bench", "bench", req++);
        h.role = "worker";
        e.body_case = RAMTRAIN__ENVELOPE__BODY_HELLO;
        e.hello = &h;
        rep = call(&bc, &e, 100);
    }
    if (rep == NULL)
        die(bin, "the data loader did not answer");
    env_free(rep);
    ring rg;
    if (ring_attach("bench", &rg, &err) < 0)
        die("ring", err.msg);
    double best_sv = 1e30;
    uint64_t sum_sv = 0;
    for (int pass = 0; pass < 2; pass++) {
        /* a second pass asks again from batch 0: the window moves back and
         * everything is produced anew */
        double t0 = now_s();
        sum_sv = 0;
        for (long k = 0; k < batches; k++) {
            Ramtrain__GetBatch g = RAMTRAIN__GET_BATCH__INIT;
            env_init(&e, "bench", "bench", req++);
            g.has_batch = 1, g.batch = (uint64_t)k;
            e.body_case = RAMTRAIN__ENVELOPE__BODY_GET_BATCH;
            e.get_batch = &g;
            rep = call(&bc, &e, 60000);
            if (rep == NULL || rep->body_case != RAMTRAIN__ENVELOPE__BODY_BATCH_READY)
                die("GetBatch", rep ? env_body_name(rep) : "no reply");
            const int32_t *st = ring_tokens(&rg, rep->batch_ready->ring_slot);
            for (long i = 0; i < rows * (seq + 1); i++)
                sum_sv += (uint32_t)st[i];
            env_free(rep);
        }
        double t = now_s() - t0;
        best_sv = t < best_sv ? t : best_sv;
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    ring_close(&rg);
    ring_unlink("bench", NULL);
    bus_client_close(&bc);
    zmq_ctx_term(zc);
    if (sum_sv != sum_in)
        fprintf(stderr, "bench_dataloader: the service's batches differ from data_batch's\n");
    double mb = (double)rows * (seq + 1) * 4 / 1e6;
    printf("batches of %ld x %ld tokens (%.2f MB), %ld batches, %ld producer threads\n", rows,
           seq + 1, mb, batches, threads);
    printf("service %.0f batches/s (%.0f MB/s)  in-process data_batch %.0f batches/s  ratio %.2f\n",
           batches / best_sv, batches / best_sv * mb, batches / best_in, best_in / best_sv);
    data_close(p);
    data_config_free(cfg);
    free(toks);
    free(mask);
    free(doc);
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", work, shm);
    return system(cmd) == 0 && sum_sv == sum_in ? 0 : 1;
}
