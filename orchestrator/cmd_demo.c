/*
 * ramtrain demo: the main job a newcomer runs first. Trains a small
 * byte-level Llama (embedded config) on an embedded English text with AdamW
 * on the CPU backend, prints the loss as it falls, and writes the trained
 * model as a Hugging Face checkpoint.
 *
 * This runs in one process with every block in local memory: the
 * multi-process system (parameter server, worker, data loader, `ramtrain
 * run`) replaces it as those services land. The update is the parameter
 * server's AdamW kernel (services/paramserver/adamw.h) over the blocks' W,
 * G0, m and v sections.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orchestrator/cli.h"
#include "services/paramserver/adamw.h"
#include "orchestrator/local_step.h"
#include "orchestrator/model_io.h"
#include "services/common/rng.h"

static const char DEMO_CONFIG[] =
    "{\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"],"
    " \"hidden_size\": 128, \"intermediate_size\": 344, \"num_hidden_layers\": 4,"
    " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 256,"
    " \"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0,"
    " \"tie_word_embeddings\": true, \"initializer_range\": 0.02}";

/* Byte-level tokens: each byte of this text is one token id. */
static const char DEMO_TEXT[] =
    "ramtrain trains language models that are larger than the memory of the one GPU it runs on. "
    "The model lives in host memory, one block per layer, and the GPU streams the layers in one "
    "at a time: forward from the first layer to the last, then backward from the last to the "
    "first. A parameter server keeps the weights, the gradients and the optimizer state, and "
    "runs the optimizer on the CPU while the GPU computes. A data loader packs text into "
    "batches. A worker owns the GPU and keeps nothing it cannot recompute. An orchestrator "
    "starts them all, watches them, and restarts any one that dies without losing the run. "
    "When there is no GPU, the same engine runs on the CPU, which is what you are watching now: "
    "a small model is learning to spell out these sentences one byte at a time. Its loss starts "
    "near the logarithm of 256, the cost of guessing a byte at random, and falls as it learns "
    "which letters follow which, then which words follow which. ";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct demo_opt {
    adamw_hparams hp;
};

/* The parameter server's AdamW kernel on one tensor (single-threaded here:
 * the demo's tensors are small); G0 serves as the accumulator it zeroes. */
static void demo_adamw(void *ctx, const lb_tensor *t, float *w, float *g, float *m, float *v)
{
    const struct demo_opt *o = ctx;
    adamw_tensor at = {.master = w, .m = m, .v = v, .accum = g, .w = NULL, .n = t->numel,
                       .decay = t->ndim >= 2};
    adamw_step_range(&o->hp, 1.0f, &at, 0, t->numel);
}

int cmd_demo(int argc, char **argv)
{
    static const struct option opts[] = {
        {"steps", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'o'},
        {"threads", required_argument, NULL, 'j'},
        {"seed", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int64_t steps = 150, threads = 0, seed = 1;
    const char *out = "ramtrain-demo";
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 's':
            bad = cli_int("demo", "--steps", optarg, 1, 1000000, &steps);
            break;
        case 'j':
            bad = cli_int("demo", "--threads", optarg, 0, 4096, &threads);
            break;
        case 'r':
            bad = cli_int("demo", "--seed", optarg, 0, INT64_MAX, &seed);
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            printf("usage: ramtrain demo [--steps N] [--out DIR] [--threads N] [--seed N]\n");
            return CLI_OK;
        default:
            cli_bad_option("demo", argc, argv, optind);
            return CLI_USAGE;
        }
        if (bad)
            return CLI_USAGE;
    }
    if (optind < argc) {
        cli_error("demo", "unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }

    enum { B = 8, T = 64 };
    rt_err err = {{0}};
    model_config cfg;
    mio_model m = {0};
    lstep step = {0};
    int rc = CLI_FAIL;
    if (model_config_parse(DEMO_CONFIG, "demo config", &cfg, &err) < 0 ||
        mio_alloc(&m, &cfg, &err) < 0 || lstep_init(&step, &cfg, B, T, (int)threads, &err) < 0) {
        cli_error("demo", "%s", err.msg);
        goto out;
    }
    mio_init_weights(&m, (uint64_t)seed);
    mio_zero(&m, LB_SEC_M);
    mio_zero(&m, LB_SEC_V);
    printf("demo: byte-level llama, %llu parameters, %d layers, batch %d x %d tokens, "
           "backend %s with %d threads (%.1f MiB scratch), %lld steps\n",
           (unsigned long long)model_n_params(&cfg), (int)cfg.n_layers, B, T,
           step.be->ops->name, step.be->n_threads, (double)step.be->scratch_bytes / (1 << 20),
           (long long)steps);

    const size_t text_len = sizeof DEMO_TEXT - 1;
    int32_t in[B * T], tg[B * T];
    rng_state r;
    rng_seed(&r, (uint64_t)seed);
    struct demo_opt opt = {.hp = {.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                                  .weight_decay = 0.1}};
    double t0 = now(), first = 0.0, last = 0.0;
    for (long s = 1; s <= steps; s++) {
        for (int b = 0; b < B; b++) {
            size_t start = rng_next(&r) % (text_len - T - 1);
            for (int t = 0; t < T; t++) {
                in[b * T + t] = (unsigned char)DEMO_TEXT[start + t];
                tg[b * T + t] = (unsigned char)DEMO_TEXT[start + t + 1];
            }
        }
        double lr_max = 3e-3;
        opt.hp.lr = s <= 10 ? lr_max * (double)s / 10.0 : lr_max; /* short warm-up */
        mio_zero(&m, LB_SEC_G0);
        double loss = 0.0;
        if (lstep_run(&step, &m, in, tg, 1.0f / (B * T), 1, &loss, &err) < 0) {
            cli_error("demo", "%s", err.msg);
            goto out;
        }
        loss /= B * T;
        opt.hp.step = (uint64_t)s;
        mio_for_each(&m, demo_adamw, &opt);
        if (s == 1)
            first = loss;
        last = loss;
        if (s == 1 || s % 10 == 0 || s == steps)
            printf("step %5ld  loss %.4f  %.0f tokens/s\n", s, loss,
                   (double)s * B * T / (now() - t0));
        fflush(stdout);
    }

    int e = cli_mkdir_p(out);
    if (e < 0) {
        cli_error("demo", "%s: cannot create directory: %s", out, strerror(-e));
        goto out;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    if (mio_save(&m, LB_SEC_W, path, &err) < 0) {
        cli_error("demo", "%s", err.msg);
        goto out;
    }
    snprintf(path, sizeof path, "%s/config.json", out);
    if (model_config_save(&cfg, path, &err) < 0) {
        cli_error("demo", "%s", err.msg);
        goto out;
    }
    printf("demo: loss %.4f -> %.4f; trained model written to %s (Hugging Face format)\n", first,
           last, out);
    rc = CLI_OK;
out:
    lstep_free(&step);
    mio_free(&m);
    return rc;
}
