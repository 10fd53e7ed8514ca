/*
 * ramtrain data prepare: tokenizes a corpus once into llm.c shards, without
 * exact and near-duplicate documents, and says how many of each it removed.
 *
 * It opens the data config's pipeline (data_open: index files are built or
 * reused as for training), walks every document in corpus order
 * (data_docs_foreach) and decides each one with dedup.c: the first
 * occurrence is kept. Documents are gathered in rounds of about 8 Mi tokens;
 * the fingerprints of a round (128-bit hash, MinHash signature) are computed
 * on --threads threads over contiguous ranges, then the round is decided and
 * written in order on the main thread, so the output is the same bytes for
 * any thread count.
 *
 * Output, in DIR:
 *   shard-00000.bin ...  llm.c shards: 256 x int32 header (magic 20240520,
 *                        version 1, count, uint16 ids when every id fits;
 *                        magic 20240801, version 7, uint32 ids otherwise),
 *                        each kept document followed by the EOS id; a shard
 *                        ends at a document boundary and holds at most
 *                        --shard-tokens tokens unless one document alone is
 *                        longer (the data loader starts a document at every
 *                        file, so documents are never split)
 *   prepare.json         settings, counts (in total and per source) and each
 *                        shard's tokens and documents
 * written into DIR.tmp-XXXXXX beside DIR, every file fsynced, then renamed to
 * DIR: a crash leaves either no DIR or a complete one. DIR must not exist or
 * be empty. llm.c shards have no loss mask: tokens the data config does not
 * train (prompts of chat data) become trained tokens, and a warning says how
 * many.
 *
 * Exit codes: 0 done; 2 bad input (options, the data config, its data, a
 * non-empty DIR); 1 anything else (I/O, memory).
 *
 * Rejected: splitting documents across shards as llm.c's scripts do (the
 * data loader would count the pieces as two documents); a second pass that
 * writes after deciding everything (the decision for a document depends only
 * on earlier ones, so one pass is enough).
 */
#define _GNU_SOURCE /* mkdtemp */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orchestrator/cli.h"
#include "services/common/log.h"
#include "services/dataloader/data.h"
#include "services/dataloader/dedup.h"
#include "services/dataloader/text_util.h"
#include "services/dataloader/tokenizer.h"

#define DP_ROUND_TOKENS (8u << 20) /* document tokens per fingerprinting round: 32 MiB of ids */
#define DP_ROUND_DOCS 16384u       /* documents per round at most: bounds the signature buffer */
#define DP_WBUF (1u << 20)         /* bytes: shard write buffer */
#define DP_HEADER 256              /* int32 words of the llm.c header */
#define DP_MAGIC16 20240520        /* llm.c dev/data/data_common.py: uint16 ids */
#define DP_VERSION16 1
#define DP_MAGIC32 20240801        /* uint32 ids */
#define DP_VERSION32 7
#define DP_SEED 0x72616d747261696eull /* "ramtrain": the MinHash family; recorded in prepare.json */

static const char *const DP_CMD = "data prepare";

/* One document of the current round; its ids are in the round's arena. */
typedef struct dp_doc {
    size_t off, n;       /* ids: arena[off .. off + n) */
    uint64_t untrained;  /* tokens the data config does not train */
    uint32_t source;
    uint64_t hash[2];    /* dedup_fingerprint */
} dp_doc;

typedef struct dp_shard {
    uint64_t tokens, docs;
} dp_shard;

typedef struct dp_src_counts {
    uint64_t read, exact, near, kept;
} dp_src_counts;

typedef struct dp_ctx {
    dedup *dd;
    size_t k;                /* signature words per document */
    int threads;
    int32_t eos;
    int width;               /* bytes per id in the shards: 2 or 4 */
    uint64_t shard_limit;    /* tokens per shard */
    const char *dir;         /* the temporary output directory */

    int32_t *arena;          /* [arena_cap] ids of the round's documents */
    size_t arena_n, arena_cap;
    dp_doc *docs;            /* [DP_ROUND_DOCS] */
    size_t n_docs;
    uint32_t *sigs;          /* [DP_ROUND_DOCS][k] */

    int fd;                  /* the shard being written, or -1 */
    uint8_t *wbuf;           /* [DP_WBUF] */
    size_t wn;
    dp_shard *shards;        /* [shards_cap], n_shards; the last is open when fd >= 0 */
    size_t n_shards, shards_cap;

    dp_src_counts *src;      /* [n_sources] */
    uint64_t read, exact, near, kept, tokens_read, tokens_written, untrained;
} dp_ctx;

