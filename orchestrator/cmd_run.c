/*
 * ramtrain run: trains a model with the three services (DESIGN.md §1).
 *
 *   ramtrain run [CONFIG.yaml] [--run-dir DIR] [--set key=value]... [--resume] [--trace FILE]
 *
 * Order of work, so that bad input changes nothing: parse the options, load
 * and validate the config (with the --set overrides), check the data files,
 * the resume source and the service binaries, check that DIR is not in use
 * (its lock) and not another run's; only then create DIR, take its lock,
 * write config.yaml, model/config.json and run_id, and hand over to the
 * supervisor (supervisor.h). Every error before that point prints
 * "ramtrain run: <message>" and exits 2 (bad input) without touching
 * anything.
 *
 * With no CONFIG the embedded default run is used (rc_default_yaml): a
 * generated corpus is written to DIR/data/corpus.txt, and when the run has
 * finished a sample from the trained model is printed (ramtrain generate).
 *
 * Resuming (--resume): DIR keeps its run id and config.yaml (--set may still
 * change keys, train.steps say). The paramserver re-attaches to the run's
 * layer blocks when they are still in shared memory (the orchestrator was
 * killed), else it is started from the newest complete checkpoint in
 * DIR/checkpoints; with neither there is nothing to resume.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orchestrator/cli.h"
#include "orchestrator/corpus.h"
#include "orchestrator/progress.h"
#include "orchestrator/run_dir.h"
#include "orchestrator/supervisor.h"
#include "services/common/log.h"
#include "services/common/run_config.h"
#include "storage/blockstore.h"
#include "storage/checkpoint.h"

#define RUN_MAX_SETS 256
#define RUN_HEARTBEAT_MS 1000u
#define RUN_CORPUS_BYTES (2u << 20)          /* the default run's corpus: 2 MiB of stories */
#define RUN_SAMPLE_PROMPT "Once upon a time"
#define RUN_BIN_ENV "RAMTRAIN_BIN_DIR"      /* where the service binaries are, when set */

static const char *const SVC_BIN[SUP_N_SVC] = {"ramtrain-paramserver", "ramtrain-dataloader",
                                               "ramtrain-worker"};

/* A command line under construction; every string malloc'd. */
typedef struct argvec {
    char *v[96];
    int n;
    bool oom;
} argvec;

static void av_add(argvec *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void av_add(argvec *a, const char *fmt, ...)
{
    if (a->n >= (int)(sizeof a->v / sizeof a->v[0]) - 1) {
        a->oom = true;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&a->v[a->n], fmt, ap) < 0)
        a->oom = true;
    else
        a->n++;
    va_end(ap);
    a->v[a->n] = NULL;
}

static void av_free(argvec *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    a->n = 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ramtrain run [CONFIG.yaml] [--run-dir DIR] [--set key=value]... [--resume]\n"
            "                    [--trace FILE]\n"
            "  CONFIG.yaml     the run config (no CONFIG: the embedded default run, a small\n"
            "                  byte-level model on a generated corpus)\n"
            "  --run-dir DIR   run directory (default runs/run-YYYYmmdd-HHMMSS, and runs/latest)\n"
            "  --set KEY=VAL   override a config key, e.g. --set train.steps=50 (repeatable)\n"
            "  --resume        continue the run in DIR (default runs/latest) from where it stopped\n"
            "  --trace FILE    the worker writes a trace of its pipeline to FILE\n"
            "While it runs: ramtrain status|stop|restart SERVICE [--run-dir DIR]\n");
}

/* Directory holding the service binaries: $RAMTRAIN_BIN_DIR, else that of
 * the running ramtrain. */
static int bin_dir(char *out, size_t len, rt_err *err)
{
    const char *env = getenv(RUN_BIN_ENV);
    if (env != NULL && env[0] != '\0')
        return rd_abspath(env, out, len, err);
    char self[RD_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0)
        return err_set(err, -errno, "cannot read /proc/self/exe: %s", strerror(errno));
    self[n] = '\0';
    snprintf(out, len, "%s", dirname(self));
    return 0;
}

