/*
 * ramtrain tokenize: stdin -> stdout through a tokenizer, one line at a time,
 * in the format tests outside the project rely on:
 * - input lines end at \n (the newline is not part of the line); a last line
 *   without \n counts; empty input gives no output;
 * - encode prints each line's ids separated by single spaces, one output
 *   line per input line (an empty line gives an empty line); special tokens
 *   are added as Hugging Face's encode(text) adds them unless --no-special;
 * - --decode reads lines of ids (separated by spaces or tabs) and prints each
 *   line's text followed by \n (newlines inside the text are printed as they
 *   are); special tokens are kept, as Hugging Face's decode keeps them by
 *   default.
 * Bytes that are not UTF-8 become U+FFFD before encoding (tokenizer.h); the
 * built-in byte tokenizer (no --tokenizer) takes the bytes as they are.
 *
 * Input is read in blocks of whole lines (a block ends early when no more
 * input is waiting, so a caller may send a line and wait for its answer);
 * with --threads N each block is cut into N runs of lines that N threads
 * encode into their own buffers, written out in order, so the output does
 * not depend on N. Exit codes: 0 done, 2 bad
 * input (options, tokenizer file, an id that is not a number or not in the
 * vocabulary), 1 anything else (I/O, memory).
 *
 * Rejected: a thread pool fed line by line (a lock per line costs more than
 * encoding a short line).
 */
#define _GNU_SOURCE /* memrchr */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orchestrator/cli.h"
#include "services/dataloader/text_util.h"
#include "services/dataloader/tokenizer.h"

#define TZ_BLOCK_PER_THREAD (1u << 20) /* bytes of input per thread and block */

typedef struct tz_out {
    char *p;
    size_t len, cap; /* bytes */
} tz_out;

/* One thread's share of a block: lines [begin, end) of the input. */
typedef struct tz_job {
    const tok *t;
    tok_scratch *scratch;
    int decode, add_special;
    const char *begin, *end; /* whole lines, each ending with \n except maybe the last */
    size_t first_line;       /* 1-based number of the first line, for messages */
    tz_out out;
    int32_t *ids;            /* [cap] reused across lines */
    size_t cap;
    int rc;                  /* 0, or CLI_USAGE / CLI_FAIL with msg */
    char msg[1200];
} tz_job;