/* ---- shards ----------------------------------------------------------------- */

static void dp_shard_name(char *buf, size_t len, const char *dir, size_t i)
{
    snprintf(buf, len, "%s/shard-%05zu.bin", dir, i);
}

static int dp_shard_close(dp_ctx *c, rt_err *err)
{
    if (c->fd < 0)
        return 0;
    char path[PATH_MAX];
    dp_shard_name(path, sizeof path, c->dir, c->n_shards - 1);
    dp_shard *sh = &c->shards[c->n_shards - 1];
    int32_t hdr[DP_HEADER] = {0};
    hdr[0] = c->width == 2 ? DP_MAGIC16 : DP_MAGIC32;
    hdr[1] = c->width == 2 ? DP_VERSION16 : DP_VERSION32;
    hdr[2] = (int32_t)sh->tokens;
    int rc = tu_write_all(c->fd, c->wbuf, c->wn);
    c->wn = 0;
    if (rc == 0) {
        ssize_t w = pwrite(c->fd, hdr, sizeof hdr, 0);
        rc = w < 0 ? -errno : w != (ssize_t)sizeof hdr ? -EIO : 0;
    }
    if (rc == 0 && fsync(c->fd) != 0)
        rc = -errno;
    if (close(c->fd) != 0 && rc == 0)
        rc = -errno;
    c->fd = -1;
    if (rc < 0)
        return err_set(err, rc, "%s: cannot write: %s", path, strerror(-rc));
    log_info("data prepare: wrote shard-%05zu.bin: %llu documents, %llu tokens", c->n_shards - 1,
             (unsigned long long)sh->docs, (unsigned long long)sh->tokens);
    return 0;
}

static int dp_shard_open(dp_ctx *c, rt_err *err)
{
    if (c->n_shards == c->shards_cap) {
        size_t cap = c->shards_cap ? c->shards_cap * 2 : 16;
        dp_shard *s = realloc(c->shards, cap * sizeof *s);
        if (s == NULL)
            return err_set(err, -ENOMEM, "out of memory");
        c->shards = s;
        c->shards_cap = cap;
    }
    char path[PATH_MAX];
    dp_shard_name(path, sizeof path, c->dir, c->n_shards);
    c->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (c->fd < 0)
        return err_set(err, -errno, "%s: cannot create: %s", path, strerror(errno));
    c->shards[c->n_shards++] = (dp_shard){0};
    static const int32_t zero[DP_HEADER];
    int rc = tu_write_all(c->fd, zero, sizeof zero);
    if (rc < 0)
        return err_set(err, rc, "%s: cannot write: %s", path, strerror(-rc));
    return 0;
}

static int dp_put_id(dp_ctx *c, int32_t id, rt_err *err)
{
    if (c->wn + 4 > DP_WBUF) {
        int rc = tu_write_all(c->fd, c->wbuf, c->wn);
        c->wn = 0;
        if (rc < 0)
            return err_set(err, rc, "%s/shard-%05zu.bin: cannot write: %s", c->dir, c->n_shards - 1,
                           strerror(-rc));
    }
    if (c->width == 2) {
        uint16_t v = (uint16_t)id;
        memcpy(c->wbuf + c->wn, &v, 2);
    } else {
        uint32_t v = (uint32_t)id;
        memcpy(c->wbuf + c->wn, &v, 4);
    }
    c->wn += (size_t)c->width;
    return 0;
}

/* Appends ids[n] and EOS to the current shard, first starting a new one when
 * they would take it past the limit. */
