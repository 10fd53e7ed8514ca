/*
 * bench_io: sequential O_DIRECT write and read bandwidth of one file through
 * io_engine (io_uring, one registered io_alloc buffer holding a block per
 * request in flight), against fio on the same file with the same size, block
 * size, queue depth and io_uring engine, measured in the same run (DESIGN.md
 * §7). A third contender, engine-4k, is the same engine with buffers like
 * fio's (unregistered, 4 KiB pages, in a fresh process per pass), so the
 * report separates what the engine does from what io_alloc's huge pages do.
 *
 * Each round runs the three writes, then the three reads; the order rotates
 * every round so a drift in the device (caches, a neighbour on the VM) favours
 * no one, and the best and the median of each over the rounds are printed
 * (the VM's noise is ±10% and more). Before the first round the engine writes
 * the whole file once, untimed, after fallocate: every timed write then
 * overwrites allocated blocks (ext4 runs extending O_DIRECT writes one at a
 * time, which would measure the filesystem rather than the engine). O_DIRECT
 * bypasses the page cache, so reads hit the device without dropping caches
 * (which needs root).
 *
 * Output: one line per round, then `write: engine X MiB/s  fio Y MiB/s  ratio
 * X/Y` and the same for read, for engine-4k, and for the medians. Exit 2 when
 * fio is missing, 1 on any error. The file is removed at the end, also after
 * an error.
 */
#define _GNU_SOURCE /* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/fio_ref.h"
#include "storage/io_engine.h"

#define MIB (1024.0 * 1024.0)

struct bench {
    char path[4096];  /* the test file */
    char fio[4096];   /* the fio executable */
    uint64_t size;    /* bytes, a multiple of bs */
    size_t bs;        /* bytes per request */
    unsigned depth;   /* requests in flight */
    int rounds;
    int fd;           /* path, O_DIRECT */
    size_t buf_len;   /* bytes of buf: depth * bs */
    uint8_t *buf;     /* [depth][bs] bytes from io_alloc, registered with e */
    io_engine *e;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* "1G", "512M", "64k", "4096" -> bytes; 0 on a malformed value. */
static uint64_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return 0;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    if (*end == 'i' && shift)
        end++;
    if ((*end == 'b' || *end == 'B') && shift)
        end++;
    if (*end != '\0' || v > (UINT64_MAX >> shift))
        return 0;
    return (uint64_t)v << shift;
}

/* One sequential pass over the file through the engine: `depth` requests in
 * flight, each reaped batch refilled with one io_submit. Returns bytes/s, or
 * a negative value after printing the failure. */