/* Every data source (file, directory or glob) and the tokenizer must exist:
 * the config loader does not open them, and a data loader failing at start
 * is a poorer message than this. */
static int check_data(const run_config *c, rt_err *err)
{
    for (int i = 0; i < c->data->n_sources; i++) {
        const char *p = c->data->sources[i].path;
        struct stat st;
        if (strpbrk(p, "*?[") != NULL) {
            glob_t g;
            int rc = glob(p, GLOB_NOSORT, NULL, &g);
            globfree(&g);
            if (rc != 0)
                return err_set(err, -ENOENT, "%s: data.sources[%d].path: no file matches %s",
                               c->origin, i, p);
        } else if (stat(p, &st) != 0) {
            return err_set(err, -errno, "%s: data.sources[%d].path: %s: %s", c->origin, i, p,
                           strerror(errno));
        }
    }
    struct stat st;
    if (c->data->tokenizer != NULL && stat(c->data->tokenizer, &st) != 0)
        return err_set(err, -errno, "%s: data.tokenizer: %s: %s", c->origin, c->data->tokenizer,
                       strerror(errno));
    return 0;
}

static const char *spill_dir(const run_config *c, const char *dir, char *buf, size_t len)
{
    if (c->spill_dir != NULL)
        return c->spill_dir;
    snprintf(buf, len, "%s/spill", dir);
    return buf;
}

/* The three command lines. resume_from: checkpoint root for a paramserver
 * that has no blocks to attach to, or NULL. */
static void build_argv(const run_config *c, const char *bins, const char *dir, const char *run_id,
                       const char *resume_from, const char *trace, argvec av[SUP_N_SVC])
{
    char spill[RD_PATH_MAX + 16];
    argvec *ps = &av[SUP_PARAMSERVER], *dl = &av[SUP_DATALOADER], *wk = &av[SUP_WORKER];
    for (int i = 0; i < SUP_N_SVC; i++) {
        av_add(&av[i], "%s/%s", bins, SVC_BIN[i]);
        av_add(&av[i], "--run-id");
        av_add(&av[i], "%s", run_id);
        av_add(&av[i], "--run-dir");
        av_add(&av[i], "%s", dir);
        av_add(&av[i], "--heartbeat-ms");
        av_add(&av[i], "%u", RUN_HEARTBEAT_MS);
    }
    if (resume_from != NULL) {
        av_add(ps, "--resume-from");
        av_add(ps, "%s", resume_from);
    } else if (c->model_path != NULL) {
        av_add(ps, "--model");
        av_add(ps, "%s", c->model_path);
    } else {
        av_add(ps, "--config");
        av_add(ps, "%s/model/config.json", dir);
        av_add(ps, "--seed");
        av_add(ps, "%llu", (unsigned long long)c->model_seed);
    }
    av_add(ps, "--compute");
    av_add(ps, "%s", c->bf16 ? "bf16" : "f32");
    const struct { const char *opt; double v; } dbl[] = {
        {"--lr", c->lr}, {"--beta1", c->beta1}, {"--beta2", c->beta2}, {"--eps", c->eps},
        {"--weight-decay", c->weight_decay}, {"--min-lr", c->min_lr}};
    for (size_t i = 0; i < sizeof dbl / sizeof dbl[0]; i++) {
        char num[40];
        snprintf(num, sizeof num, "%.15g", dbl[i].v); /* the shortest text that reads back */
        if (strtod(num, NULL) != dbl[i].v)
            snprintf(num, sizeof num, "%.17g", dbl[i].v);
        av_add(ps, "%s", dbl[i].opt);
        av_add(ps, "%s", num);
    }
    av_add(ps, "--schedule");
    av_add(ps, "%s", rc_schedule_name(c->schedule));
    av_add(ps, "--warmup-steps");
    av_add(ps, "%llu", (unsigned long long)c->warmup);
    av_add(ps, "--total-steps");
    av_add(ps, "%llu", (unsigned long long)c->steps);
    av_add(ps, "--micro-batches");
    av_add(ps, "%u", c->grad_accum);
    if (c->ps_threads > 0) {
        av_add(ps, "--threads");
        av_add(ps, "%u", c->ps_threads);
    }
    if (c->ram_budget > 0) {
        av_add(ps, "--ram-budget");
        av_add(ps, "%llu", (unsigned long long)c->ram_budget);
    }
    av_add(ps, "--spill-dir");
    av_add(ps, "%s", spill_dir(c, dir, spill, sizeof spill));
    for (argvec *a = dl; a <= wk; a++) {
        av_add(a, "--config");
        av_add(a, "%s/config.yaml", dir);
    }
    if (trace != NULL) {
        av_add(wk, "--trace");
        av_add(wk, "%s", trace);
    }
}