static int dp_shard_put(dp_ctx *c, const int32_t *ids, size_t n, rt_err *err)
{
    uint64_t need = (uint64_t)n + 1;
    if (need > INT32_MAX)
        return err_set(err, -EFBIG, "a document of %llu tokens does not fit an llm.c shard (at most 2^31 - 1)",
                       (unsigned long long)need);
    int rc;
    if (c->fd >= 0 && c->shards[c->n_shards - 1].tokens > 0 &&
        c->shards[c->n_shards - 1].tokens + need > c->shard_limit && (rc = dp_shard_close(c, err)) < 0)
        return rc;
    if (c->fd < 0 && (rc = dp_shard_open(c, err)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        if ((rc = dp_put_id(c, ids[i], err)) < 0)
            return rc;
    if ((rc = dp_put_id(c, c->eos, err)) < 0)
        return rc;
    dp_shard *sh = &c->shards[c->n_shards - 1];
    sh->tokens += need;
    sh->docs++;
    c->tokens_written += need;
    return 0;
}

/* ---- rounds ------------------------------------------------------------------ */

typedef struct dp_job {
    dp_ctx *c;
    size_t begin, end; /* documents of the round */
} dp_job;

static void *dp_fingerprint_run(void *arg)
{
    dp_job *j = arg;
    dp_ctx *c = j->c;
    for (size_t i = j->begin; i < j->end; i++) {
        dp_doc *d = &c->docs[i];
        dedup_fingerprint(c->dd, c->arena + d->off, d->n, d->hash, c->sigs + i * c->k);
    }
    return NULL;
}

/* Fingerprints the round's documents on c->threads threads (contiguous
 * ranges of about equal tokens), then decides and writes them in order. */
static int dp_round(dp_ctx *c, rt_err *err)
{
    int rc = 0;
    if (c->n_docs == 0)
        return 0;
    int jobs = c->n_docs < (size_t)c->threads ? (int)c->n_docs : c->threads;
    dp_job job[256];
    pthread_t th[256];
    if (jobs > 256)
        jobs = 256;
    size_t d = 0;
    uint64_t acc = 0, total = 0;
    for (size_t i = 0; i < c->n_docs; i++)
        total += c->docs[i].n + 1;
    for (int j = 0; j < jobs; j++) {
        uint64_t target = total * (uint64_t)(j + 1) / (uint64_t)jobs;
        size_t begin = d;
        while (d < c->n_docs && (j == jobs - 1 || acc < target || d == begin))
            acc += c->docs[d++].n + 1;
        job[j] = (dp_job){.c = c, .begin = begin, .end = d};
    }
    bool threaded[256] = {false};
    for (int j = 1; j < jobs; j++)
        threaded[j] = pthread_create(&th[j], NULL, dp_fingerprint_run, &job[j]) == 0;
    dp_fingerprint_run(&job[0]);
    for (int j = 1; j < jobs; j++) {
        if (threaded[j])
            pthread_join(th[j], NULL);
        else
            dp_fingerprint_run(&job[j]); /* no thread could start: this one does the range */
    }

    for (size_t i = 0; i < c->n_docs && rc == 0; i++) {
        dp_doc *doc = &c->docs[i];
        int v = dedup_decide(c->dd, doc->hash, c->sigs + i * c->k, NULL, err);
        if (v < 0)
            return v;
        dp_src_counts *sc = &c->src[doc->source];
        if (v == DEDUP_EXACT_DUP) {
            c->exact++;
            sc->exact++;
        } else if (v == DEDUP_NEAR_DUP) {
            c->near++;
            sc->near++;
        } else {
            c->kept++;
            sc->kept++;
            c->untrained += doc->untrained;
            rc = dp_shard_put(c, c->arena + doc->off, doc->n, err);
        }
    }
    c->n_docs = 0;
    c->arena_n = 0;
    return rc;
}

/* data_docs_foreach's callback: adds the document to the round. */
static int dp_on_doc(const data_doc_view *v, void *user, rt_err *err)
{
    dp_ctx *c = user;
    int rc;
    if ((c->n_docs == DP_ROUND_DOCS || (c->arena_n > 0 && c->arena_n + v->n > DP_ROUND_TOKENS)) &&
        (rc = dp_round(c, err)) < 0)
        return rc;
    if (c->arena_n + v->n > c->arena_cap) {
        size_t cap = c->arena_cap ? c->arena_cap : 1u << 16;
        while (cap < c->arena_n + v->n)
            cap *= 2;
        int32_t *a = realloc(c->arena, cap * sizeof *a);
        if (a == NULL)
            return err_set(err, -ENOMEM, "out of memory for a document of %zu tokens", v->n);
        c->arena = a;
        c->arena_cap = cap;
    }
    if (v->n > 0)
        memcpy(c->arena + c->arena_n, v->ids, v->n * sizeof *v->ids);
    uint64_t untrained = 0;
    for (size_t i = 0; i < v->n; i++)
        untrained += v->trained[i] == 0;
    c->docs[c->n_docs++] = (dp_doc){.off = c->arena_n, .n = v->n, .untrained = untrained, .source = v->source};
    c->arena_n += v->n;
    c->read++;
    c->src[v->source].read++;
    c->tokens_read += v->n;
    return 0;
}

/* ---- output directory ---------------------------------------------------------- */

/* Removes the files of dir (no subdirectories) and dir itself. */
static void dp_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char path[PATH_MAX];
            if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int dp_fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* 0 when out does not exist or is an empty directory; CLI_USAGE otherwise. */
static int dp_check_out(const char *out)
{
    struct stat st;
    if (stat(out, &st) != 0)
        return 0;
    if (!S_ISDIR(st.st_mode)) {
        cli_error(DP_CMD, "--out %s exists and is not a directory", out);
        return CLI_USAGE;
    }
    DIR *d = opendir(out);
    if (d == NULL)
        return 0; /* the rename will say what is wrong */
    struct dirent *e;
    bool empty = true;
    while ((e = readdir(d)) != NULL && empty)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    if (!empty) {
        cli_error(DP_CMD, "--out %s exists and is not empty: remove it or choose another directory", out);
        return CLI_USAGE;
    }
    return 0;
}

/* Creates the temporary directory tmp[len] beside out (and out's missing
 * parents), with the mode a new directory gets. CLI_OK, or the exit code
 * after printing why not. */
static int dp_make_tmp(const char *out, char *tmp, size_t len)
{
    size_t ol = strlen(out);
    while (ol > 1 && out[ol - 1] == '/')
        ol--;
    if (snprintf(tmp, len, "%.*s.tmp-XXXXXX", (int)ol, out) >= (int)len) {
        cli_error(DP_CMD, "--out %s: name too long", out);
        tmp[0] = '\0';
        return CLI_USAGE;
    }
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", tmp);
    char *slash = strrchr(parent, '/');
    if (slash != NULL && slash != parent) {
        *slash = '\0';
        int rc = cli_mkdir_p(parent);
        if (rc < 0) {
            cli_error(DP_CMD, "--out %s: cannot create %s: %s", out, parent, strerror(-rc));
            tmp[0] = '\0';
            return CLI_FAIL;
        }
    }
    if (mkdtemp(tmp) == NULL) {
        cli_error(DP_CMD, "--out %s: cannot create a directory beside it: %s", out, strerror(errno));
        tmp[0] = '\0';
        return CLI_FAIL;
    }
    mode_t mask = umask(0); /* mkdtemp made it 0700; DIR gets the usual mode */
    umask(mask);
    chmod(tmp, 0777 & ~mask);
    return CLI_OK;
}

/* Fsyncs the directory that holds out (best effort: the data is already safe). */
static void dp_fsync_parent(const char *out)
{
    char parent[PATH_MAX];
    size_t ol = strlen(out);
    while (ol > 1 && out[ol - 1] == '/')
        ol--;
    snprintf(parent, sizeof parent, "%.*s", (int)ol, out);
    char *slash = strrchr(parent, '/');
    if (slash == NULL)
        snprintf(parent, sizeof parent, ".");
    else if (slash == parent)
        parent[1] = '\0';
    else
        *slash = '\0';
    dp_fsync_path(parent, O_RDONLY | O_DIRECTORY);
}

/* ---- prepare.json --------------------------------------------------------------- */

static json_t *dp_counts_json(uint64_t read, uint64_t exact, uint64_t near, uint64_t kept)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "documents_read", (json_int_t)read, "exact_duplicates",
                     (json_int_t)exact, "near_duplicates", (json_int_t)near, "documents_kept", (json_int_t)kept);
}

