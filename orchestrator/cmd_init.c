/*
 * ramtrain init: writes a freshly initialised model as a Hugging Face
 * checkpoint (DIR/config.json, DIR/model.safetensors, fp32).
 *
 * config.json is copied byte for byte once it has been validated, so keys
 * ramtrain does not use (token ids, torch_dtype, ...) survive.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orchestrator/cli.h"
#include "orchestrator/model_io.h"

static int copy_file(const char *src, const char *dst, rt_err *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    FILE *in = fopen(src, "rb"), *out = NULL;
    int rc = 0;
    if (in == NULL)
        return err_set(err, -errno, "%s: cannot open: %s", src, strerror(errno));
    out = fopen(tmp, "wb");
    if (out == NULL) {
        rc = err_set(err, -errno, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) {
            rc = err_set(err, -EIO, "%s: write failed", tmp);
            goto out;
        }
    if (ferror(in))
        rc = err_set(err, -EIO, "%s: read failed", src);
out:
    fclose(in);
    if (out != NULL && fclose(out) != 0 && rc == 0)
        rc = err_set(err, -EIO, "%s: write failed", tmp);
    if (rc == 0 && rename(tmp, dst) != 0)
        rc = err_set(err, -errno, "%s: cannot rename into place: %s", dst, strerror(errno));
    if (rc < 0 && out != NULL)
        unlink(tmp);
    return rc;
}

int cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"seed", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *out = NULL;
    int64_t seed = 0;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 's':
            if (cli_int("init", "--seed", optarg, 0, INT64_MAX, &seed) < 0)
                return CLI_USAGE;
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            printf("usage: ramtrain init --config CONFIG.json [--seed N] --out DIR\n");
            return CLI_OK;
        default:
            cli_bad_option("init", argc, argv, optind);
            return CLI_USAGE;
        }
    }
    if (optind < argc) {
        cli_error("init", "unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }
    if (config == NULL || out == NULL) {
        cli_error("init", "missing required option %s", config == NULL ? "--config" : "--out");
        return CLI_USAGE;
    }

    rt_err err = {{0}};
    model_config cfg;
    if (model_config_load(config, &cfg, &err) < 0) {
        cli_error("init", "%s", err.msg);
        return CLI_USAGE;
    }
    int rc = cli_mkdir_p(out);
    if (rc < 0) {
        cli_error("init", "%s: cannot create directory: %s", out, strerror(-rc));
        return CLI_FAIL;
    }
    mio_model m;
    if (mio_alloc(&m, &cfg, &err) < 0) {
        cli_error("init", "%s", err.msg);
        return CLI_FAIL;
    }
    mio_init_weights(&m, (uint64_t)seed);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    rc = mio_save(&m, LB_SEC_W, path, &err);
    mio_free(&m);
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/config.json", out);
        rc = copy_file(config, path, &err);
    }
    if (rc < 0) {
        cli_error("init", "%s", err.msg);
        return CLI_FAIL;
    }
    printf("initialised %s model with %llu parameters (seed %lld) in %s\n", cfg.model_type,
           (unsigned long long)model_n_params(&cfg), (long long)seed, out);
    return CLI_OK;
}
