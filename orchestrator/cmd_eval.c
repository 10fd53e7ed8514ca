/*
 * ramtrain eval: loss and perplexity of a model on a data set.
 *
 * The data is a data config (YAML, the mapping data.h reads) or one data
 * file, which becomes a config of that single source with shuffle off. The
 * batches are those the data loader would serve: batch k is rows k·B ..
 * k·B + B - 1 of the pipeline. One epoch is the global rows [0, rows) where
 * rows is the sum of the sources' rows; a row that is its source's second
 * pass (the tail of the last batch; with a mixture, a source drawn a little
 * ahead of its share) is not counted, so with one source every row is
 * counted exactly once, in any shuffle order. The loss is the mean
 * cross-entropy over every trained target (loss mask 1) of those rows.
 *
 * Every batch streams the model block by block (stream_model.h), as a
 * training step does: the layers are converted to fp32 again for each batch,
 * which costs a pass over the checkpoint's bytes per batch, small against
 * the forward's 2·P·B·T FLOPs. Rejected: running every batch through one
 * layer before the next (each block read once), which keeps the activations
 * of the whole data set.
 *
 * Exit codes: 0, 1 (I/O, memory), 2 (bad input: options, model, data).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "orchestrator/cli.h"
#include "orchestrator/stream_model.h"
#include "services/common/log.h"
#include "services/dataloader/data.h"
#include "services/dataloader/tokenizer.h"

#define EV_CMD "eval"
#define EV_DEFAULT_SEQ 1024 /* --seq-len for a single data file, capped by max_position_embeddings */
#define EV_DEFAULT_ROWS 4   /* --batch for a single data file */

static int ev_code(int rc)
{
    return rc == -ENOMEM || rc == -EIO ? CLI_FAIL : CLI_USAGE;
}