static double engine_pass(struct bench *b, io_engine *e, uint8_t *buf, bool write)
{
    rt_err err = {{0}};
    uint64_t n = b->size / b->bs, next = 0, finished = 0;
    io_req *reqs = calloc(b->depth, sizeof *reqs);
    io_done *done = calloc(b->depth, sizeof *done);
    double rate = -1;
    if (reqs == NULL || done == NULL) {
        fprintf(stderr, "bench_io: no memory\n");
        goto cleanup;
    }
    double t0 = now_s();
    int k = 0;
    for (; k < (int)b->depth && next < n; k++, next++)
        reqs[k] = (io_req){.fd = b->fd, .write = write, .buf = buf + (size_t)k * b->bs, .len = b->bs,
                           .off = next * b->bs, .user = (void *)(uintptr_t)k};
    while (finished < n) {
        if (k > 0 && io_submit(e, reqs, k, &err) != 0) {
            fprintf(stderr, "bench_io: %s\n", err.msg);
            goto cleanup;
        }
        int got = io_reap(e, done, (int)b->depth, 1);
        k = 0;
        for (int i = 0; i < got; i++) {
            if (done[i].res != 0) {
                fprintf(stderr, "bench_io: %s %s: %s\n", write ? "write to" : "read from", b->path,
                        strerror(-done[i].res));
                goto cleanup;
            }
            finished++;
            if (next < n) {
                uintptr_t slot = (uintptr_t)done[i].user; /* its block of buf is free again */
                reqs[k++] = (io_req){.fd = b->fd, .write = write, .buf = buf + slot * b->bs, .len = b->bs,
                                     .off = next * b->bs, .user = (void *)slot};
                next++;
            }
        }
    }
    rate = (double)b->size / (now_s() - t0);

cleanup:
    free(reqs);
    free(done);
    return rate;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* engine_pass with buffers like fio's: in a child process, fresh anonymous
 * memory in 4 KiB pages, unregistered, through a new engine. A fresh process
 * per pass, as each fio run is: on this kind of device the bandwidth follows
 * how requests merge, which follows how physically contiguous the buffer's
 * pages happen to be, and a long-lived process would reuse one layout for
 * every pass while fio draws a new one each time. Returns bytes/s or < 0. */
static double engine4k_pass(struct bench *b, bool is_write)
{
    int p[2];
    if (pipe(p) != 0) {
        perror("bench_io: pipe");
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench_io: fork");
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        close(p[0]);
        double rate = -1;
        rt_err err = {{0}};
        uint8_t *buf = mmap(NULL, b->buf_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED) {
            fprintf(stderr, "bench_io: mmap %zu bytes: %s\n", b->buf_len, strerror(errno));
        } else {
            madvise(buf, b->buf_len, MADV_NOHUGEPAGE);
            for (size_t i = 0; i < b->buf_len; i++)
                buf[i] = (uint8_t)(i * 2654435761u >> 13);
            io_engine *e = NULL;
            if (io_engine_open(&(io_opts){.kind = IO_KIND_AUTO, .depth = b->depth}, &e, &err) != 0)
                fprintf(stderr, "bench_io: %s\n", err.msg);
            else
                rate = engine_pass(b, e, buf, is_write);
            io_engine_close(e);
        }
        _exit(write(p[1], &rate, sizeof rate) == (ssize_t)sizeof rate && rate > 0 ? 0 : 1);
    }
    close(p[1]);
    double rate = -1;
    if (read(p[0], &rate, sizeof rate) != (ssize_t)sizeof rate)
        rate = -1;
    close(p[0]);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rate = -1;
    return rate;
}

/* Bytes of [p, p + len) backed by transparent huge pages, from
 * /proc/self/smaps (0 when it cannot say). */
static uint64_t huge_bytes(const void *p, size_t len)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (f == NULL)
        return 0;
    uintptr_t lo = (uintptr_t)p, hi = lo + len;
    bool inside = false;
    uint64_t total = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned long a, z;
        unsigned long long kib;
        if (sscanf(line, "%lx-%lx ", &a, &z) == 2 && strchr(line, '-') < strchr(line, ' '))
            inside = a < hi && z > lo;
        else if (inside && sscanf(line, "AnonHugePages: %llu kB", &kib) == 1)
            total += kib * 1024;
    }
    fclose(f);
    return total;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_io [--dir DIR] [--size BYTES] [--bs BYTES] [--depth N] [--rounds N]\n"
            "  --dir     directory of the test file (default $TMPDIR, else /tmp); needs O_DIRECT\n"
            "  --size    file size (default 1G; suffixes K, M, G)\n"
            "  --bs      bytes per request (default 1M; a multiple of %u, below 1M only with a warning)\n"
            "  --depth   requests in flight (default %u, at most %u)\n"
            "  --rounds  rounds of engine, fio and engine-4k, best of each kept (default 6)\n"
            "Needs fio (Debian package 'fio') in PATH.\n",
            IO_ALIGN, IO_DEFAULT_DEPTH, IO_MAX_DEPTH);
}