static int tz_reserve(tz_out *o, size_t extra)
{
    if (o->len + extra <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap : 1 << 16;
    while (cap < o->len + extra)
        cap *= 2;
    char *p = realloc(o->p, cap);
    if (p == NULL)
        return -ENOMEM;
    o->p = p;
    o->cap = cap;
    return 0;
}

/* Appends the ids as decimal numbers separated by spaces, and a newline. */
static int tz_put_ids(tz_out *o, const int32_t *ids, size_t n)
{
    if (tz_reserve(o, n * 12 + 1) < 0)
        return -ENOMEM;
    char *w = o->p + o->len;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            *w++ = ' ';
        uint32_t v = (uint32_t)ids[i]; /* ids are >= 0 */
        char tmp[10];
        int k = 0;
        do {
            tmp[k++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        while (k > 0)
            *w++ = tmp[--k];
    }
    *w++ = '\n';
    o->len = (size_t)(w - o->p);
    return 0;
}

/* Parses a line of ids into job->ids; fills job->msg on bad input. */
static int tz_parse_ids(tz_job *j, const char *s, size_t len, size_t line, size_t *n)
{
    *n = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
            i++;
        if (i == len)
            break;
        size_t b = i;
        int64_t v = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9' && v <= INT32_MAX)
            v = v * 10 + (s[i++] - '0');
        if (i == b || v > INT32_MAX || (i < len && s[i] != ' ' && s[i] != '\t' && s[i] != '\r')) {
            size_t e = b;
            while (e < len && s[e] != ' ' && s[e] != '\t')
                e++;
            snprintf(j->msg, sizeof j->msg, "--decode: line %zu: \"%.*s\" is not a token id (a number in [0, 2^31))",
                     line, (int)(e - b > 40 ? 40 : e - b), s + b);
            return CLI_USAGE;
        }
        if (*n == j->cap) {
            size_t cap = j->cap ? j->cap * 2 : 256;
            int32_t *p = realloc(j->ids, cap * sizeof *p);
            if (p == NULL) {
                snprintf(j->msg, sizeof j->msg, "out of memory");
                return CLI_FAIL;
            }
            j->ids = p;
            j->cap = cap;
        }
        j->ids[(*n)++] = (int32_t)v;
    }
    return 0;
}

static void *tz_run(void *arg)
{
    tz_job *j = arg;
    rt_err err = {{0}};
    size_t line = j->first_line;
    j->out.len = 0;
    for (const char *p = j->begin; p < j->end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(j->end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(j->end - p);
        size_t n = 0;
        if (j->decode) {
            if ((j->rc = tz_parse_ids(j, p, len, line, &n)) != 0)
                return NULL;
            char *text;
            size_t tlen;
            if (tok_decode(j->t, j->ids, n, false, &text, &tlen, &err) < 0) {
                snprintf(j->msg, sizeof j->msg, "--decode: line %zu: %s", line, err.msg);
                j->rc = CLI_USAGE;
                return NULL;
            }
            int rc = tz_reserve(&j->out, tlen + 1);
            if (rc == 0) {
                memcpy(j->out.p + j->out.len, text, tlen);
                j->out.len += tlen;
                j->out.p[j->out.len++] = '\n';
            }
            free(text);
            if (rc < 0) {
                snprintf(j->msg, sizeof j->msg, "out of memory");
                j->rc = CLI_FAIL;
                return NULL;
            }
        } else {
            if (tok_encode_with(j->t, j->scratch, p, len, j->add_special, &j->ids, &n, &j->cap, &err) < 0 ||
                tz_put_ids(&j->out, j->ids, n) < 0) {
                snprintf(j->msg, sizeof j->msg, "line %zu: %s", line, err.msg[0] ? err.msg : "out of memory");
                j->rc = CLI_FAIL;
                return NULL;
            }
        }
        p += len + 1;
    }
    return NULL;
}

/* Encodes or decodes the whole lines in buf[0..len) with the jobs; writes
 * the output. *line is the number of the first line, advanced past them. */
static int tz_block(tz_job *jobs, int threads, const char *buf, size_t len, size_t *line)
{
    /* cut into runs of whole lines of about equal size */
    const char *p = buf, *end = buf + len;
    int used = 0;
    for (int k = 0; k < threads && p < end; k++) {
        const char *cut = k == threads - 1 ? end : p + (size_t)(end - p) / (size_t)(threads - k);
        if (cut < end) {
            const char *nl = memchr(cut, '\n', (size_t)(end - cut));
            cut = nl ? nl + 1 : end;
        }
        jobs[k].begin = p;
        jobs[k].end = cut;
        jobs[k].first_line = *line;
        jobs[k].rc = 0;
        for (const char *q = p; (q = memchr(q, '\n', (size_t)(cut - q))) != NULL; q++)
            (*line)++; /* lines in this run */
        if (cut == end && (cut == buf || cut[-1] != '\n'))
            (*line)++; /* a last line without \n */
        p = cut;
        used++;
    }
    pthread_t tid[256];
    int started = 0;
    for (int k = 1; k < used; k++) {
        if (pthread_create(&tid[k], NULL, tz_run, &jobs[k]) != 0)
            break;
        started = k;
    }
    for (int k = started + 1; k < used; k++) /* threads that could not start run here */
        tz_run(&jobs[k]);
    if (used > 0)
        tz_run(&jobs[0]);
    for (int k = 1; k <= started; k++)
        pthread_join(tid[k], NULL);
    for (int k = 0; k < used; k++) {
        if (jobs[k].rc != 0) { /* the output of the runs before it is out */
            cli_error("tokenize", "%s", jobs[k].msg);
            return jobs[k].rc;
        }
        int rc = tu_write_all(STDOUT_FILENO, jobs[k].out.p, jobs[k].out.len);
        if (rc < 0) {
            cli_error("tokenize", "writing stdout: %s", strerror(-rc));
            return CLI_FAIL;
        }
    }
    return CLI_OK;
}

static int tz_main(const tok *t, int decode, int add_special, int threads)
{
    tz_job *jobs = calloc((size_t)threads, sizeof *jobs);
    char *buf = NULL;
    size_t cap = (size_t)threads * TZ_BLOCK_PER_THREAD, len = 0, line = 1;
    int rc = CLI_OK;
    rt_err err = {{0}};
    if (jobs == NULL || (buf = malloc(cap)) == NULL) {
        cli_error("tokenize", "out of memory");
        rc = CLI_FAIL;
        goto cleanup;
    }
    for (int k = 0; k < threads; k++) {
        jobs[k].t = t;
        jobs[k].decode = decode;
        jobs[k].add_special = add_special;
        if (!decode && tok_scratch_init(t, &jobs[k].scratch, &err) < 0) {
            cli_error("tokenize", "%s", err.msg);
            rc = CLI_FAIL;
            goto cleanup;
        }
    }
    int eof = 0;
    while (!eof) {
        if (len == cap) { /* one line longer than the block: grow */
            char *p = realloc(buf, cap * 2);
            if (p == NULL) {
                cli_error("tokenize", "out of memory for a %zu-byte line", len);
                rc = CLI_FAIL;
                goto cleanup;
            }
            buf = p;
            cap *= 2;
        }
        ssize_t r = read(STDIN_FILENO, buf + len, cap - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            cli_error("tokenize", "reading stdin: %s", strerror(errno));
            rc = CLI_FAIL;
            goto cleanup;
        }
        if (r == 0)
            eof = 1;
        len += (size_t)r;
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        if (!eof && len < cap && poll(&pfd, 1, 0) > 0)
            continue; /* more is there already: fill the block before cutting it */
        size_t whole = len;
        if (!eof) {
            const char *nl = memrchr(buf, '\n', len);
            if (nl == NULL)
                continue;
            whole = (size_t)(nl - buf) + 1;
        }
        if (whole > 0 && (rc = tz_block(jobs, threads, buf, whole, &line)) != CLI_OK)
            goto cleanup;
        memmove(buf, buf + whole, len - whole);
        len -= whole;
    }
cleanup:
    for (int k = 0; jobs != NULL && k < threads; k++) {
        tok_scratch_free(jobs[k].scratch);
        free(jobs[k].out.p);
        free(jobs[k].ids);
    }
    free(jobs);
    free(buf);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    static const struct option opts[] = {
        {"tokenizer", required_argument, 0, 't'},
        {"decode", no_argument, 0, 'd'},
        {"no-special", no_argument, 0, 'n'},
        {"threads", required_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *path = NULL;
    int decode = 0, special = 1;
    int64_t threads = 1;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't': path = optarg; break;
        case 'd': decode = 1; break;
        case 'n': special = 0; break;
        case 'j':
            if (cli_int("tokenize", "--threads", optarg, 1, 256, &threads) < 0)
                return CLI_USAGE;
            break;
        case 'h':
            printf("usage: ramtrain tokenize [--tokenizer FILE|DIR] [--decode] [--no-special] [--threads N]\n"
                   "  stdin -> stdout, one line each: text -> ids separated by spaces, or with\n"
                   "  --decode ids -> text. Without --tokenizer: the built-in byte tokenizer.\n");
            return CLI_OK;
        default: cli_bad_option("tokenize", argc, argv, optind); return CLI_USAGE;
        }
    }
    if (optind < argc) {
        cli_error("tokenize", "unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }
    rt_err err = {{0}};
    tok *t;
    if (tok_open(path, &t, &err) < 0) {
        cli_error("tokenize", "--tokenizer: %s", err.msg);
        return CLI_USAGE;
    }
    int rc = tz_main(t, decode, special, (int)threads);
    tok_close(t);
    return rc;
}
