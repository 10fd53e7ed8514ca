/*
 * ramtrain grad: loss and gradients of one batch, written as safetensors.
 *
 * The tokens file is raw little-endian uint32: B rows of T+1 ids; row r's
 * inputs are its first T ids and its targets its last T. The loss printed is
 * the mean cross-entropy over the B*T targets and the gradients are those of
 * that mean, under the weights' Hugging Face names. Everything is validated
 * before any compute, and the output is written atomically, so a failing
 * call never touches an existing --out file.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <endian.h>
#include <string.h>

#include "orchestrator/cli.h"
#include "orchestrator/local_step.h"
#include "orchestrator/model_io.h"

/* Reads B*(T+1) uint32 ids from path into inputs/targets [B*T]. */
static int read_tokens(const char *path, int B, int T, int64_t vocab, int32_t *inputs,
                       int32_t *targets, rt_err *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return err_set(err, -errno, "%s: cannot open tokens file: %s", path, strerror(errno));
    uint32_t *row = malloc((size_t)(T + 1) * sizeof *row);
    int rc = 0;
    if (row == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        rc = err_set(err, -errno, "%s: cannot seek: %s", path, strerror(errno));
        goto out;
    }
    long size = ftell(f);
    long want = (long)B * (T + 1) * 4;
    if (size != want) {
        rc = err_set(err, -EINVAL,
                     "%s: size is %ld bytes, expected B*(T+1)*4 = %d*%d*4 = %ld (uint32 token ids)",
                     path, size, B, T + 1, want);
        goto out;
    }
    rewind(f);
    for (int r = 0; r < B; r++) {
        if (fread(row, sizeof *row, (size_t)T + 1, f) != (size_t)T + 1) {
            rc = err_set(err, -EIO, "%s: short read", path);
            goto out;
        }
        for (int t = 0; t <= T; t++) {
            uint32_t id = le32toh(row[t]);
            if ((int64_t)id >= vocab) {
                rc = err_set(err, -EINVAL,
                             "%s: token id %u at row %d, position %d is >= vocab_size %lld", path,
                             id, r, t, (long long)vocab);
                goto out;
            }
            if (t < T)
                inputs[r * T + t] = (int32_t)id;
            if (t > 0)
                targets[r * T + t - 1] = (int32_t)id;
        }
    }
out:
    free(row);
    fclose(f);
    return rc;
}

int cmd_grad(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"tokens", required_argument, NULL, 't'},
        {"batch", required_argument, NULL, 'b'},
        {"seq", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'o'},
        {"threads", required_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *model = NULL, *tokens = NULL, *out = NULL;
    int64_t B = 0, T = 0, threads = 0;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 't':
            tokens = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'b':
            bad = cli_int("grad", "--batch", optarg, 1, 1 << 20, &B);
            break;
        case 's':
            bad = cli_int("grad", "--seq", optarg, 1, 1 << 20, &T);
            break;
        case 'j':
            bad = cli_int("grad", "--threads", optarg, 0, 4096, &threads);
            break;
        case 'h':
            printf("usage: ramtrain grad --model DIR --tokens FILE --batch B --seq T "
                   "--out GRADS.safetensors [--threads N]\n");
            return CLI_OK;
        default:
            cli_bad_option("grad", argc, argv, optind);
            return CLI_USAGE;
        }
        if (bad)
            return CLI_USAGE;
    }
    if (optind < argc) {
        cli_error("grad", "unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }
    const char *missing = model == NULL ? "--model" : tokens == NULL ? "--tokens"
                        : B == 0 ? "--batch" : T == 0 ? "--seq" : out == NULL ? "--out" : NULL;
    if (missing != NULL) {
        cli_error("grad", "missing required option %s", missing);
        return CLI_USAGE;
    }
    if (B * T > (1 << 24)) {
        cli_error("grad", "--batch %lld x --seq %lld is more than %d tokens", (long long)B,
                  (long long)T, 1 << 24);
        return CLI_USAGE;
    }

    rt_err err = {{0}};
    model_config cfg;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", model);
    if (model_config_load(path, &cfg, &err) < 0) {
        cli_error("grad", "%s", err.msg);
        return CLI_USAGE;
    }
    int N = (int)(B * T), rc = CLI_USAGE;
    int32_t *inputs = malloc((size_t)N * sizeof *inputs);
    int32_t *targets = malloc((size_t)N * sizeof *targets);
    mio_model m = {0};
    lstep step = {0};
    if (inputs == NULL || targets == NULL) {
        cli_error("grad", "out of memory");
        rc = CLI_FAIL;
        goto out;
    }
    int e;
    if ((e = read_tokens(tokens, (int)B, (int)T, cfg.vocab, inputs, targets, &err)) < 0 ||
        (e = mio_alloc(&m, &cfg, &err)) < 0 || (e = mio_load(&m, model, &err)) < 0 ||
        (e = lstep_init(&step, &cfg, (int)B, (int)T, (int)threads, &err)) < 0) {
        cli_error("grad", "%s", err.msg);
        rc = e == -ENOMEM || e == -EIO ? CLI_FAIL : CLI_USAGE; /* the rest is bad input */
        goto out;
    }
    double loss = 0.0;
    if (lstep_run(&step, &m, inputs, targets, 1.0f / (float)N, 1, &loss, &err) < 0 ||
        mio_save(&m, LB_SEC_G0, out, &err) < 0) {
        cli_error("grad", "%s", err.msg);
        rc = CLI_FAIL;
        goto out;
    }
    printf("loss %.9g\n", loss / N);
    rc = CLI_OK;
out:
    lstep_free(&step);
    mio_free(&m);
    free(inputs);
    free(targets);
    return rc;
}