static int dp_write_json(const dp_ctx *c, const data_config *cfg, const char *data_path, const tok *t,
                         rt_err *err)
{
    const dedup_opts *o = dedup_get_opts(c->dd);
    json_t *root = json_object(), *dd = json_object(), *counts = NULL, *shards = json_array(),
           *srcs = json_array();
    int rc = 0;
    char *text = NULL;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/prepare.json", c->dir);
    if (root == NULL || dd == NULL || shards == NULL || srcs == NULL)
        goto nomem;
    json_object_set_new(dd, "mode", json_string(dedup_mode_name(o->mode)));
    if (o->mode == DEDUP_MODE_NEAR) {
        int bands, rows;
        dedup_lsh_shape(c->dd, &bands, &rows);
        json_object_set_new(dd, "threshold", json_real(o->threshold));
        json_object_set_new(dd, "num_perm", json_integer(o->num_perm));
        json_object_set_new(dd, "ngram", json_integer(o->ngram));
        json_object_set_new(dd, "bands", json_integer(bands));
        json_object_set_new(dd, "rows", json_integer(rows));
        char seed[32];
        snprintf(seed, sizeof seed, "0x%016llx", (unsigned long long)o->seed);
        json_object_set_new(dd, "seed", json_string(seed));
    }
    counts = dp_counts_json(c->read, c->exact, c->near, c->kept);
    if (counts == NULL)
        goto nomem;
    json_object_set_new(counts, "tokens_read", json_integer((json_int_t)c->tokens_read));
    json_object_set_new(counts, "tokens_written", json_integer((json_int_t)c->tokens_written));
    json_object_set_new(counts, "untrained_tokens_written", json_integer((json_int_t)c->untrained));
    json_object_set_new(counts, "shards", json_integer((json_int_t)c->n_shards));
    for (size_t i = 0; i < c->n_shards; i++) {
        char name[32];
        snprintf(name, sizeof name, "shard-%05zu.bin", i);
        json_array_append_new(shards, json_pack("{s:s, s:I, s:I}", "file", name, "tokens",
                                                (json_int_t)c->shards[i].tokens, "documents",
                                                (json_int_t)c->shards[i].docs));
    }
    for (int s = 0; s < cfg->n_sources; s++) {
        const dp_src_counts *sc = &c->src[s];
        json_t *j = dp_counts_json(sc->read, sc->exact, sc->near, sc->kept);
        if (j == NULL)
            goto nomem;
        json_object_set_new(j, "path", json_string(cfg->sources[s].path));
        json_array_append_new(srcs, j);
    }
    json_object_set_new(root, "version", json_integer(1));
    json_object_set_new(root, "data", json_string(data_path));
    json_object_set_new(root, "tokenizer", json_string(tok_describe(t)));
    json_object_set_new(root, "eos_id", json_integer(c->eos));
    json_object_set_new(root, "id_bytes", json_integer(c->width));
    json_object_set_new(root, "shard_tokens", json_integer((json_int_t)c->shard_limit));
    json_object_set_new(root, "dedup", dd);
    dd = NULL;
    json_object_set_new(root, "counts", counts);
    counts = NULL;
    json_object_set_new(root, "sources", srcs);
    srcs = NULL;
    json_object_set_new(root, "shards", shards);
    shards = NULL;
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    if (text == NULL)
        goto nomem;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = err_set(err, -errno, "%s: cannot create: %s", path, strerror(errno));
        goto cleanup;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps ends without one; its NUL becomes the newline */
    rc = tu_write_all(fd, text, len + 1);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc < 0)
        err_set(err, rc, "%s: cannot write: %s", path, strerror(-rc));
    goto cleanup;
