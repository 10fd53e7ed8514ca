/*
 * supervisor: the master process of `ramtrain run` (DESIGN.md §1), in the
 * manner of nginx's: a process table of the three services, signal handlers
 * that only set flags, and one loop that polls ZeroMQ sockets, reaps
 * children with waitpid(WNOHANG), restarts what died and escalates SIGTERM to
 * SIGKILL on timers.
 *
 * Children are started with fork + exec, each in its own process group (a
 * Ctrl-C on the terminal reaches only `ramtrain run`, which decides what the
 * services are told), with PR_SET_PDEATHSIG SIGKILL (so no service outlives
 * the orchestrator, however it dies), stdin /dev/null, stdout and stderr
 * appended to logs/<service>.log, and no other file descriptor.
 *
 * Liveness: the orchestrator connects a DEALER to each service's ROUTER and
 * says Hello; the Ready reply marks the service up. Heartbeats go both ways
 * every heartbeat_ms; a service silent for SUP_HUNG_BEATS intervals after
 * its first heartbeat is hung and gets SIGKILL. (A service that never sends
 * a heartbeat is not watched for hangs; a warning says so.)
 *
 * Restarts: a dead service is restarted after a backoff (0.2 s doubling to
 * 5 s; back to 0.2 s once it had run 30 s). The supervisor gives up after 5
 * failures of one service within 60 s, or when a service dies before
 * answering Hello 3 times in a row. Exit status 2 is bad input (the service
 * said so): the run stops with its message. A worker that exits 0 has
 * finished: every step is committed and the final checkpoint written, or it
 * was told to stop after its step (Shutdown{finish_step}).
 *
 * End of a run, for whatever reason: the worker is stopped, the paramserver
 * and the data loader get Shutdown{remove_state} (their shared memory and
 * spill files go) or, when they cannot take it, SIGTERM and then SIGKILL;
 * every child is reaped; whatever the run still has in shared memory is
 * removed by name (run_dir.h). Checkpoints stay.
 *
 * Control: a ROUTER at ipc://DIR/sock/control answers Control{"status"},
 * {"restart", service} and {"stop"} with a ControlReply.
 *
 * Threads: sup_run runs on the caller's thread and owns everything it
 * creates; it installs handlers for SIGINT, SIGTERM and SIGCHLD (flags only)
 * and restores the old ones when it returns.
 */
#ifndef RAMTRAIN_ORCH_SUPERVISOR_H
#define RAMTRAIN_ORCH_SUPERVISOR_H

#include <stdint.h>

#include "orchestrator/progress.h"
#include "storage/err.h"

#define SUP_HUNG_BEATS 5               /* missed heartbeat intervals = hung ... */
#define SUP_ENV_HUNG "RAMTRAIN_HUNG_S" /* ... and at least this many seconds (default 60) */
#define SUP_BACKOFF_MIN_S 0.2
#define SUP_BACKOFF_MAX_S 5.0
#define SUP_BACKOFF_RESET_S 30.0       /* a service that ran this long starts over at the minimum */
#define SUP_FAIL_LIMIT 5               /* failures of one service ... */
#define SUP_FAIL_WINDOW_S 60.0         /* ... within this window: give up */
#define SUP_EARLY_DEATHS 3             /* deaths before Hello in a row: give up */
#define SUP_START_TIMEOUT_S 600.0      /* no Ready by then: hung at start-up */
#define SUP_TERM_GRACE_S 5.0           /* SIGTERM -> SIGKILL */
#define SUP_RESTART_GRACE_S 3.0        /* `ramtrain restart`: SIGTERM -> SIGKILL */
#define SUP_SHUTDOWN_GRACE_S 30.0      /* Shutdown -> SIGTERM at the end of a run */

typedef enum sup_svc {
    SUP_PARAMSERVER = 0,
    SUP_DATALOADER = 1,
    SUP_WORKER = 2,
    SUP_N_SVC = 3,
} sup_svc;

/* "paramserver", "dataloader", "worker" (static storage); NULL otherwise. */
const char *sup_svc_name(int i);

typedef struct sup_opts {
    const char *run_id;
    const char *run_dir;               /* absolute */
    const char *spill_dir;             /* where the paramserver's spill file is */
    uint64_t total_steps;
    unsigned heartbeat_ms;             /* the services were started with it */
    char *const *argv[SUP_N_SVC];      /* each service's command line, argv[0] the executable;
                                          NULL-terminated; the caller's */
    prog *prog;                        /* progress and the orchestrator's log; the caller's */
} sup_opts;

typedef enum sup_outcome {
    SUP_DONE = 0,                      /* every step trained, final checkpoint written */
    SUP_STOPPED,                       /* stopped on request after a step, its checkpoint written */
    SUP_FAILED,                        /* a service failed too often, or something broke: gave up */
    SUP_BAD_INPUT,                     /* a service exited 2 */
    SUP_INTERRUPTED,                   /* torn down on a second signal */
} sup_outcome;

typedef struct sup_result {
    sup_outcome outcome;
    uint64_t steps_committed;          /* per the paramserver when it could say, else the reports */
    int signal;                        /* SUP_INTERRUPTED: the signal */
    int state_removed;                 /* objects rd_remove_state found left over */
    double wall_s;                     /* from sup_run's start */
    char message[12288];               /* SUP_FAILED / SUP_BAD_INPUT: what happened, and the
                                          last lines of the service's log */
} sup_result;

/* Runs the services of the run until it ends (see above) and fills *res.
 * Returns 0 (the outcome says how it ended) or a negative errno with err
 * when the supervisor could not start (control socket, log files); nothing
 * is left running either way. Blocks for the life of the run. */
int sup_run(const sup_opts *o, sup_result *res, rt_err *err);

#endif
