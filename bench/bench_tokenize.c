/*
 * bench_tokenize: MB/s per thread of tok_encode against Tokenizers.js and
 * js-tiktoken, on the same text and the same tokenizers, measured in the
 * same run.
 *
 * The text is the corpus of the tokenizer tests (tests/tokenizer_corpus.py:
 * about 1.4 MB, over 1 MiB of it real text found on the machine, the rest
 * generated Unicode, whitespace runs, digits, contractions, special tokens
 * and invalid UTF-8). The tokenizers are the tokenizer.json files that
 * tests/js/reftok.mjs builds from the npm packages: gpt2, llama3, cl100k,
 * o200k, and a SentencePiece-style byte-fallback BPE (sp: Prepend/Replace
 * normalizer; spm: Metaspace; spx: sp with NFKC and added tokens). Every side
 * encodes each line on its own with no special tokens added, -p times over
 * the whole corpus, and the best pass counts (the first warms caches and, in
 * node, the JIT).
 *
 * The references run in node (reftok.mjs bench, Tokenizers.js on every
 * file, js-tiktoken where it has the vocabulary: gpt2, cl100k, o200k),
 * timed inside node around the encode loop only: no start-up, no loading,
 * and the lines are decoded to JavaScript strings beforehand, which favours
 * them (tok_encode takes the bytes and does its own UTF-8 decoding).
 * Rejected: timing `node` or `ramtrain tokenize` as whole processes; start-up
 * and JSON loading would swamp a 1.4 MB run.
 *
 * Ours is tok_encode_with and one tok_scratch for all lines (its word cache
 * warm, as a data-loader thread runs it), and plain tok_encode (a scratch
 * made and freed per call). For each tokenizer:
 *   <name> ramtrain <x> MB/s/thread, Tokenizers.js <y> MB/s[, js-tiktoken <z> MB/s] ratio <x / max(y, z)>
 *   <name> ramtrain tok_encode (a scratch per call) <x'> MB/s/thread ratio <x' / max(y, z)>
 * and, with -j N (N > 1), one more for N threads sharing the tok, a scratch
 * each (each thread takes every N-th line):
 *   <name> ramtrain N threads <total> MB/s, <per thread> MB/s/thread ratio <per thread / 1 thread>
 * The id counts of ours and Tokenizers.js are compared as a sanity check
 * (test_tokenizer_js compares the ids themselves); a difference is printed.
 * (js-tiktoken's may differ by a few: it matches \s as JavaScript does.)
 *
 * Exit 0 whatever the ratios (a benchmark reports, a test judges); 77 when
 * node or the npm packages are missing (no reference, no figure); 1 when
 * something fails to run.
 *
 * Usage: bench_tokenize [-p passes] [-j threads] [-k: keep the temp dir] [NAME...]
 * RAMTRAIN_NODE and RAMTRAIN_PYTHON name the node and python to run.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "services/dataloader/tokenizer.h"

#ifndef RAMTRAIN_SOURCE_DIR
#define RAMTRAIN_SOURCE_DIR "."
#endif

#define BENCH_MAX_NAMES 8
#define BENCH_MAX_THREADS 256

static const char *const ALL_NAMES[] = {"gpt2", "llama3", "cl100k", "o200k", "sp", "spm", "spx"};

typedef struct ref_result {
    char name[32];
    char ref[32];
    double mbps;
    long long ids;
} ref_result;

typedef struct corpus {
    char *data;      /* the file, size bytes */
    size_t size;
    size_t *off;     /* [n] start of each line in data */
    size_t *len;     /* [n] bytes of each line, without its '\n' */
    size_t n;
    size_t text_bytes; /* sum of len[]: what MB/s counts */
} corpus;

typedef struct worker {
    const tok *t;
    const corpus *c;
    size_t first, step; /* lines first, first + step, ... */
    int scratch;        /* 1: tok_encode_with one scratch for all lines; 0: tok_encode */
    double seconds;
    long long ids;
    int rc;
    rt_err err;
} worker;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : dflt;
}