nomem:
    rc = err_set(err, -ENOMEM, "out of memory");
cleanup:
    free(text);
    json_decref(root);
    json_decref(dd);
    json_decref(counts);
    json_decref(shards);
    json_decref(srcs);
    return rc;
}

/* ---- the command ------------------------------------------------------------------ */

static void dp_usage(FILE *f)
{
    fprintf(f, "usage: ramtrain data prepare --data DATA.yaml --out DIR [--dedup none|exact|near]\n"
               "           [--threshold 0.8] [--num-perm 128] [--ngram 5] [--shard-tokens 100000000]\n"
               "           [--threads N]\n"
               "  tokenizes every document of DATA.yaml's sources once into llm.c shards DIR/shard-*.bin\n"
               "  (+ DIR/prepare.json), keeping the first of exact duplicates (--dedup exact) and also of\n"
               "  near duplicates (--dedup near, the default: MinHash over --ngram-token shingles with\n"
               "  --num-perm permutations and LSH; estimated Jaccard >= --threshold is a duplicate)\n");
}

/* Exit code for a data module error: bad input unless the system failed. */
static int dp_code(int rc)
{
    return rc == -ENOMEM || rc == -EIO || rc == -ENOSPC || rc == -EDQUOT || rc == -EAGAIN || rc == -EROFS ||
                   rc == -EACCES
               ? CLI_FAIL
               : CLI_USAGE;
}