static int ev_is_yaml(const char *path)
{
    size_t n = strlen(path);
    return (n > 5 && strcmp(path + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(path + n - 4, ".yml") == 0);
}

/* A data config of the one file path: YAML text with the path as a
 * double-quoted scalar (backslash, quote and control bytes escaped). */
static int ev_single_file_config(const char *path, int64_t T, int64_t B, data_config **out,
                                 rt_err *err)
{
    size_t cap = strlen(path) * 4 + 256;
    char *y = malloc(cap);
    if (y == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    size_t n = (size_t)snprintf(y, cap,
                                "seq_len: %lld\nbatch_rows: %lld\nshuffle: false\nsources:\n"
                                "  - path: \"",
                                (long long)T, (long long)B);
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (*p == '"' || *p == '\\')
            n += (size_t)snprintf(y + n, cap - n, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            n += (size_t)snprintf(y + n, cap - n, "\\x%02x", *p);
        else
            y[n++] = (char)*p;
    }
    n += (size_t)snprintf(y + n, cap - n, "\"\n");
    int rc = data_config_from_string(y, n, path, NULL, out, err);
    free(y);
    return rc;
}

/* Opens the tokenizer (--tokenizer, the data config's, the model's
 * tokenizer.json, or the byte tokenizer, in that order) and records its
 * absolute path in cfg, which data_open fingerprints for its index files. */
static int ev_tokenizer(const char *opt, const char *model, data_config *cfg, tok **t,
                        rt_err *err)
{
    char *path = NULL;
    int rc = 0;
    if (opt != NULL) {
        path = strdup(opt);
    } else if (cfg->tokenizer != NULL && cfg->tokenizer[0] == '/') {
        path = strdup(cfg->tokenizer);
    } else if (cfg->tokenizer != NULL) {
        size_t n = strlen(cfg->base_dir) + strlen(cfg->tokenizer) + 2;
        if ((path = malloc(n)) != NULL)
            snprintf(path, n, "%s/%s", cfg->base_dir, cfg->tokenizer);
    } else if ((rc = sm_default_tokenizer(model, &path)) < 0) {
        return err_set(err, rc, "out of memory");
    } else if (path == NULL) {
        return tok_open(NULL, t, err);
    }
    if (path == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    if ((rc = tok_open(path, t, err)) < 0) {
        err_prefix(err, rc, "tokenizer");
        goto out;
    }
    char *abs = realpath(path, NULL);
    if (abs == NULL) {
        rc = err_set(err, -errno, "%s: %s", path, strerror(errno));
        goto out;
    }
    free(cfg->tokenizer);
    cfg->tokenizer = abs;
out:
    free(path);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"data", required_argument, NULL, 'd'},
        {"seq-len", required_argument, NULL, 's'},
        {"batch", required_argument, NULL, 'b'},
        {"max-batches", required_argument, NULL, 'n'},
        {"tokenizer", required_argument, NULL, 'k'},
        {"threads", required_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *model = NULL, *data_path = NULL, *tok_opt = NULL;
    int64_t T = 0, B = 0, max_batches = 0, threads = 0;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': data_path = optarg; break;
        case 'k': tok_opt = optarg; break;
        case 's': bad = cli_int(EV_CMD, "--seq-len", optarg, 1, 1 << 20, &T); break;
        case 'b': bad = cli_int(EV_CMD, "--batch", optarg, 1, 1 << 20, &B); break;
        case 'n': bad = cli_int(EV_CMD, "--max-batches", optarg, 1, INT64_MAX, &max_batches); break;
        case 'j': bad = cli_int(EV_CMD, "--threads", optarg, 0, 4096, &threads); break;
        case 'h':
            printf("usage: ramtrain eval --model DIR --data DATA.yaml|FILE [--seq-len T] [--batch B]\n"
                   "                     [--max-batches N] [--tokenizer FILE] [--threads N]\n"
                   "FILE: one .txt/.jsonl/.bin/.u32 file (optionally .zst); defaults --seq-len\n"
                   "min(%d, max_position_embeddings), --batch %d.\n",
                   EV_DEFAULT_SEQ, EV_DEFAULT_ROWS);
            return CLI_OK;
        default:
            cli_bad_option(EV_CMD, argc, argv, optind);
            return CLI_USAGE;
        }
        if (bad)
            return CLI_USAGE;
    }
    if (optind < argc) {
        cli_error(EV_CMD, "unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }
    if (model == NULL || data_path == NULL) {
        cli_error(EV_CMD, "missing required option %s", model == NULL ? "--model" : "--data");
        return CLI_USAGE;
    }
    log_init("ramtrain", LOG_LEVEL_WARN); /* RAMTRAIN_LOG=info shows the data and memory lines */

    rt_err err = {{0}};
    sm_model m = {0};
    sm_run run = {0};
    data_config *dcfg = NULL;
    tok *t = NULL;
    data_pipeline *p = NULL;
    data_batch_buf bb = {0};   /* one batch as the data loader serves it */
    int32_t *inputs = NULL;    /* [B * T] token ids */
    int32_t *targets = NULL;   /* [B * T] next ids, BE_IGNORE_INDEX where not counted */
    int code = CLI_FAIL, rc;
    if ((rc = sm_open(model, &m, &err)) < 0) {
        cli_error(EV_CMD, "%s", err.msg);
        code = ev_code(rc);
        goto out;
    }
    if (ev_is_yaml(data_path)) {
        rc = data_config_load(data_path, &dcfg, &err);
    } else {
        struct stat st;
        if (stat(data_path, &st) != 0) {
            cli_error(EV_CMD, "%s: data file: %s", data_path, strerror(errno));
            code = CLI_USAGE;
            goto out;
        }
        int64_t dT = m.cfg.max_pos < EV_DEFAULT_SEQ ? m.cfg.max_pos : EV_DEFAULT_SEQ;
        rc = ev_single_file_config(data_path, T ? T : dT, B ? B : EV_DEFAULT_ROWS, &dcfg, &err);
    }
    if (rc < 0) {
        cli_error(EV_CMD, "%s", err.msg);
        code = ev_code(rc);
        goto out;
    }
    if (T)
        dcfg->seq_len = T;
    if (B)
        dcfg->batch_rows = B;
    T = dcfg->seq_len;
    B = dcfg->batch_rows;
    if (T > m.cfg.max_pos) {
        cli_error(EV_CMD, "sequence length %lld exceeds the model's max_position_embeddings %lld "
                  "(set --seq-len)", (long long)T, (long long)m.cfg.max_pos);
        code = CLI_USAGE;
        goto out;
    }
    if (B * T > (1 << 24)) {
        cli_error(EV_CMD, "batch of %lld x %lld tokens is more than %d", (long long)B, (long long)T,
                  1 << 24);
        code = CLI_USAGE;
        goto out;
    }
    if (dcfg->mask_doc_attention)
        log_warn("%s: mask_doc_attention is not implemented by the backend: rows attend across "
                 "documents", dcfg->origin);
    if ((rc = ev_tokenizer(tok_opt, model, dcfg, &t, &err)) < 0) {
        cli_error(EV_CMD, "%s", err.msg);
        code = ev_code(rc);
        goto out;
    }
    data_open_opts oo = {.threads = (int)threads, .vocab_size = m.cfg.vocab};
    if ((rc = data_open(dcfg, t, &oo, &p, &err)) < 0) {
        cli_error(EV_CMD, "%s", err.msg);
        code = ev_code(rc);
        goto out;
    }
    const data_stats *st = data_get_stats(p);
    uint64_t rows = st->rows, n_batches = (rows + (uint64_t)B - 1) / (uint64_t)B;
    if (max_batches > 0 && (uint64_t)max_batches < n_batches)
        n_batches = (uint64_t)max_batches;

    size_t N = (size_t)(B * T);
    bb.tokens = malloc((size_t)B * (size_t)(T + 1) * sizeof *bb.tokens);
    bb.loss_mask = malloc(N);
    inputs = malloc(N * sizeof *inputs);
    targets = malloc(N * sizeof *targets);
    if (bb.tokens == NULL || bb.loss_mask == NULL || inputs == NULL || targets == NULL) {
        cli_error(EV_CMD, "out of memory");
        goto out;
    }
    if ((rc = sm_run_init(&run, &m, (int)B, (int)T, (int)threads, &err)) < 0) {
        cli_error(EV_CMD, "%s", err.msg);
        code = ev_code(rc);
        goto out;
    }
    log_info("eval: %s: block buffer and activations %.1f MiB, backend scratch %.1f MiB; %llu "
             "batches of %lld x %lld", model, (double)run.bytes / (1 << 20),
             (double)run.be->scratch_bytes / (1 << 20), (unsigned long long)n_batches,
             (long long)B, (long long)T);

    double loss_sum = 0.0;
    uint64_t n_tokens = 0;
    for (uint64_t k = 0; k < n_batches; k++) {
        if ((rc = data_batch(p, k, &bb, &err)) < 0) {
            cli_error(EV_CMD, "%s", err.msg);
            code = ev_code(rc);
            goto out;
        }
        int used = 0; /* rows up to the last one counted */
        for (int r = 0; r < (int)B; r++) {
            uint32_t src;
            uint64_t row, epoch;
            data_row_locate(p, k * (uint64_t)B + (uint64_t)r, &src, &row, &epoch);
            int counted = k * (uint64_t)B + (uint64_t)r < rows && epoch == 0;
            const int32_t *tr = bb.tokens + (size_t)r * (size_t)(T + 1);
            const uint8_t *mr = bb.loss_mask + (size_t)r * (size_t)T;
            for (int64_t i = 0; i < T; i++) {
                size_t at = (size_t)r * (size_t)T + (size_t)i;
                inputs[at] = tr[i];
                targets[at] = counted && mr[i] ? tr[i + 1] : BE_IGNORE_INDEX;
                n_tokens += targets[at] != BE_IGNORE_INDEX;
            }
            if (counted)
                used = r + 1;
        }
        if (used == 0)
            continue;
        if ((rc = sm_run_forward(&run, inputs, used, (int)T, &err)) < 0) {
            cli_error(EV_CMD, "batch %llu: %s", (unsigned long long)k, err.msg);
            code = ev_code(rc);
            goto out;
        }
        if ((rc = run.be->ops->head_loss(run.be, &run.head, sm_run_head_embed(&run), run.out,
                                         targets, used * (int)T, 0.0f, &loss_sum, NULL, NULL,
                                         NULL)) < 0) {
            cli_error(EV_CMD, "batch %llu: head forward failed (a target id is not below "
                      "vocab_size %lld)", (unsigned long long)k, (long long)m.cfg.vocab);
            code = CLI_USAGE;
            goto out;
        }
    }
    if (n_tokens == 0) {
        cli_error(EV_CMD, "%s: no trained target tokens in %llu batches: nothing to evaluate",
                  data_path, (unsigned long long)n_batches);
        code = CLI_USAGE;
        goto out;
    }
    double loss = loss_sum / (double)n_tokens;
    printf("loss %.9g\nperplexity %.9g\ntokens %llu\nbatches %llu\n", loss, exp(loss),
           (unsigned long long)n_tokens, (unsigned long long)n_batches);
    code = CLI_OK;
out:
    sm_run_free(&run);
    free(inputs);
    free(targets);
    free(bb.tokens);
    free(bb.loss_mask);
    data_close(p);
    tok_close(t);
    data_config_free(dcfg);
    sm_close(&m);
    return code;
}