static int run_cmd(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "bench_tokenize: failed (status %d): %s\n", rc, cmd);
    return rc;
}

static int corpus_load(corpus *c, const char *path)
{
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "bench_tokenize: %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || (c->data = malloc((size_t)st.st_size + 1)) == NULL ||
        fread(c->data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        fprintf(stderr, "bench_tokenize: cannot read %s\n", path);
        fclose(f);
        return -1;
    }
    fclose(f);
    c->size = (size_t)st.st_size;
    size_t lines = 0;
    for (size_t i = 0; i < c->size; i++)
        lines += c->data[i] == '\n';
    lines += c->size > 0 && c->data[c->size - 1] != '\n';
    c->off = malloc((lines + 1) * sizeof *c->off);
    c->len = malloc((lines + 1) * sizeof *c->len);
    if (c->off == NULL || c->len == NULL)
        return -1;
    size_t start = 0;
    for (size_t i = 0; i <= c->size; i++) {
        if (i == c->size ? i > start : c->data[i] == '\n') {
            c->off[c->n] = start;
            c->len[c->n] = i - start;
            c->text_bytes += i - start;
            c->n++;
            start = i + 1;
        }
    }
    return 0;
}

static void *encode_lines(void *arg)
{
    worker *w = arg;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    tok_scratch *sc = NULL;
    w->ids = 0;
    double t0 = now();
    w->rc = w->scratch ? tok_scratch_init(w->t, &sc, &w->err) : 0;
    for (size_t i = w->first; i < w->c->n && w->rc == 0; i += w->step) {
        const char *text = w->c->data + w->c->off[i];
        w->rc = w->scratch ? tok_encode_with(w->t, sc, text, w->c->len[i], false, &ids, &n, &cap, &w->err)
                           : tok_encode(w->t, text, w->c->len[i], false, &ids, &n, &cap, &w->err);
        w->ids += (long long)n;
    }
    tok_scratch_free(sc);
    w->seconds = now() - t0;
    free(ids);
    return NULL;
}

/* Best of passes: seconds for the whole corpus with threads threads, and the
 * id count of a pass. -1 on failure. */
static double time_ours(const tok *t, const corpus *c, int threads, int scratch, int passes, long long *ids)
{
    static worker w[BENCH_MAX_THREADS];
    pthread_t th[BENCH_MAX_THREADS];
    double best = -1.0;
    for (int p = 0; p < passes; p++) {
        double t0 = now();
        for (int k = 0; k < threads; k++) {
            w[k] = (worker){.t = t, .c = c, .first = (size_t)k, .step = (size_t)threads, .scratch = scratch};
            if (threads == 1)
                encode_lines(&w[k]);
            else if (pthread_create(&th[k], NULL, encode_lines, &w[k]) != 0) {
                fprintf(stderr, "bench_tokenize: pthread_create failed\n");
                return -1.0;
            }
        }
        long long total = 0;
        for (int k = 0; k < threads; k++) {
            if (threads > 1)
                pthread_join(th[k], NULL);
            if (w[k].rc < 0) {
                fprintf(stderr, "bench_tokenize: tok_encode: %s\n", w[k].err.msg);
                return -1.0;
            }
            total += w[k].ids;
        }
        double dt = now() - t0;
        if (best < 0 || dt < best)
            best = dt;
        *ids = total;
    }
    return best;
}

/* Reads reftok.mjs bench's JSON lines: {"name":"gpt2","ref":"tokenizers.js",...}. */
static int json_str(const char *line, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(line, pat);
    if (p == NULL)
        return -1;
    p += strlen(pat);
    size_t i = 0;
    while (p[i] != '\0' && p[i] != '"' && i + 1 < cap) {
        out[i] = p[i];
        i++;
    }
    out[i] = '\0';
    return 0;
}

static int json_num(const char *line, const char *key, double *out)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    return p != NULL && sscanf(p + strlen(pat), "%lf", out) == 1 ? 0 : -1;
}