/* Prints a sample of the trained model: `ramtrain generate` on it. */
static void print_sample(const char *ckpt)
{
    char *const args[] = {"/proc/self/exe", "generate", "--model", (char *)ckpt, "--prompt",
                          RUN_SAMPLE_PROMPT, "--max-new-tokens", "200", "--temperature", "0.8",
                          "--top-k", "40", "--seed", "1", NULL};
    printf("\nsample (ramtrain generate --model %s --prompt \"%s\" --max-new-tokens 200 "
           "--temperature 0.8 --top-k 40 --seed 1):\n", ckpt, RUN_SAMPLE_PROMPT);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        execv("/proc/self/exe", args);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        fprintf(stderr, "ramtrain run: could not generate a sample (see above)\n");
}

/* Fills a run directory that rd_make_layout made and whose lock is held: a
 * new run's id (and runs/latest for a default directory), the resolved
 * config.yaml, model/config.json and, for the default run, its corpus when
 * it is not there yet. run_id[RD_RUN_ID_LEN] is set when new_run. */
static int write_run_files(const run_config *c, const char *dir, char *run_id, bool new_run,
                           bool default_path, const char *corpus, rt_err *err)
{
    char path[RD_PATH_MAX + 64];
    int rc;
    if (new_run) {
        snprintf(path, sizeof path, "%s/run_id", dir);
        if ((rc = rd_run_id_new(dir, run_id, err)) < 0 ||
            (rc = rd_write_file(path, run_id, strlen(run_id), err)) < 0)
            return rc;
        rt_err e2 = {{0}};
        if (default_path && rd_latest_update(dir, &e2) < 0)
            fprintf(stderr, "ramtrain run: warning: %s\n", e2.msg);
    }
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    if ((rc = rc_write(c, path, err)) < 0)
        return rc;
    snprintf(path, sizeof path, "%s/model/config.json", dir);
    if ((rc = rd_write_file(path, c->model_config_json, strlen(c->model_config_json), err)) < 0)
        return rc;
    struct stat st;
    if (corpus != NULL && stat(corpus, &st) != 0)
        return corpus_write(corpus, RUN_CORPUS_BYTES, 0, err);
    return 0;
}

/* Prints how the run ended; returns the exit code. */
static int report(const sup_result *res, const char *run_id, const char *dir, uint64_t total,
                  bool have_loss, double loss, double tps)
{
    char root[RD_PATH_MAX + 32], step_dir[CKPT_PATH_MAX] = "", wall[32], loss_s[32] = "-";
    uint64_t step = 0;
    rt_err err = {{0}};
    snprintf(root, sizeof root, "%s/checkpoints", dir);
    bool have_ckpt = ckpt_latest(root, UINT64_MAX, &step, step_dir, sizeof step_dir, &err) == 0;
    prog_fmt_duration(res->wall_s, wall, sizeof wall);
    if (have_loss)
        snprintf(loss_s, sizeof loss_s, "%.4f", loss);
    switch (res->outcome) {
    case SUP_DONE:
    case SUP_STOPPED:
        if (res->outcome == SUP_DONE)
            printf("run %s finished: %llu steps, final loss %s, %.0f tokens/s, wall time %s\n",
                   run_id, (unsigned long long)res->steps_committed, loss_s, tps, wall);
        else
            printf("run %s stopped after %llu of %llu steps: last loss %s, %.0f tokens/s, wall "
                   "time %s\n", run_id, (unsigned long long)res->steps_committed,
                   (unsigned long long)total, loss_s, tps, wall);
        if (have_ckpt)
            printf("%scheckpoint: %s\n", res->outcome == SUP_DONE ? "final " : "", step_dir);
        else
            printf("no checkpoint was written\n");
        if (res->outcome == SUP_STOPPED)
            printf("continue with: ramtrain run --resume --run-dir %s\n", dir);
        fflush(stdout);
        return CLI_OK;
    case SUP_FAILED:
    case SUP_BAD_INPUT:
        cli_error("run", "%s", res->message);
        break;
    case SUP_INTERRUPTED:
        cli_error("run", "stopped on a second %s; %llu of %llu steps were committed",
                  res->signal == SIGINT ? "SIGINT" : "SIGTERM",
                  (unsigned long long)res->steps_committed, (unsigned long long)total);
        break;
    }
    if (have_ckpt)
        fprintf(stderr, "ramtrain run: the newest checkpoint is %s (ramtrain run --resume "
                "--run-dir %s continues from it)\n", step_dir, dir);
    return res->outcome == SUP_BAD_INPUT ? CLI_USAGE
           : res->outcome == SUP_INTERRUPTED ? 128 + res->signal
                                             : CLI_FAIL;
}

