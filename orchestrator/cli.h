/*
 * cli: what the ramtrain subcommands share: exit codes, option parsing
 * helpers and error printing. Every error goes to stderr as one line
 * "ramtrain <command>: <message>"; nothing here aborts.
 */
#ifndef RAMTRAIN_ORCH_CLI_H
#define RAMTRAIN_ORCH_CLI_H

#include <stdint.h>

/* Exit codes the orchestrator and scripts rely on. */
enum {
    CLI_OK = 0,
    CLI_FAIL = 1,   /* the command failed (I/O, out of memory, ...) */
    CLI_USAGE = 2,  /* bad input: options, files, configs; retrying will not help */
};

/* Prints "ramtrain <cmd>: <fmt...>" and a newline to stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses a decimal integer option value within [lo, hi]; prints an error
 * naming the option and returns -1 when it is not one. */
int cli_int(const char *cmd, const char *opt, const char *text, int64_t lo, int64_t hi,
            int64_t *out);

/* Creates dir and its missing parents (mkdir -p); 0 or a negative errno. */
int cli_mkdir_p(const char *dir);

/* Reports an option getopt_long rejected (unknown, or missing its value). */
void cli_bad_option(const char *cmd, int argc, char **argv, int optopt_seen);

typedef int (*cli_command_fn)(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_clean(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_restart(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);

#endif