static int run_references(const char *node, const char *dir, const char *corpus_path, int passes,
                          const char *const *names, int n_names, ref_result *res, int *n_res)
{
    char cmd[8192];
    int len = snprintf(cmd, sizeof cmd, "%s %s/tests/js/reftok.mjs bench %s %s %d", node,
                       RAMTRAIN_SOURCE_DIR, dir, corpus_path, passes);
    for (int i = 0; i < n_names && len < (int)sizeof cmd; i++)
        len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %s", names[i]);
    FILE *p = popen(cmd, "r");
    char line[1024];
    *n_res = 0;
    while (p != NULL && fgets(line, sizeof line, p) != NULL) {
        ref_result r;
        memset(&r, 0, sizeof r);
        double ids = 0;
        if (*n_res < 2 * BENCH_MAX_NAMES && json_str(line, "name", r.name, sizeof r.name) == 0 &&
            json_str(line, "ref", r.ref, sizeof r.ref) == 0 && json_num(line, "mb_per_s", &r.mbps) == 0 &&
            json_num(line, "ids", &ids) == 0) {
            r.ids = (long long)ids;
            res[(*n_res)++] = r;
        }
    }
    int prc = p != NULL ? pclose(p) : -1;
    if (prc != 0) {
        fprintf(stderr, "bench_tokenize: the references failed (%s)\n", cmd);
        return -1;
    }
    return 0;
}

