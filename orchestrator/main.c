/*
 * ramtrain: the command-line entry point. Dispatches to one subcommand per
 * file (cmd_*.c). The services and the training supervisor (`ramtrain run`)
 * join here as they land.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "orchestrator/cli.h"

static const struct command {
    const char *name;
    cli_command_fn fn;
    const char *usage;
} COMMANDS[] = {
    {"run", cmd_run,
     "run [CONFIG.yaml] [--run-dir DIR] [--set key=value]... [--resume] [--trace FILE]"},
    {"status", cmd_status, "status [--run-dir DIR]"},
    {"restart", cmd_restart, "restart paramserver|dataloader|worker [--run-dir DIR]"},
    {"stop", cmd_stop, "stop [--run-dir DIR] [--no-wait]"},
    {"init", cmd_init, "init --config CONFIG.json [--seed N] --out DIR"},
    {"grad", cmd_grad,
     "grad --model DIR --tokens FILE --batch B --seq T --out GRADS.safetensors [--threads N]"},
    {"demo", cmd_demo, "demo [--steps N] [--out DIR] [--threads N]"},
    {"clean", cmd_clean, "clean --run-id ID [--spill-dir DIR]"},
    {"data", cmd_data,
     "data prepare --data DATA.yaml --out DIR [--dedup none|exact|near] [--threshold 0.8] [--num-perm 128]\n"
     "                     [--ngram 5] [--shard-tokens 100000000] [--threads N]"},
    {"tokenize", cmd_tokenize, "tokenize [--tokenizer FILE] [--decode] [--no-special]  (stdin -> stdout, one line each)"},
    {"eval", cmd_eval,
     "eval --model DIR --data DATA.yaml|FILE [--seq-len T] [--batch B] [--max-batches N]\n"
     "                     [--tokenizer FILE] [--threads N]"},
    {"generate", cmd_generate,
     "generate --model DIR --prompt TEXT [--max-new-tokens N] [--temperature X] [--top-k K]\n"
     "                     [--top-p P] [--seed N] [--tokenizer FILE] [--threads N] [--ids]"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: ramtrain <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  ramtrain %s\n", COMMANDS[i].usage);
}

void cli_error(const char *cmd, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "ramtrain %s: %s\n", cmd, msg);
}

int cli_int(const char *cmd, const char *opt, const char *text, int64_t lo, int64_t hi,
            int64_t *out)
{
    char *end;
    long long v = strtoll(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v < lo || v > hi) {
        cli_error(cmd, "option %s: \"%s\" is not an integer in [%lld, %lld]", opt, text,
                  (long long)lo, (long long)hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_mkdir_p(const char *dir)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

void cli_bad_option(const char *cmd, int argc, char **argv, int optind_seen)
{
    const char *arg = optind_seen - 1 < argc && optind_seen >= 1 ? argv[optind_seen - 1] : "?";
    cli_error(cmd, "unknown option or missing value: '%s' (see 'ramtrain --help')", arg);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0)
            return COMMANDS[i].fn(argc - 1, argv + 1);
    if (argv[1][0] == '-')
        fprintf(stderr, "ramtrain: unknown option '%s' (a command comes first)\n", argv[1]);
    else
        fprintf(stderr, "ramtrain: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