static int dp_parse_double(const char *opt, const char *text, double *out)
{
    char *end;
    double v = strtod(text, &end);
    if (*text == '\0' || *end != '\0' || !(v > 0 && v <= 1)) {
        cli_error(DP_CMD, "option %s: \"%s\" is not a Jaccard similarity in (0, 1]", opt, text);
        return -1;
    }
    *out = v;
    return 0;
}

static int cmd_data_prepare(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'},      {"out", required_argument, 0, 'o'},
        {"dedup", required_argument, 0, 'm'},     {"threshold", required_argument, 0, 't'},
        {"num-perm", required_argument, 0, 'p'},  {"ngram", required_argument, 0, 'n'},
        {"shard-tokens", required_argument, 0, 's'}, {"threads", required_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0},
    };
    const char *data_path = NULL, *out = NULL, *near_opt = NULL;
    dedup_opts dopt = {.mode = DEDUP_MODE_NEAR, .threshold = 0.8, .num_perm = 128, .ngram = 5, .seed = DP_SEED};
    int64_t v, shard_tokens = 100000000, threads = 0;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data_path = optarg; break;
        case 'o': out = optarg; break;
        case 'm':
            if (strcmp(optarg, "none") == 0)
                dopt.mode = DEDUP_MODE_NONE;
            else if (strcmp(optarg, "exact") == 0)
                dopt.mode = DEDUP_MODE_EXACT;
            else if (strcmp(optarg, "near") == 0)
                dopt.mode = DEDUP_MODE_NEAR;
            else {
                cli_error(DP_CMD, "option --dedup: \"%s\" is not one of none, exact, near", optarg);
                return CLI_USAGE;
            }
            break;
        case 't':
            if (dp_parse_double("--threshold", optarg, &dopt.threshold) < 0)
                return CLI_USAGE;
            near_opt = "--threshold";
            break;
        case 'p':
            if (cli_int(DP_CMD, "--num-perm", optarg, 1, DEDUP_MAX_PERM, &v) < 0)
                return CLI_USAGE;
            dopt.num_perm = (int)v;
            near_opt = "--num-perm";
            break;
        case 'n':
            if (cli_int(DP_CMD, "--ngram", optarg, 1, DEDUP_MAX_NGRAM, &v) < 0)
                return CLI_USAGE;
            dopt.ngram = (int)v;
            near_opt = "--ngram";
            break;
        case 's':
            if (cli_int(DP_CMD, "--shard-tokens", optarg, 1, INT32_MAX, &shard_tokens) < 0)
                return CLI_USAGE;
            break;
        case 'j':
            if (cli_int(DP_CMD, "--threads", optarg, 0, 256, &threads) < 0)
                return CLI_USAGE;
            break;
        case 'h': dp_usage(stdout); return CLI_OK;
        default: cli_bad_option(DP_CMD, argc, argv, optind); return CLI_USAGE;
        }
    }
    if (optind < argc) {
        cli_error(DP_CMD, "unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }
    if (data_path == NULL) {
        cli_error(DP_CMD, "--data is required (the data config whose sources to prepare)");
        return CLI_USAGE;
    }
    if (out == NULL) {
        cli_error(DP_CMD, "--out is required (the directory to write the shards to)");
        return CLI_USAGE;
    }
    if (near_opt != NULL && dopt.mode != DEDUP_MODE_NEAR) {
        cli_error(DP_CMD, "option %s only applies to --dedup near, not --dedup %s", near_opt,
                  dedup_mode_name(dopt.mode));
        return CLI_USAGE;
    }
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (n < 256 ? n : 256) : 1;
    }
    int code = dp_check_out(out);
    if (code != 0)
        return code;

    rt_err err = {{0}};
    data_config *cfg = NULL;
    tok *t = NULL;
    data_pipeline *p = NULL;
    dp_ctx ctx = {.fd = -1, .threads = (int)threads, .shard_limit = (uint64_t)shard_tokens};
    char tmp[PATH_MAX] = "";
    int rc;
    log_init("ramtrain", LOG_LEVEL_INFO); /* RAMTRAIN_LOG=warn quiets the progress lines */
    if ((code = dp_make_tmp(out, tmp, sizeof tmp)) != CLI_OK) /* first: an unusable --out fails fast */
        goto cleanup;
    ctx.dir = tmp;
    code = CLI_FAIL;
    if ((rc = data_config_load(data_path, &cfg, &err)) < 0) {
        cli_error(DP_CMD, "%s", err.msg);
        code = dp_code(rc);
        goto cleanup;
    }
    char *tok_path = NULL;
    if (cfg->tokenizer != NULL) {
        size_t n = strlen(cfg->base_dir) + strlen(cfg->tokenizer) + 2;
        tok_path = malloc(n);
        if (tok_path == NULL) {
            cli_error(DP_CMD, "out of memory");
            goto cleanup;
        }
        if (cfg->tokenizer[0] == '/')
            snprintf(tok_path, n, "%s", cfg->tokenizer);
        else
            snprintf(tok_path, n, "%s/%s", cfg->base_dir, cfg->tokenizer);
    }
    rc = tok_open(tok_path, &t, &err);
    free(tok_path);
    if (rc < 0) {
        cli_error(DP_CMD, "%s: %stokenizer: %s", cfg->origin, cfg->key_prefix, err.msg);
        code = dp_code(rc);
        goto cleanup;
    }
    if ((rc = dedup_init(&dopt, &ctx.dd, &err)) < 0) {
        cli_error(DP_CMD, "%s", err.msg);
        code = dp_code(rc);
        goto cleanup;
    }
    data_open_opts oo = {.threads = (int)threads};
    if ((rc = data_open(cfg, t, &oo, &p, &err)) < 0) {
        cli_error(DP_CMD, "%s", err.msg);
        code = dp_code(rc);
        goto cleanup;
    }
    const data_stats *st = data_get_stats(p);
    if (st->eos_id < 0) {
        cli_error(DP_CMD, "%s: the tokenizer (%s) has no EOS token to end documents with: set %seos_token or "
                  "%seos_id", cfg->origin, tok_describe(t), cfg->key_prefix, cfg->key_prefix);
        code = CLI_USAGE;
        goto cleanup;
    }
    ctx.eos = st->eos_id;
    uint64_t ids_needed = (uint64_t)tok_vocab_size(t);
    if ((uint64_t)st->max_id + 1 > ids_needed)
        ids_needed = (uint64_t)st->max_id + 1;
    if ((uint64_t)st->eos_id + 1 > ids_needed)
        ids_needed = (uint64_t)st->eos_id + 1;
    ctx.width = ids_needed <= 65536 ? 2 : 4;
    ctx.k = dedup_sig_len(ctx.dd);
    ctx.docs = malloc(DP_ROUND_DOCS * sizeof *ctx.docs);
    ctx.sigs = malloc(DP_ROUND_DOCS * (ctx.k > 0 ? ctx.k : 1) * sizeof *ctx.sigs);
    ctx.wbuf = malloc(DP_WBUF);
    ctx.src = calloc((size_t)cfg->n_sources, sizeof *ctx.src);
    if (ctx.docs == NULL || ctx.sigs == NULL || ctx.wbuf == NULL || ctx.src == NULL) {
        cli_error(DP_CMD, "out of memory");
        goto cleanup;
    }


    int bands = 0, rows = 0;
    dedup_lsh_shape(ctx.dd, &bands, &rows);
    if (dopt.mode == DEDUP_MODE_NEAR)
        log_info("data prepare: near duplicates at estimated Jaccard >= %g: %d permutations, %d bands of %d rows, "
                 "%d-token shingles", dopt.threshold, dopt.num_perm, bands, rows, dopt.ngram);
    rc = data_docs_foreach(p, dp_on_doc, &ctx, &err);
    if (rc == 0)
        rc = dp_round(&ctx, &err);
    if (rc == 0)
        rc = dp_shard_close(&ctx, &err);
    if (rc == 0)
        rc = dp_write_json(&ctx, cfg, data_path, t, &err);
    if (rc < 0) {
        cli_error(DP_CMD, "%s", err.msg);
        code = rc == -EFBIG ? CLI_USAGE : CLI_FAIL;
        goto cleanup;
    }
    if ((rc = dp_fsync_path(tmp, O_RDONLY | O_DIRECTORY)) < 0 || (rename(tmp, out) != 0 && (rc = -errno) < 0)) {
        cli_error(DP_CMD, "--out %s: cannot move %s there: %s", out, tmp, strerror(-rc));
        goto cleanup;
    }
    tmp[0] = '\0';
    dp_fsync_parent(out);

    printf("prepared %s from %s (dedup %s", out, data_path, dedup_mode_name(dopt.mode));
    if (dopt.mode == DEDUP_MODE_NEAR)
        printf(": estimated Jaccard >= %g, %d permutations in %d bands of %d rows, %d-token shingles",
               dopt.threshold, dopt.num_perm, bands, rows, dopt.ngram);
    printf(")\n");
    printf("documents read: %llu\n", (unsigned long long)ctx.read);
    printf("exact duplicates removed: %llu\n", (unsigned long long)ctx.exact);
    printf("near duplicates removed: %llu\n", (unsigned long long)ctx.near);
    printf("documents kept: %llu\n", (unsigned long long)ctx.kept);
    printf("tokens written: %llu (EOS separators included)\n", (unsigned long long)ctx.tokens_written);
    printf("shards: %zu (uint%d ids, at most %lld tokens each)\n", ctx.n_shards, ctx.width * 8,
           (long long)shard_tokens);
    if (ctx.untrained > 0)
        fprintf(stderr, "ramtrain %s: warning: %llu tokens the data config does not train (prompts) are in the "
                "shards, which have no loss mask: training on them trains those tokens too\n", DP_CMD,
                (unsigned long long)ctx.untrained);
    code = CLI_OK;
cleanup:
    if (ctx.fd >= 0)
        close(ctx.fd);
    if (tmp[0] != '\0')
        dp_remove_dir(tmp);
    free(ctx.arena);
    free(ctx.docs);
    free(ctx.sigs);
    free(ctx.wbuf);
    free(ctx.shards);
    free(ctx.src);
    dedup_free(ctx.dd);
    data_close(p);
    tok_close(t);
    data_config_free(cfg);
    return code;
}

int cmd_data(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        dp_usage(argc < 2 ? stderr : stdout); /* prepare is the only subcommand so far */
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (strcmp(argv[1], "prepare") == 0)
        return cmd_data_prepare(argc - 1, argv + 1);
    cli_error("data", "unknown subcommand '%s' (expected: prepare)", argv[1]);
    return CLI_USAGE;
}