static void cleanup(const char *dir, const char *const *names, int n_names)
{
    char path[4096];
    for (int i = 0; i < n_names; i++) {
        snprintf(path, sizeof path, "%s/%s/tokenizer.json", dir, names[i]);
        unlink(path);
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rmdir(path);
    }
    snprintf(path, sizeof path, "%s/corpus.txt", dir);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    int passes = 3, threads = 1, keep = 0, c;
    while ((c = getopt(argc, argv, "p:j:k")) != -1) {
        switch (c) {
        case 'p': passes = atoi(optarg); break;
        case 'j': threads = atoi(optarg); break;
        case 'k': keep = 1; break;
        default:
            fprintf(stderr, "usage: bench_tokenize [-p passes] [-j threads] [-k: keep the temp dir] "
                            "[gpt2|llama3|cl100k|o200k|sp|spm|spx ...]\n");
            return 2;
        }
    }
    if (passes < 1 || threads < 1 || threads > BENCH_MAX_THREADS) {
        fprintf(stderr, "bench_tokenize: passes must be >= 1 and threads in 1..%d\n", BENCH_MAX_THREADS);
        return 2;
    }
    const char *names[BENCH_MAX_NAMES];
    int n_names = 0;
    for (int i = optind; i < argc && n_names < BENCH_MAX_NAMES; i++) {
        int known = 0;
        for (size_t k = 0; k < sizeof ALL_NAMES / sizeof ALL_NAMES[0]; k++)
            known |= strcmp(argv[i], ALL_NAMES[k]) == 0;
        if (!known) {
            fprintf(stderr, "bench_tokenize: unknown tokenizer %s (gpt2 llama3 cl100k o200k sp spm spx)\n", argv[i]);
            return 2;
        }
        names[n_names++] = argv[i];
    }
    if (n_names == 0)
        for (size_t k = 0; k < sizeof ALL_NAMES / sizeof ALL_NAMES[0]; k++)
            names[n_names++] = ALL_NAMES[k];

    const char *node = env_or("RAMTRAIN_NODE", "node");
    const char *py = env_or("RAMTRAIN_PYTHON", "/usr/bin/python3");
    char cmd[8192], path[4096];
    snprintf(cmd, sizeof cmd, "%s --version >/dev/null 2>&1", node);
    snprintf(path, sizeof path, "%s/tests/js/node_modules/@huggingface/tokenizers", RAMTRAIN_SOURCE_DIR);
    if (system(cmd) != 0 || access(path, R_OK) != 0) {
        printf("bench_tokenize: SKIP: needs node and the npm packages of tests/js "
               "(deploy/install-deps.sh)\n");
        return 77;
    }

    char dir[] = "/tmp/bench_tokenize.XXXXXX";
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "bench_tokenize: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    char corpus_path[4200];
    snprintf(corpus_path, sizeof corpus_path, "%s/corpus.txt", dir);
    snprintf(cmd, sizeof cmd, "%s %s/tests/tokenizer_corpus.py --out %s >&2", py, RAMTRAIN_SOURCE_DIR,
             corpus_path);
    int rc = 1;
    corpus cp = {0};
    if (run_cmd(cmd) != 0)
        goto out;
    snprintf(cmd, sizeof cmd, "%s %s/tests/js/reftok.mjs build %s %s >/dev/null", node,
             RAMTRAIN_SOURCE_DIR, dir, corpus_path);
    if (run_cmd(cmd) != 0 || corpus_load(&cp, corpus_path) != 0)
        goto out;

    ref_result refs[2 * BENCH_MAX_NAMES];
    int n_refs = 0;
    if (run_references(node, dir, corpus_path, passes, names, n_names, refs, &n_refs) != 0)
        goto out;

    printf("bench_tokenize: %zu bytes in %zu lines, best of %d passes, no special tokens added\n",
           cp.text_bytes, cp.n, passes);
    for (int i = 0; i < n_names; i++) {
        snprintf(path, sizeof path, "%s/%s/tokenizer.json", dir, names[i]);
        rt_err err = {{0}};
        tok *t = NULL;
        if (tok_open(path, &t, &err) < 0) {
            fprintf(stderr, "bench_tokenize: %s\n", err.msg);
            goto out;
        }
        long long ids = 0, ids1 = 0;
        double s = time_ours(t, &cp, 1, 1, passes, &ids), s1 = time_ours(t, &cp, 1, 0, passes, &ids1);
        if (s <= 0 || s1 <= 0) {
            tok_close(t);
            goto out;
        }
        double ours = (double)cp.text_bytes / 1e6 / s, best_ref = 0.0;
        printf("%s ramtrain %.2f MB/s/thread", names[i], ours);
        for (int k = 0; k < n_refs; k++) {
            if (strcmp(refs[k].name, names[i]) != 0)
                continue;
            printf(", %s %.2f MB/s", strcmp(refs[k].ref, "tokenizers.js") == 0 ? "Tokenizers.js" : refs[k].ref,
                   refs[k].mbps);
            if (refs[k].mbps > best_ref)
                best_ref = refs[k].mbps;
        }
        printf(" ratio %.2f\n", best_ref > 0 ? ours / best_ref : 0.0);
        double ours1 = (double)cp.text_bytes / 1e6 / s1;
        printf("%s ramtrain tok_encode (a scratch per call) %.2f MB/s/thread ratio %.2f\n", names[i], ours1,
               best_ref > 0 ? ours1 / best_ref : 0.0);
        for (int k = 0; k < n_refs; k++)
            if (strcmp(refs[k].name, names[i]) == 0 && strcmp(refs[k].ref, "tokenizers.js") == 0 &&
                refs[k].ids != ids)
                printf("    (%s: ids differ: ramtrain %lld, %s %lld; see test_tokenizer_js)\n", names[i], ids,
                       refs[k].ref, refs[k].ids);
        if (threads > 1) {
            long long ids_n = 0;
            double sn = time_ours(t, &cp, threads, 1, passes, &ids_n);
            if (sn > 0) {
                double total = (double)cp.text_bytes / 1e6 / sn;
                printf("%s ramtrain %d threads %.2f MB/s, %.2f MB/s/thread ratio %.2f\n", names[i], threads,
                       total, total / threads, total / threads / ours);
            }
        }
        fflush(stdout);
        tok_close(t);
    }
    rc = 0;
out:
    free(cp.data);
    free(cp.off);
    free(cp.len);
    if (keep || rc != 0)
        fprintf(stderr, "bench_tokenize: temp directory kept: %s\n", dir);
    else
        cleanup(dir, ALL_NAMES, (int)(sizeof ALL_NAMES / sizeof ALL_NAMES[0]));
    return rc;
}
