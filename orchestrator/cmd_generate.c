/*
 * ramtrain generate: continues a prompt with a model, greedy or sampled.
 *
 * The prompt is encoded as Hugging Face's encode(text) does (BOS added by
 * the tokenizer's post-processor; an EOS it appends is dropped, since it
 * would end the text before it starts). Each new token runs the whole
 * sequence so far through the model, streamed block by block
 * (stream_model.h), and picks from the last row's logits:
 * - temperature 0: greedy, the argmax (the lowest id on ties);
 * - otherwise logits / temperature, then top-k (the k largest), then top-p
 *   (the smallest prefix of the rest, by probability renormalised over it,
 *   whose mass is >= p), ties ordered by id, and one draw from a
 *   deterministic RNG seeded by --seed.
 * It stops at the tokenizer's EOS (printed with --ids, not in the text),
 * after --max-new-tokens, or at max_position_embeddings.
 *
 * Cost: there is no KV cache. Token n costs a forward of all n positions
 * (attention O(n^2)) and a pass over every block of the checkpoint, so a
 * generation of G tokens after a prompt of P does about (P + G/2)·G·2·params
 * FLOPs where a cache would do (P + G)·2·params. That is fine for the small
 * models this checks; a real decoder needs the cache (and would still stream
 * the blocks once per token unless they fit in memory).
 *
 * Output: the prompt followed by the continuation (the decoded text of
 * prompt + new ids, past the decoded prompt, so a decoder that joins tokens
 * across the boundary still prints the right text), or with --ids the new
 * ids on one line.
 *
 * Exit codes: 0, 1 (I/O, memory), 2 (bad input: options, model, prompt).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/cli.h"
#include "orchestrator/stream_model.h"
#include "services/common/log.h"
#include "services/common/rng.h"
#include "services/dataloader/tokenizer.h"

#define GN_CMD "generate"

typedef struct gn_params {
    double temperature;   /* 0: greedy */
    int64_t top_k;        /* 0: off */
    double top_p;         /* 1: off */
} gn_params;

typedef struct gn_cand {
    float z;              /* logit / temperature */
    int32_t id;
} gn_cand;

static int gn_code(int rc)
{
    return rc == -ENOMEM || rc == -EIO ? CLI_FAIL : CLI_USAGE;
}

/* Parses a finite decimal number within [lo, hi]; prints an error naming
 * the option and returns -1 otherwise. */
static int gn_double(const char *opt, const char *text, double lo, double hi, const char *range,
                     double *out)
{
    char *end;
    double v = strtod(text, &end);
    if (*text == '\0' || *end != '\0' || !isfinite(v) || v < lo || v > hi) {
        cli_error(GN_CMD, "option %s: \"%s\" is not a number in %s", opt, text, range);
        return -1;
    }
    *out = v;
    return 0;
}