typedef struct run_opts {
    const char *config, *run_dir, *trace;
    char *sets[RUN_MAX_SETS];
    int n_sets;
    bool resume;
} run_opts;

static int parse_opts(int argc, char **argv, run_opts *ro)
{
    static const struct option opts[] = {
        {"run-dir", required_argument, 0, 'd'}, {"set", required_argument, 0, 's'},
        {"resume", no_argument, 0, 'r'},        {"trace", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': ro->run_dir = optarg; break;
        case 's':
            if (ro->n_sets == RUN_MAX_SETS) {
                cli_error("run", "more than %d --set options", RUN_MAX_SETS);
                return CLI_USAGE;
            }
            if (strchr(optarg, '=') == NULL) {
                cli_error("run", "--set %s: expected key=value (e.g. --set train.steps=50)",
                          optarg);
                return CLI_USAGE;
            }
            ro->sets[ro->n_sets++] = optarg;
            break;
        case 'r': ro->resume = true; break;
        case 't': ro->trace = optarg; break;
        case 'h': usage(stdout); return -1;
        default: cli_bad_option("run", argc, argv, optind); return CLI_USAGE;
        }
    }
    if (optind < argc)
        ro->config = argv[optind++];
    if (optind < argc) {
        cli_error("run", "unexpected argument '%s' (one CONFIG at most)", argv[optind]);
        return CLI_USAGE;
    }
    if (ro->resume && ro->config != NULL) {
        cli_error("run", "--resume continues with the run directory's config.yaml: drop %s "
                  "(change keys with --set)", ro->config);
        return CLI_USAGE;
    }
    return 0;
}

/* Where a resumed paramserver starts from: *from NULL when the run's blocks
 * are still in shared memory, else the checkpoint root (in ckpt_root). Refuses a run with
 * neither, or one whose newest checkpoint already has every step. */
static int resume_source(const run_config *c, const char *dir, const char *run_id,
                         char *ckpt_root, size_t len, const char **from, rt_err *err)
{
    *from = NULL;
    if (bs_block_exists(run_id, 0, 0))
        return 0;
    snprintf(ckpt_root, len, "%s/checkpoints", dir);
    uint64_t step;
    char step_dir[CKPT_PATH_MAX];
    rt_err e2 = {{0}};
    if (ckpt_latest(ckpt_root, UINT64_MAX, &step, step_dir, sizeof step_dir, &e2) < 0)
        return err_set(err, -ENOENT, "nothing to resume in %s: run %s has no layer blocks in "
                       "shared memory and %s holds no complete checkpoint", dir, run_id,
                       ckpt_root);
    if (step >= c->steps)
        return err_set(err, -EINVAL, "run %s is complete: its checkpoint %s has all %llu steps "
                       "(raise train.steps with --set train.steps=N to train further)",
                       run_id, step_dir, (unsigned long long)c->steps);
    *from = ckpt_root;
    return 0;
}