int main(int argc, char **argv)
{
    struct bench b = {.size = 1ull << 30, .bs = 1u << 20, .depth = IO_DEFAULT_DEPTH, .rounds = 6, .fd = -1};
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || *dir == '\0')
        dir = "/tmp";
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},   {"size", required_argument, NULL, 's'},
        {"bs", required_argument, NULL, 'b'},    {"depth", required_argument, NULL, 'q'},
        {"rounds", required_argument, NULL, 'r'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 's': b.size = parse_size(optarg); break;
        case 'b': b.bs = (size_t)parse_size(optarg); break;
        case 'q': b.depth = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'r': b.rounds = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 1;
    }
    if (b.bs == 0 || b.bs % IO_ALIGN || b.bs > IO_MAX_CHUNK) {
        fprintf(stderr, "bench_io: --bs must be a multiple of %u up to 1G\n", IO_ALIGN);
        return 1;
    }
    if (b.size < b.bs) {
        fprintf(stderr, "bench_io: --size must be at least --bs (%zu bytes)\n", b.bs);
        return 1;
    }
    if (b.depth == 0 || b.depth > IO_MAX_DEPTH || b.rounds < 1) {
        fprintf(stderr, "bench_io: --depth must be 1..%u and --rounds at least 1\n", IO_MAX_DEPTH);
        return 1;
    }
    if (b.bs < (1u << 20))
        fprintf(stderr, "bench_io: warning: --bs %zu is below 1 MiB; DESIGN.md §7 asks for >= 1 MiB requests\n",
                b.bs);
    if (b.size % b.bs) {
        b.size -= b.size % b.bs;
        fprintf(stderr, "bench_io: warning: --size rounded down to %llu bytes, a multiple of --bs\n",
                (unsigned long long)b.size);
    }
    if (fio_find(b.fio, sizeof b.fio) != 0)
        return 2;

    int rc = 1;
    rt_err err = {{0}};
    bool direct = false;
    snprintf(b.path, sizeof b.path, "%s/bench_io.%d.dat", dir, (int)getpid());
    b.fd = io_open(b.path, O_RDWR | O_CREAT | O_TRUNC, true, &direct, &err);
    if (b.fd < 0) {
        fprintf(stderr, "bench_io: %s\n", err.msg);
        return 1;
    }
    if (!direct) {
        fprintf(stderr, "bench_io: %s: the filesystem refuses O_DIRECT; choose another --dir\n", b.path);
        goto cleanup;
    }
    int fa = posix_fallocate(b.fd, 0, (off_t)b.size);
    if (fa != 0) {
        fprintf(stderr, "bench_io: %s: fallocate %llu bytes: %s\n", b.path, (unsigned long long)b.size,
                strerror(fa));
        goto cleanup;
    }
    b.buf_len = (size_t)b.depth * b.bs;
    b.buf = io_alloc(b.buf_len);
    if (b.buf == NULL) {
        fprintf(stderr, "bench_io: no memory for %u x %zu bytes of buffers\n", b.depth, b.bs);
        goto cleanup;
    }
    for (size_t i = 0; i < b.buf_len; i++)
        b.buf[i] = (uint8_t)(i * 2654435761u >> 13);
    void *bufs[1] = {b.buf};
    if (io_engine_open(&(io_opts){.kind = IO_KIND_AUTO, .depth = b.depth, .n_bufs = 1, .bufs = bufs,
                                  .buf_lens = &b.buf_len},
                       &b.e, &err) != 0) {
        fprintf(stderr, "bench_io: %s\n", err.msg);
        goto cleanup;
    }
    printf("bench_io: %s, %.0f MiB, bs %zu KiB, depth %u, %d rounds\n", b.path, (double)b.size / MIB,
           b.bs / 1024, b.depth, b.rounds);
    printf("engine: %s; buffers from io_alloc, %.1f of %.1f MiB in huge pages\n", io_engine_describe(b.e),
           (double)huge_bytes(b.buf, b.buf_len) / MIB, (double)b.buf_len / MIB);
    printf("engine-4k: the same engine with buffers like fio's (unregistered, 4 KiB pages), in a fresh process "
           "per pass as fio\n");
    fflush(stdout);
    if (engine_pass(&b, b.e, b.buf, true) < 0) /* untimed: allocate every block once */
        goto cleanup;

    enum { ENGINE, FIO, ENGINE_4K, N_WHO };
    static const char *const who_name[N_WHO] = {"engine", "fio", "engine-4k"};
    static const char *const rw_name[2] = {"write", "read"};
    char version[64] = "fio";
    double best[2][N_WHO] = {{0}}; /* [write, read][who] bytes/s */
    double *all = calloc((size_t)b.rounds * 2 * N_WHO, sizeof *all); /* [who][write, read][round] bytes/s */
    if (all == NULL) {
        fprintf(stderr, "bench_io: no memory\n");
        goto cleanup;
    }
    for (int r = 0; r < b.rounds; r++) {
        double got[2][N_WHO];
        for (int w = 0; w < 2; w++) {
            bool write = w == 0;
            for (int j = 0; j < N_WHO; j++) {
                int who = (r + j) % N_WHO; /* each goes first, second and third in turn */
                if (who == FIO)
                    got[w][who] = fio_seq(b.fio, b.path, write, b.bs, b.depth, b.size, version,
                                          sizeof version);
                else if (who == ENGINE_4K)
                    got[w][who] = engine4k_pass(&b, write);
                else
                    got[w][who] = engine_pass(&b, b.e, b.buf, write);
                if (got[w][who] < 0) {
                    free(all);
                    goto cleanup;
                }
                all[((size_t)who * 2 + (size_t)w) * (size_t)b.rounds + (size_t)r] = got[w][who];
                if (got[w][who] > best[w][who])
                    best[w][who] = got[w][who];
            }
        }
        printf("round %d:", r + 1);
        for (int w = 0; w < 2; w++) {
            printf("  %s", rw_name[w]);
            for (int who = 0; who < N_WHO; who++)
                printf(" %s %.1f", who_name[who], got[w][who] / MIB);
        }
        printf(" MiB/s\n");
        fflush(stdout);
    }
    printf("reference: %s --ioengine=io_uring --direct=1 on the same file, bs and depth (unregistered buffers "
           "in 4 KiB pages)\n", version);
    io_stats st;
    io_engine_stats(b.e, &st);
    printf("engine I/Os: %llu (%llu fixed), %llu short, %llu -EAGAIN\n", (unsigned long long)st.ios,
           (unsigned long long)st.fixed, (unsigned long long)st.short_io, (unsigned long long)st.again);
    for (int w = 0; w < 2; w++)
        printf("%s: engine %.1f MiB/s  fio %.1f MiB/s  ratio %.2f\n", rw_name[w], best[w][ENGINE] / MIB,
               best[w][FIO] / MIB, best[w][ENGINE] / best[w][FIO]);
    for (int w = 0; w < 2; w++)
        printf("%s, fio's buffers: engine-4k %.1f MiB/s  fio %.1f MiB/s  ratio %.2f\n", rw_name[w],
               best[w][ENGINE_4K] / MIB, best[w][FIO] / MIB, best[w][ENGINE_4K] / best[w][FIO]);
    double med[2][N_WHO]; /* medians: less swayed than the best by one lucky fio run */
    for (int who = 0; who < N_WHO; who++)
        for (int w = 0; w < 2; w++)
            med[w][who] = median(all + ((size_t)who * 2 + (size_t)w) * (size_t)b.rounds, b.rounds);
    for (int w = 0; w < 2; w++)
        printf("median %s: engine %.1f MiB/s  fio %.1f MiB/s  ratio %.2f\n", rw_name[w], med[w][ENGINE] / MIB,
               med[w][FIO] / MIB, med[w][ENGINE] / med[w][FIO]);
    for (int w = 0; w < 2; w++)
        printf("median %s, fio's buffers: engine-4k %.1f MiB/s  fio %.1f MiB/s  ratio %.2f\n", rw_name[w],
               med[w][ENGINE_4K] / MIB, med[w][FIO] / MIB, med[w][ENGINE_4K] / med[w][FIO]);
    free(all);
    rc = 0;

cleanup:
    io_engine_close(b.e);
    free(b.buf);
    if (b.fd >= 0)
        close(b.fd);
    unlink(b.path);
    return rc;
}