static int gn_cand_cmp(const void *a, const void *b)
{
    const gn_cand *x = a, *y = b;
    if (x->z != y->z)
        return x->z > y->z ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Picks the next id from logits[V]. cand[V] and prob[V] are scratch. */
static int32_t gn_pick(const gn_params *gp, const float *logits, int64_t V, gn_cand *cand,
                       double *prob, rng_state *rng)
{
    if (gp->temperature == 0.0) {
        int32_t best = 0;
        for (int64_t i = 1; i < V; i++)
            if (logits[i] > logits[best])
                best = (int32_t)i;
        return best;
    }
    for (int64_t i = 0; i < V; i++) {
        cand[i].z = (float)((double)logits[i] / gp->temperature);
        cand[i].id = (int32_t)i;
    }
    qsort(cand, (size_t)V, sizeof *cand, gn_cand_cmp);
    int64_t K = gp->top_k > 0 && gp->top_k < V ? gp->top_k : V;
    double sum = 0.0;
    for (int64_t i = 0; i < K; i++) {
        prob[i] = exp((double)cand[i].z - (double)cand[0].z);
        sum += prob[i];
    }
    if (gp->top_p < 1.0) {
        double cum = 0.0, want = gp->top_p * sum;
        int64_t keep = 0;
        while (keep < K && cum < want)
            cum += prob[keep++];
        K = keep > 0 ? keep : 1;
        sum = 0.0;
        for (int64_t i = 0; i < K; i++)
            sum += prob[i];
    }
    double u = rng_uniform(rng) * sum, cum = 0.0;
    for (int64_t i = 0; i < K; i++) {
        cum += prob[i];
        if (u < cum)
            return cand[i].id;
    }
    return cand[K - 1].id; /* u within rounding of sum */
}

/* Prints the prompt and the continuation: decode(prompt + gen) past
 * decode(prompt). Ids the tokenizer does not have (a model vocabulary padded
 * past it) cannot be decoded and are left out, with a warning. */
static int gn_print_text(const tok *t, const char *prompt, const int32_t *seq, size_t n_prompt,
                         size_t n, rt_err *err)
{
    int32_t *ids = malloc(n * sizeof *ids);
    char *full = NULL, *pre = NULL;
    size_t full_len = 0, pre_len = 0, k = 0, dropped = 0;
    int rc;
    if (ids == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (seq[i] < tok_vocab_size(t))
            ids[k++] = seq[i];
        else
            dropped++;
    }
    if ((rc = tok_decode(t, ids, n_prompt, true, &pre, &pre_len, err)) < 0 ||
        (rc = tok_decode(t, ids, k, true, &full, &full_len, err)) < 0)
        goto out;
    if (dropped > 0)
        log_warn("generate: %zu generated ids are not in the tokenizer (%s) and are not printed",
                 dropped, tok_describe(t));
    if (full_len >= pre_len && memcmp(full, pre, pre_len) == 0) {
        fputs(prompt, stdout);
        fwrite(full + pre_len, 1, full_len - pre_len, stdout);
    } else {
        fwrite(full, 1, full_len, stdout);
    }
    fputc('\n', stdout);
out:
    free(ids);
    free(full);
    free(pre);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"prompt", required_argument, NULL, 'p'},
        {"max-new-tokens", required_argument, NULL, 'n'},
        {"temperature", required_argument, NULL, 't'},
        {"top-k", required_argument, NULL, 'k'},
        {"top-p", required_argument, NULL, 'P'},
        {"seed", required_argument, NULL, 's'},
        {"tokenizer", required_argument, NULL, 'z'},
        {"threads", required_argument, NULL, 'j'},
        {"ids", no_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *model = NULL, *prompt = NULL, *tok_opt = NULL;
    int64_t max_new = 64, seed = 0, threads = 0;
    int print_ids = 0;
    gn_params gp = {.temperature = 0.0, .top_k = 0, .top_p = 1.0};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': model = optarg; break;
        case 'p': prompt = optarg; break;
        case 'z': tok_opt = optarg; break;
        case 'i': print_ids = 1; break;
        case 'n': bad = cli_int(GN_CMD, "--max-new-tokens", optarg, 0, 1 << 20, &max_new); break;
        case 'k': bad = cli_int(GN_CMD, "--top-k", optarg, 0, INT32_MAX, &gp.top_k); break;
        case 's': bad = cli_int(GN_CMD, "--seed", optarg, 0, INT64_MAX, &seed); break;
        case 'j': bad = cli_int(GN_CMD, "--threads", optarg, 0, 4096, &threads); break;
        case 't':
            bad = gn_double("--temperature", optarg, 0.0, 1e6, "[0, 1e6] (0: greedy)",
                            &gp.temperature);
            break;
        case 'P':
            bad = gn_double("--top-p", optarg, 0.0, 1.0, "(0, 1]", &gp.top_p);
            if (!bad && gp.top_p <= 0.0) {
                cli_error(GN_CMD, "option --top-p: \"%s\" is not a number in (0, 1]", optarg);
                bad = 1;
            }
            break;
        case 'h':
            printf("usage: ramtrain generate --model DIR --prompt TEXT [--max-new-tokens N (64)]\n"
                   "       [--temperature X (0: greedy)] [--top-k K] [--top-p P] [--seed N]\n"
                   "       [--tokenizer FILE] [--threads N] [--ids]\n");
            return CLI_OK;
        default:
            cli_bad_option(GN_CMD, argc, argv, optind);
            return CLI_USAGE;
        }
        if (bad)
            return CLI_USAGE;
    }
    if (optind < argc) {
        cli_error(GN_CMD, "unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }
    if (model == NULL || prompt == NULL) {
        cli_error(GN_CMD, "missing required option %s", model == NULL ? "--model" : "--prompt");
        return CLI_USAGE;
    }
    log_init("ramtrain", LOG_LEVEL_WARN);

    rt_err err = {{0}};
    sm_model m = {0};
    sm_run run = {0};
    tok *t = NULL;
    char *tok_path = NULL;
    int32_t *seq = NULL;      /* [total] prompt ids, then the generated ones */
    int32_t *plain = NULL;    /* [n_plain] the prompt encoded without special tokens */
    float *logits = NULL;     /* [vocab] of the last position */
    gn_cand *cand = NULL;     /* [vocab] sampling scratch */
    double *prob = NULL;      /* [vocab] unnormalised probabilities of the sorted candidates */
    size_t n_prompt = 0, cap = 0, n_plain = 0, cap_plain = 0;
    int code = CLI_FAIL, rc;
    if ((rc = sm_open(model, &m, &err)) < 0) {
        cli_error(GN_CMD, "%s", err.msg);
        code = gn_code(rc);
        goto out;
    }
    if (tok_opt == NULL && sm_default_tokenizer(model, &tok_path) < 0) {
        cli_error(GN_CMD, "out of memory");
        goto out;
    }
    if ((rc = tok_open(tok_opt != NULL ? tok_opt : tok_path, &t, &err)) < 0) {
        cli_error(GN_CMD, "tokenizer: %s", err.msg);
        code = gn_code(rc);
        goto out;
    }
    size_t plen = strlen(prompt);
    int32_t eos = tok_eos(t);
    if ((rc = tok_encode(t, prompt, plen, true, &seq, &n_prompt, &cap, &err)) < 0 ||
        (rc = tok_encode(t, prompt, plen, false, &plain, &n_plain, &cap_plain, &err)) < 0) {
        cli_error(GN_CMD, "%s", err.msg);
        code = gn_code(rc);
        goto out;
    }
    if (eos >= 0 && n_prompt > n_plain && seq[n_prompt - 1] == eos &&
        (n_plain == 0 || plain[n_plain - 1] != eos))
        n_prompt--;
    /* A special token the tokenizer adds (the built-in byte tokenizer's BOS,
     * 256) outside a model trained without it: prompt with the text alone. */
    bool special_out = false, plain_in = true;
    for (size_t i = 0; i < n_prompt; i++)
        special_out |= seq[i] >= m.cfg.vocab;
    for (size_t i = 0; i < n_plain; i++)
        plain_in &= plain[i] >= 0 && plain[i] < m.cfg.vocab;
    if (special_out && plain_in && n_plain > 0) {
        memcpy(seq, plain, n_plain * sizeof *seq);
        n_prompt = n_plain;
    }
    if (n_prompt == 0) {
        cli_error(GN_CMD, "--prompt encodes to no tokens (%s adds no BOS): give some text",
                  tok_describe(t));
        code = CLI_USAGE;
        goto out;
    }
    for (size_t i = 0; i < n_prompt; i++)
        if (seq[i] < 0 || seq[i] >= m.cfg.vocab) {
            cli_error(GN_CMD, "--prompt: token %zu has id %d, not below the model's vocab_size "
                      "%lld: the tokenizer (%s) does not match the model", i, seq[i],
                      (long long)m.cfg.vocab, tok_describe(t));
            code = CLI_USAGE;
            goto out;
        }
    if ((int64_t)n_prompt > m.cfg.max_pos) {
        cli_error(GN_CMD, "--prompt is %zu tokens, more than the model's max_position_embeddings "
                  "%lld", n_prompt, (long long)m.cfg.max_pos);
        code = CLI_USAGE;
        goto out;
    }
    int64_t total = (int64_t)n_prompt + max_new;
    if (total > m.cfg.max_pos)
        total = m.cfg.max_pos;
    int64_t V = m.cfg.vocab;
    int32_t *grown = realloc(seq, (size_t)total * sizeof *seq);
    logits = malloc((size_t)V * sizeof *logits);
    cand = malloc((size_t)V * sizeof *cand);
    prob = malloc((size_t)V * sizeof *prob);
    if (grown != NULL)
        seq = grown;
    if (grown == NULL || logits == NULL || cand == NULL || prob == NULL) {
        cli_error(GN_CMD, "out of memory");
        goto out;
    }
    if ((rc = sm_run_init(&run, &m, 1, (int)total, (int)threads, &err)) < 0) {
        cli_error(GN_CMD, "%s", err.msg);
        code = gn_code(rc);
        goto out;
    }
    log_info("generate: %s: block buffer and activations %.1f MiB, backend scratch %.1f MiB",
             model, (double)run.bytes / (1 << 20), (double)run.be->scratch_bytes / (1 << 20));
    rng_state rng;
    rng_seed(&rng, (uint64_t)seed);
    size_t n = n_prompt;
    while ((int64_t)n < total) {
        if ((rc = sm_run_forward(&run, seq, 1, (int)n, &err)) < 0) {
            cli_error(GN_CMD, "%s", err.msg);
            code = gn_code(rc);
            goto out;
        }
        const float *last = run.out + (n - 1) * (size_t)m.cfg.hidden;
        if ((rc = run.be->ops->head_logits(run.be, &run.head, sm_run_head_embed(&run), last, 1,
                                           logits)) < 0) {
            cli_error(GN_CMD, "head forward failed");
            goto out;
        }
        seq[n++] = gn_pick(&gp, logits, V, cand, prob, &rng);
        if (seq[n - 1] == eos)
            break;
    }
    if (print_ids) {
        for (size_t i = n_prompt; i < n; i++)
            printf("%s%d", i > n_prompt ? " " : "", seq[i]);
        printf("\n");
    } else {
        size_t n_text = n > n_prompt && seq[n - 1] == eos ? n - 1 : n;
        if ((rc = gn_print_text(t, prompt, seq, n_prompt, n_text, &err)) < 0) {
            cli_error(GN_CMD, "%s", err.msg);
            code = gn_code(rc);
            goto out;
        }
    }
    code = fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
out:
    sm_run_free(&run);
    free(seq);
    free(plain);
    free(logits);
    free(cand);
    free(prob);
    free(tok_path);
    tok_close(t);
    sm_close(&m);
    return code;
}
