/*
 * ramtrain status | restart SERVICE | stop: talk to the orchestrator of a
 * running `ramtrain run` through its control socket (DIR/sock/control) and
 * print its answer.
 *
 * A run is live when its orchestrator holds DIR/lock (run_dir.h); without
 * that there is nobody to ask, and the command says so (exit 1) instead of
 * waiting on a socket nobody reads. `stop` then waits for the lock to be
 * released — the orchestrator has finished the step, written the checkpoint
 * and reaped its services — unless --no-wait.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "orchestrator/cli.h"
#include "orchestrator/run_dir.h"
#include "services/common/bus.h"
#include "services/common/envelope.h"

#define CTL_TIMEOUT_MS 10000

typedef struct ctl_opts {
    const char *cmd;                   /* "status", "restart", "stop" */
    const char *run_dir;
    const char *service;
    bool no_wait;
} ctl_opts;

static int parse(int argc, char **argv, ctl_opts *co)
{
    static const struct option opts[] = {
        {"run-dir", required_argument, 0, 'd'},
        {"no-wait", no_argument, 0, 'n'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    bool is_stop = strcmp(co->cmd, "stop") == 0, is_restart = strcmp(co->cmd, "restart") == 0;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': co->run_dir = optarg; break;
        case 'n':
            if (!is_stop) {
                cli_error(co->cmd, "--no-wait is an option of ramtrain stop");
                return CLI_USAGE;
            }
            co->no_wait = true;
            break;
        case 'h':
            printf("usage: ramtrain %s%s [--run-dir DIR]%s\n", co->cmd,
                   is_restart ? " paramserver|dataloader|worker" : "",
                   is_stop ? " [--no-wait]" : "");
            return -1;
        default: cli_bad_option(co->cmd, argc, argv, optind); return CLI_USAGE;
        }
    }
    if (is_restart && optind < argc)
        co->service = argv[optind++];
    if (optind < argc) {
        cli_error(co->cmd, "unexpected argument '%s'", argv[optind]);
        return CLI_USAGE;
    }
    if (is_restart && co->service == NULL) {
        cli_error(co->cmd, "name the service to restart: paramserver, dataloader or worker");
        return CLI_USAGE;
    }
    if (is_restart && strcmp(co->service, "paramserver") != 0 &&
        strcmp(co->service, "dataloader") != 0 && strcmp(co->service, "worker") != 0) {
        cli_error(co->cmd, "unknown service '%s' (paramserver, dataloader or worker)",
                  co->service);
        return CLI_USAGE;
    }
    if (co->run_dir == NULL)
        co->run_dir = RD_RUNS_DIR "/" RD_LATEST;
    return 0;
}

/* Sends Control{cmd, service} and prints the reply. */
static int ask(const ctl_opts *co, const char *run_id, bool *ok)
{
    char ep[RD_PATH_MAX + 32];
    snprintf(ep, sizeof ep, "ipc://%s/sock/control", co->run_dir);
    void *zctx = zmq_ctx_new();
    bus_client bc = {.run_id = run_id};
    rt_err err = {{0}};
    Ramtrain__Envelope *reply = NULL;
    int code = CLI_FAIL;
    if (zctx == NULL || bus_client_connect(&bc, zctx, ep, &err) < 0) {
        cli_error(co->cmd, "%s", zctx == NULL ? "cannot create a ZeroMQ context" : err.msg);
        goto out;
    }
    Ramtrain__Envelope e;
    Ramtrain__Control m = RAMTRAIN__CONTROL__INIT;
    char sender[32];
    snprintf(sender, sizeof sender, "ramtrain-%s", co->cmd);
    env_init(&e, run_id, sender, (uint64_t)getpid());
    m.command = (char *)co->cmd;
    m.service = (char *)co->service;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_CONTROL;
    e.control = &m;
    int rc = bus_client_call(&bc, &e, CTL_TIMEOUT_MS, &reply, &err);
    if (rc < 0) {
        cli_error(co->cmd, "%s", err.msg);
    } else if (rc == 0) {
        cli_error(co->cmd, "the orchestrator of %s did not answer within %d s", co->run_dir,
                  CTL_TIMEOUT_MS / 1000);
    } else if (reply->body_case == RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY) {
        cli_error(co->cmd, "the orchestrator refused: %s",
                  reply->error_reply->message ? reply->error_reply->message : "(no message)");
    } else if (reply->body_case != RAMTRAIN__ENVELOPE__BODY_CONTROL_REPLY) {
        cli_error(co->cmd, "unexpected %s reply from the orchestrator", env_body_name(reply));
    } else {
        const Ramtrain__ControlReply *r = reply->control_reply;
        *ok = r->has_ok && r->ok;
        if (*ok)
            printf("%s\n", r->text ? r->text : "");
        else
            cli_error(co->cmd, "%s", r->text ? r->text : "refused");
        code = *ok ? CLI_OK : CLI_FAIL;
    }
out:
    env_free(reply);
    bus_client_close(&bc);
    if (zctx != NULL)
        zmq_ctx_term(zctx);
    return code;
}

static int control(const char *cmd, int argc, char **argv)
{
    ctl_opts co = {.cmd = cmd};
    int rc = parse(argc, argv, &co);
    if (rc != 0)
        return rc < 0 ? CLI_OK : rc;
    rt_err err = {{0}};
    char run_id[128];
    if (rd_run_id_read(co.run_dir, run_id, sizeof run_id, &err) < 0) {
        cli_error(cmd, "%s", err.msg);
        return CLI_FAIL;
    }
    pid_t holder = 0;
    if (rd_lock_probe(co.run_dir, &holder, &err) == 0) {
        cli_error(cmd, "no run is active in %s (no orchestrator holds %s/lock)", co.run_dir,
                  co.run_dir);
        return CLI_FAIL;
    }
    bool ok = false;
    int code = ask(&co, run_id, &ok);
    if (code != CLI_OK || strcmp(cmd, "stop") != 0 || co.no_wait)
        return code;
    fprintf(stderr, "waiting for the run in %s to end (orchestrator pid %d)...\n", co.run_dir,
            (int)holder);
    while (rd_lock_probe(co.run_dir, &holder, &err) == -EBUSY) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    printf("the run in %s has ended\n", co.run_dir);
    return CLI_OK;
}

int cmd_status(int argc, char **argv)
{
    return control("status", argc, argv);
}

int cmd_restart(int argc, char **argv)
{
    return control("restart", argc, argv);
}

int cmd_stop(int argc, char **argv)
{
    return control("stop", argc, argv);
}