int cmd_run(int argc, char **argv)
{
    log_init("orchestrator", LOG_LEVEL_INFO);
    run_opts ro = {0};
    int prc = parse_opts(argc, argv, &ro);
    if (prc != 0)
        return prc < 0 ? CLI_OK : prc;

    rt_err err = {{0}};
    char dir[RD_PATH_MAX], rel[RD_PATH_MAX], bins[RD_PATH_MAX];
    bool default_path = false;
    /* the run directory, absolute; nothing is created yet */
    if (ro.resume) {
        const char *d = ro.run_dir != NULL ? ro.run_dir : RD_RUNS_DIR "/" RD_LATEST;
        if (realpath(d, dir) == NULL) {
            cli_error("run", "--resume: run directory %s: %s", d, strerror(errno));
            return CLI_USAGE;
        }
    } else {
        if (ro.run_dir == NULL) {
            if (rd_default_path(rel, sizeof rel, &err) < 0) {
                cli_error("run", "%s", err.msg);
                return CLI_USAGE;
            }
            default_path = true;
        }
        if (rd_abspath(ro.run_dir != NULL ? ro.run_dir : rel, dir, sizeof dir, &err) < 0) {
            cli_error("run", "%s", err.msg);
            return CLI_USAGE;
        }
    }
    if (strlen(dir) + strlen("/sock/paramserver") > RD_SOCK_PATH_MAX) {
        cli_error("run", "run directory %s: its path is too long for the services' sockets "
                  "(%zu bytes; at most %zu): choose a shorter --run-dir", dir, strlen(dir),
                  (size_t)RD_SOCK_PATH_MAX - strlen("/sock/paramserver"));
        return CLI_USAGE;
    }
    pid_t holder;
    if (rd_lock_probe(dir, &holder, &err) < 0) {
        cli_error("run", "%s", err.msg);
        return CLI_USAGE;
    }
    char run_id[RD_RUN_ID_LEN + 64] = "";
    if (ro.resume) {
        if (rd_run_id_read(dir, run_id, sizeof run_id, &err) < 0) {
            cli_error("run", "--resume: %s", err.msg);
            return CLI_USAGE;
        }
    } else if (rd_nonempty(dir)) {
        cli_error("run", "run directory %s is not empty: use --resume to continue the run in it, "
                  "or choose another --run-dir", dir);
        return CLI_USAGE;
    }

    /* the config */
    run_config *c = NULL;
    char path[RD_PATH_MAX + 64], corpus[RD_PATH_MAX + 64];
    bool is_default = false;
    snprintf(corpus, sizeof corpus, "%s/data/corpus.txt", dir);
    int rc;
    if (ro.resume) {
        snprintf(path, sizeof path, "%s/config.yaml", dir);
        rc = rc_load_file(path, ro.sets, ro.n_sets, &c, &err);
        is_default = rc == 0 && c->data->n_sources == 1 &&
                     strcmp(c->data->sources[0].path, corpus) == 0;
    } else if (ro.config != NULL) {
        rc = rc_load_file(ro.config, ro.sets, ro.n_sets, &c, &err);
    } else {
        char text[8192];
        int n = rc_default_yaml(corpus, text, sizeof text);
        rc = n < 0 ? err_set(&err, n, "the default config: %s", strerror(-n))
                   : rc_load_text(text, (size_t)n, "<default>", ".", ro.sets, ro.n_sets, &c,
                                  &err);
        is_default = true;
    }
    if (rc < 0) {
        cli_error("run", "%s", err.msg);
        return CLI_USAGE;
    }
    int code = CLI_USAGE;
    argvec av[SUP_N_SVC];
    memset(av, 0, sizeof av);
    int lock_fd = -1;
    prog *pg = NULL;
    char ckpt_root[RD_PATH_MAX + 32];
    const char *resume_from = NULL;
    if (c->schedule != RC_SCHED_CONSTANT && c->steps <= c->warmup) {
        cli_error("run", "%s: train.schedule %s needs train.steps (%llu) greater than "
                  "train.warmup (%llu)", c->origin, rc_schedule_name(c->schedule),
                  (unsigned long long)c->steps, (unsigned long long)c->warmup);
        goto out;
    }
    if (!(is_default && !ro.resume) && check_data(c, &err) < 0) {
        cli_error("run", "%s", err.msg);
        goto out;
    }
    if (ro.resume &&
        resume_source(c, dir, run_id, ckpt_root, sizeof ckpt_root, &resume_from, &err) < 0) {
        cli_error("run", "--resume: %s", err.msg);
        goto out;
    }
    if (bin_dir(bins, sizeof bins, &err) < 0) {
        cli_error("run", "%s", err.msg);
        goto out;
    }
    for (int i = 0; i < SUP_N_SVC; i++) {
        snprintf(path, sizeof path, "%s/%s", bins, SVC_BIN[i]);
        if (access(path, X_OK) != 0) {
            cli_error("run", "cannot run the %s service: %s: %s (the services are looked for "
                      "next to ramtrain, or in $%s)", sup_svc_name(i), path, strerror(errno),
                      RUN_BIN_ENV);
            code = CLI_FAIL;
            goto out;
        }
    }

    /* from here on the run directory is ours */
    code = CLI_FAIL;
    if ((rc = rd_make_layout(dir, &err)) < 0 || (rc = rd_lock_take(dir, &lock_fd, &err)) < 0 ||
        (rc = write_run_files(c, dir, run_id, !ro.resume, default_path,
                              is_default ? corpus : NULL, &err)) < 0) {
        cli_error("run", "%s", err.msg);
        code = rc == -EBUSY ? CLI_USAGE : CLI_FAIL; /* another run took the lock first */
        goto out;
    }
    if (prog_open(dir, c->steps, isatty(STDERR_FILENO), &pg, &err) < 0) {
        cli_error("run", "%s", err.msg);
        goto out;
    }

    build_argv(c, bins, dir, run_id, resume_from, ro.trace, av);
    if (av[0].oom || av[1].oom || av[2].oom) {
        cli_error("run", "out of memory");
        goto out;
    }
    char spill[RD_PATH_MAX + 16];
    sup_opts so = {.run_id = run_id, .run_dir = dir,
                   .spill_dir = spill_dir(c, dir, spill, sizeof spill),
                   .total_steps = c->steps, .heartbeat_ms = RUN_HEARTBEAT_MS, .prog = pg,
                   .argv = {av[0].v, av[1].v, av[2].v}};
    prog_log(pg, LOG_LEVEL_INFO, "run %s in %s: %llu steps of %lld x %lld tokens%s%s; logs in "
             "%s/logs", run_id, dir, (unsigned long long)c->steps, (long long)c->batch_size,
             (long long)c->seq_len, ro.resume ? ", resumed" : "",
             resume_from != NULL ? " from the newest checkpoint" : "", dir);
    sup_result *res = calloc(1, sizeof *res);
    if (res == NULL) {
        cli_error("run", "out of memory");
        goto out;
    }
    if (sup_run(&so, res, &err) < 0) {
        cli_error("run", "%s", err.msg);
        free(res);
        goto out;
    }
    double loss = 0;
    bool have_loss = prog_last_loss(pg, &loss);
    double tps = prog_tokens_per_s(pg);
    prog_close(pg);
    pg = NULL;
    code = report(res, run_id, dir, c->steps, have_loss, loss, tps);
    if (res->outcome == SUP_DONE && is_default) {
        close(lock_fd); /* the run is over: `ramtrain stop` and the next run need not wait */
        lock_fd = -1;
        uint64_t step;
        char step_dir[CKPT_PATH_MAX];
        snprintf(ckpt_root, sizeof ckpt_root, "%s/checkpoints", dir);
        if (ckpt_latest(ckpt_root, UINT64_MAX, &step, step_dir, sizeof step_dir, &err) == 0)
            print_sample(step_dir);
    }
    free(res);
out:
    prog_close(pg);
    for (int i = 0; i < SUP_N_SVC; i++)
        av_free(&av[i]);
    if (lock_fd >= 0)
        close(lock_fd);
    rc_free(c);
    return code;
}
