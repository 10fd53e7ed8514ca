/*
 * supervisor: spawning, watching, restarting and stopping the services of
 * a run (see supervisor.h for the policy).
 *
 * One loop on one thread. Each turn: zmq_poll (the control socket and a
 * DEALER per service, 100 ms at most, cut short by signals), then the
 * signal flags, waitpid(WNOHANG) for every dead child, the messages, and the
 * timers (restarts due, heartbeats to send, silent services, SIGTERM and
 * SIGKILL deadlines). Every decision is taken in the loop, never in a
 * signal handler.
 *
 * Phases: RUN (services up, restarts on), STOP (the worker was told to stop
 * after its step; restarts still on, so it can finish), FINISH (the worker
 * exited 0: the other two are told to shut down and remove the run's
 * state), TEARDOWN (stopping everything: SIGTERM, SIGKILL after the grace).
 * The loop ends when, in FINISH or TEARDOWN, no child is left.
 *
 * Rejected: a thread per child blocked in waitpid (the decisions need the
 * sockets' state too; one loop sees both), and signalfd (the signals must
 * stay unblocked in the children, and fork + exec keeps the mask).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <zmq.h>

#include "orchestrator/run_dir.h"
#include "orchestrator/supervisor.h"
#include "services/common/bus.h"
#include "services/common/envelope.h"

#define HELLO_RESEND_S 10.0            /* a Hello unanswered this long is sent again */
#define DEALER_RECONNECT_MS 10         /* ZMQ_RECONNECT_IVL of the DEALERs to the services */
#define STATUS_TIMEOUT_S 5.0           /* Status to the paramserver at the worker's exit */

static volatile sig_atomic_t g_sig_count; /* SIGINT/SIGTERM received */
static volatile sig_atomic_t g_sig_last;

static void on_stop_signal(int sig)
{
    g_sig_count++;
    g_sig_last = sig;
}

static void on_sigchld(int sig)
{
    (void)sig; /* only wakes zmq_poll; the loop reaps */
}

typedef enum svc_state {
    SV_DOWN = 0,                       /* not running: waiting for restart_at, or not yet started */
    SV_STARTING,                       /* spawned, Hello sent, no Ready yet */
    SV_READY,                          /* answered Hello */
    SV_STOPPING,                       /* told to stop or killed; waiting to reap it */
    SV_EXITED,                         /* reaped and not to be restarted */
} svc_state;

static const char *const STATE_NAME[] = {"down", "starting", "ready", "stopping", "exited"};
static const char *const SVC_NAME[SUP_N_SVC] = {"paramserver", "dataloader", "worker"};

typedef struct svc {
    int idx;                           /* sup_svc */
    const char *name;
    char *const *argv;
    char endpoint[RD_PATH_MAX + 32];
    char log_path[RD_PATH_MAX + 32];
    int log_fd;                        /* logs/<name>.log, O_APPEND; the child's stdout+stderr */
    pid_t pid;                         /* 0: no process */
    svc_state state;
    uint64_t spawns;
    int restarts;
    double spawned_at, ready_at, last_seen, hello_at; /* CLOCK_MONOTONIC seconds */
    bool answered;                     /* this incarnation sent Ready */
    bool beats;                        /* this incarnation sent a heartbeat */
    bool warned_no_beats;
    unsigned hb_ms;                    /* its heartbeat interval (Ready), else ours */
    double restart_at;                 /* SV_DOWN: spawn at this time; < 0: not scheduled */
    double backoff;                    /* seconds before the next restart */
    double fails[SUP_FAIL_LIMIT];      /* times of the last failures */
    int n_fails;
    int early_deaths;                  /* deaths before Ready, in a row */
    bool restart_now;                  /* stopped on request: respawn at once when reaped */
    bool hung;                         /* killed for silence */
    double term_at, kill_at;           /* > 0: SIGTERM / SIGKILL due then */
    bus_client bus;                    /* DEALER to its ROUTER */
} svc;

typedef enum run_phase { PH_RUN = 0, PH_STOP, PH_FINISH, PH_TEARDOWN } run_phase;

static const char *const PHASE_NAME[] = {"running", "stopping after the current step",
                                         "finishing", "shutting down"};

typedef struct sup {
    const sup_opts *o;
    sup_result *res;
    svc s[SUP_N_SVC];
    void *zctx;                        /* for the DEALERs */
    bus_server ctl;                    /* ROUTER at DIR/sock/control */
    run_phase phase;
    bool stop_requested;               /* finish_step wanted from the worker */
    bool stop_sent;                    /* ... and sent to its current incarnation */
    bool worker_started;
    int sigs_handled;
    uint64_t next_req;
    double t0, last_beat;
    uint64_t status_req;               /* Status to the paramserver in flight */
    bool status_got;
    uint64_t status_steps;
    int devnull;
} sup;

const char *sup_svc_name(int i)
{
    return i >= 0 && i < SUP_N_SVC ? SVC_NAME[i] : NULL;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define LOG(S, lvl, ...) prog_log((S)->o->prog, (lvl), __VA_ARGS__)

/* "exit status 1", "killed by signal 9 (Killed)". */
static void exit_desc(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "wait status 0x%x", status);
}

/* ---- messages to the services ---------------------------------------------------- */

/* Packs e and queues it without blocking: a service that does not read is
 * found out by the heartbeat check, not by a stuck orchestrator. */
static void send_env(sup *S, svc *s, Ramtrain__Envelope *e)
{
    if (s->bus.sock == NULL)
        return;
    uint8_t *buf;
    size_t len;
    rt_err err = {{0}};
    if (env_pack_alloc(e, &buf, &len, &err) < 0) {
        LOG(S, LOG_LEVEL_ERROR, "cannot pack a %s for %s: %s", env_body_name(e), s->name, err.msg);
        return;
    }
    if (zmq_send(s->bus.sock, buf, len, ZMQ_DONTWAIT) < 0)
        LOG(S, LOG_LEVEL_DEBUG, "cannot send a %s to %s: %s", env_body_name(e), s->name,
            zmq_strerror(zmq_errno()));
    free(buf);
}

static void send_hello(sup *S, svc *s)
{
    Ramtrain__Envelope e;
    Ramtrain__Hello h = RAMTRAIN__HELLO__INIT;
    env_init(&e, S->o->run_id, "orchestrator", S->next_req++);
    h.role = "orchestrator";
    h.has_pid = 1, h.pid = (uint32_t)getpid();
    e.body_case = RAMTRAIN__ENVELOPE__BODY_HELLO;
    e.hello = &h;
    send_env(S, s, &e);
    s->hello_at = now_s();
}

static void send_heartbeat(sup *S, svc *s, uint64_t seq)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    Ramtrain__Envelope e;
    Ramtrain__Heartbeat h = RAMTRAIN__HEARTBEAT__INIT;
    env_init(&e, S->o->run_id, "orchestrator", S->next_req++);
    h.has_seq = 1, h.seq = seq;
    h.has_time_ns = 1, h.time_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &h;
    send_env(S, s, &e);
}

static void send_shutdown(sup *S, svc *s, const char *reason, bool remove_state, bool finish_step,
                          double grace_s)
{
    Ramtrain__Envelope e;
    Ramtrain__Shutdown m = RAMTRAIN__SHUTDOWN__INIT;
    env_init(&e, S->o->run_id, "orchestrator", S->next_req++);
    m.reason = (char *)reason;
    m.has_grace_ms = 1, m.grace_ms = (uint32_t)(grace_s * 1000);
    m.has_remove_state = remove_state, m.remove_state = remove_state;
    m.has_finish_step = finish_step, m.finish_step = finish_step;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_SHUTDOWN;
    e.shutdown = &m;
    send_env(S, s, &e);
}

/* ---- spawning ------------------------------------------------------------------------ */

/* In the child, between fork and exec: async-signal-safe calls only (the
 * parent has ZeroMQ's threads). Never returns. */
static void child_exec(char *const *argv, int devnull, int log_fd, pid_t parent)
{
    setpgid(0, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(127); /* the orchestrator is already gone */
    if (dup2(devnull, STDIN_FILENO) < 0 || dup2(log_fd, STDOUT_FILENO) < 0 ||
        dup2(log_fd, STDERR_FILENO) < 0)
        _exit(127);
    if (close_range(3, ~0u, 0) != 0)
        for (int fd = 3; fd < 4096; fd++)
            close(fd);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    static const int SIGS[] = {SIGPIPE, SIGINT, SIGTERM, SIGCHLD, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof SIGS / sizeof SIGS[0]; i++)
        sigaction(SIGS[i], &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[0], argv);
    static const char MSG[] = "ramtrain run: cannot execute ";
    int e = errno;
    char num[16];
    int n = 0;
    do
        num[sizeof num - 1 - n++] = (char)('0' + e % 10);
    while ((e /= 10) > 0 && n < 15);
    if (write(STDERR_FILENO, MSG, sizeof MSG - 1) < 0 ||
        write(STDERR_FILENO, argv[0], strlen(argv[0])) < 0 ||
        write(STDERR_FILENO, ": errno ", 8) < 0 ||
        write(STDERR_FILENO, num + sizeof num - n, (size_t)n) < 0 ||
        write(STDERR_FILENO, "\n", 1) < 0)
        _exit(127);
    _exit(127);
}

/* Appends a line to the service's log saying what is being started. */
static void log_marker(svc *s)
{
    char line[8192], stamp[40];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(line, sizeof line, "==== %s ramtrain run: starting %s (start %llu):", stamp,
                     s->name, (unsigned long long)s->spawns + 1);
    for (char *const *a = s->argv; *a != NULL && n < (int)sizeof line; a++)
        n += snprintf(line + n, sizeof line - (size_t)n, " %s", *a);
    if (n >= (int)sizeof line - 1)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (write(s->log_fd, line, (size_t)n) < 0) {
        /* the log is where the message would have gone */
    }
}

/* Down until now + delay, then started again by the timers. */
static void schedule_restart(svc *s, double delay)
{
    s->state = SV_DOWN;
    s->restart_at = now_s() + delay;
}

/* A fresh DEALER to s (what was queued on the old one is dropped). The
 * service binds its socket a moment after it starts, so the first connect
 * fails; ZeroMQ's default 100 ms between tries would lose the reports of a
 * run that takes less than that, so retry every DEALER_RECONNECT_MS. */
static int dealer_connect(sup *S, svc *s, rt_err *err)
{
    bus_client_close(&s->bus);
    s->bus.run_id = S->o->run_id;
    s->bus.sock = zmq_socket(S->zctx, ZMQ_DEALER);
    if (s->bus.sock == NULL)
        return err_set(err, -ENOMEM, "cannot create a ZeroMQ socket: %s",
                       zmq_strerror(zmq_errno()));
    int zero = 0, ivl = DEALER_RECONNECT_MS;
    zmq_setsockopt(s->bus.sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s->bus.sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    if (zmq_connect(s->bus.sock, s->endpoint) < 0)
        return err_set(err, -EINVAL, "connect %s: %s", s->endpoint, zmq_strerror(zmq_errno()));
    return 0;
}

static void spawn(sup *S, svc *s)
{
    rt_err err = {{0}};
    double t = now_s();
    if (dealer_connect(S, s, &err) < 0) {
        LOG(S, LOG_LEVEL_ERROR, "%s: %s", s->name, err.msg);
        schedule_restart(s, SUP_BACKOFF_MAX_S);
        return;
    }
    log_marker(s);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        LOG(S, LOG_LEVEL_ERROR, "cannot start %s: fork: %s", s->name, strerror(errno));
        schedule_restart(s, SUP_BACKOFF_MAX_S);
        return;
    }
    if (pid == 0)
        child_exec(s->argv, S->devnull, s->log_fd, parent);
    if (s->spawns > 0)
        s->restarts++;
    s->spawns++;
    s->pid = pid;
    s->state = SV_STARTING;
    s->spawned_at = s->last_seen = t;
    s->answered = s->beats = s->warned_no_beats = s->hung = s->restart_now = false;
    s->term_at = s->kill_at = 0;
    s->restart_at = -1;
    s->hb_ms = S->o->heartbeat_ms;
    if (s->idx == SUP_WORKER)
        S->stop_sent = false;
    send_hello(S, s);
    LOG(S, LOG_LEVEL_INFO, "started %s (pid %d)%s", s->name, (int)pid,
        s->restarts > 0 ? "" : "; waiting for it to answer");
}

/* ---- ending the run ---------------------------------------------------------------- */

/* Everything stops: the worker at once, the paramserver and the data loader
 * through Shutdown{remove_state} when they can take it. A second call while
 * tearing down kills what is left. */
static void teardown(sup *S, sup_outcome outcome, double grace)
{
    double t = now_s();
    if (S->phase == PH_TEARDOWN) {
        for (int i = 0; i < SUP_N_SVC; i++)
            if (S->s[i].pid > 0) {
                kill(S->s[i].pid, SIGKILL);
                S->s[i].kill_at = 0;
            }
        return;
    }
    if (S->phase != PH_FINISH)
        S->res->outcome = outcome;
    S->phase = PH_TEARDOWN;
    for (int i = 0; i < SUP_N_SVC; i++) {
        svc *s = &S->s[i];
        s->restart_at = -1;
        if (s->pid == 0) {
            s->state = SV_EXITED;
            continue;
        }
        if (i != SUP_WORKER && s->state == SV_READY) {
            send_shutdown(S, s, "the run is stopping", true, false, grace);
            s->term_at = t + grace / 2;
        } else {
            kill(s->pid, SIGTERM);
            s->term_at = 0;
        }
        s->kill_at = t + grace;
        s->state = SV_STOPPING;
    }
}

/* The worker is done: the others shut down and remove the run's state. */
static void finish(sup *S, sup_outcome outcome)
{
    double t = now_s();
    S->res->outcome = outcome;
    S->phase = PH_FINISH;
    for (int i = 0; i < SUP_N_SVC; i++) {
        svc *s = &S->s[i];
        s->restart_at = -1;
        if (s->pid == 0) {
            s->state = SV_EXITED;
        } else if (s->state == SV_READY) {
            send_shutdown(S, s, "the run is over", true, false, SUP_SHUTDOWN_GRACE_S);
            s->term_at = t + SUP_SHUTDOWN_GRACE_S;
            s->kill_at = s->term_at + SUP_TERM_GRACE_S;
            s->state = SV_STOPPING;
        } else {
            kill(s->pid, SIGTERM);
            s->kill_at = t + SUP_TERM_GRACE_S;
            s->state = SV_STOPPING;
        }
    }
}

static void give_up(sup *S, svc *s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void give_up(sup *S, svc *s, const char *fmt, ...)
{
    char why[1024], tail[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    rd_log_tail(s->log_path, 12, "    ", tail, sizeof tail);
    snprintf(S->res->message, sizeof S->res->message, "%s %s; last lines of %s:\n%s", s->name,
             why, s->log_path, tail[0] ? tail : "    (empty)");
    LOG(S, LOG_LEVEL_ERROR, "giving up: %s %s (log: %s)", s->name, why, s->log_path);
    teardown(S, SUP_FAILED, SUP_TERM_GRACE_S);
}

/* The first graceful stop: the worker finishes its step and checkpoints it. */
static void request_stop(sup *S, const char *why)
{
    if (S->phase != PH_RUN)
        return;
    svc *w = &S->s[SUP_WORKER];
    if (!S->worker_started) {
        LOG(S, LOG_LEVEL_INFO, "stopping (%s) before training started", why);
        teardown(S, SUP_STOPPED, SUP_TERM_GRACE_S);
        return;
    }
    S->phase = PH_STOP;
    S->stop_requested = true;
    LOG(S, LOG_LEVEL_INFO, "stopping (%s): the worker finishes its step and writes a checkpoint%s",
        why, g_sig_count > 0 ? "; a second signal stops at once" : "");
    if (w->state == SV_READY) {
        send_shutdown(S, w, why, false, true, 0);
        S->stop_sent = true;
    }
}

/* ---- the paramserver's view ------------------------------------------------------- */

static void handle_message(sup *S, svc *s, const Ramtrain__Envelope *e);

/* Takes every message waiting on s's socket. */
static void drain(sup *S, svc *s)
{
    for (int k = 0; k < 256 && s->bus.sock != NULL; k++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        int n = zmq_msg_recv(&m, s->bus.sock, ZMQ_DONTWAIT);
        if (n < 0) {
            zmq_msg_close(&m);
            return;
        }
        Ramtrain__Envelope *e = NULL;
        rt_err err = {{0}};
        if (env_unpack(zmq_msg_data(&m), zmq_msg_size(&m), S->o->run_id, &e, NULL, &err) < 0)
            LOG(S, LOG_LEVEL_WARN, "message from %s refused: %s", s->name, err.msg);
        else
            handle_message(S, s, e);
        env_free(e);
        zmq_msg_close(&m);
    }
}

/* Asks the paramserver how many steps are committed; false when it cannot
 * say within STATUS_TIMEOUT_S. */
static bool query_steps(sup *S, uint64_t *steps)
{
    svc *ps = &S->s[SUP_PARAMSERVER];
    if (ps->pid == 0 || ps->state != SV_READY)
        return false;
    Ramtrain__Envelope e;
    Ramtrain__Status st = RAMTRAIN__STATUS__INIT;
    S->status_req = S->next_req++;
    S->status_got = false;
    env_init(&e, S->o->run_id, "orchestrator", S->status_req);
    e.body_case = RAMTRAIN__ENVELOPE__BODY_STATUS;
    e.status = &st;
    send_env(S, ps, &e);
    double end = now_s() + STATUS_TIMEOUT_S;
    while (!S->status_got && now_s() < end) {
        zmq_pollitem_t it = {.socket = ps->bus.sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 100) > 0)
            drain(S, ps);
    }
    *steps = S->status_steps;
    return S->status_got;
}

/* ---- children exiting -------------------------------------------------------------- */

static void on_child_exit(sup *S, svc *s, int status)
{
    double t = now_s();
    double ran = t - s->spawned_at;
    char how[256];
    exit_desc(status, how, sizeof how);
    pid_t pid = s->pid;
    if (s->bus.sock != NULL) {
        /* what it sent before it died (its last StepReport) may still be in
         * ZeroMQ's I/O thread: give it a moment before the socket is replaced */
        zmq_pollitem_t it = {.socket = s->bus.sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 50) > 0)
            drain(S, s);
    }
    s->pid = 0;
    s->term_at = s->kill_at = 0;
    if (S->phase == PH_FINISH || S->phase == PH_TEARDOWN) {
        s->state = SV_EXITED;
        LOG(S, LOG_LEVEL_INFO, "%s (pid %d) exited: %s", s->name, (int)pid, how);
        return;
    }
    if (s->restart_now) {
        LOG(S, LOG_LEVEL_INFO, "%s (pid %d) stopped (%s); restarting it now", s->name, (int)pid,
            how);
        s->restart_now = false;
        s->state = SV_DOWN;
        s->restart_at = t;
        return;
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (s->idx == SUP_WORKER && code == 0) {
        uint64_t steps = 0;
        if (!query_steps(S, &steps))
            steps = prog_steps_done(S->o->prog);
        S->res->steps_committed = steps;
        if (steps >= S->o->total_steps || S->stop_sent) {
            LOG(S, LOG_LEVEL_INFO, "worker (pid %d) finished: %llu of %llu steps committed",
                (int)pid, (unsigned long long)steps, (unsigned long long)S->o->total_steps);
            finish(S, steps >= S->o->total_steps ? SUP_DONE : SUP_STOPPED);
            return;
        }
        snprintf(how, sizeof how, "exit status 0 with %llu of %llu steps committed",
                 (unsigned long long)steps, (unsigned long long)S->o->total_steps);
    }
    if (code == 2) {
        char tail[4096];
        rd_log_tail(s->log_path, 8, "    ", tail, sizeof tail);
        snprintf(S->res->message, sizeof S->res->message,
                 "%s exited with status 2 (bad input; a restart will not help); last lines of "
                 "%s:\n%s",
                 s->name, s->log_path, tail[0] ? tail : "    (empty)");
        LOG(S, LOG_LEVEL_ERROR, "%s (pid %d) exited with status 2: bad input; stopping the run",
            s->name, (int)pid);
        teardown(S, SUP_BAD_INPUT, SUP_TERM_GRACE_S);
        return;
    }
    if (s->hung)
        snprintf(how, sizeof how, "hung, killed");
    if (!s->answered)
        s->early_deaths++;
    int k = 0;
    for (int i = 0; i < s->n_fails; i++)
        if (t - s->fails[i] < SUP_FAIL_WINDOW_S)
            s->fails[k++] = s->fails[i];
    s->n_fails = k;
    if (s->n_fails == SUP_FAIL_LIMIT) {
        memmove(s->fails, s->fails + 1, sizeof s->fails[0] * (SUP_FAIL_LIMIT - 1));
        s->n_fails--;
    }
    s->fails[s->n_fails++] = t;
    if (s->n_fails >= SUP_FAIL_LIMIT) {
        give_up(S, s, "failed %d times within %.0f s (last: %s)", s->n_fails, SUP_FAIL_WINDOW_S,
                how);
        return;
    }
    if (s->early_deaths >= SUP_EARLY_DEATHS) {
        give_up(S, s, "died %d times in a row before answering Hello (last: %s)",
                s->early_deaths, how);
        return;
    }
    if (ran >= SUP_BACKOFF_RESET_S || s->backoff <= 0)
        s->backoff = SUP_BACKOFF_MIN_S;
    double delay = s->backoff;
    s->backoff = s->backoff * 2 > SUP_BACKOFF_MAX_S ? SUP_BACKOFF_MAX_S : s->backoff * 2;
    LOG(S, LOG_LEVEL_WARN, "%s (pid %d) died after %.1f s (%s); restarting it in %.1f s "
        "(restart %d)", s->name, (int)pid, ran, how, delay, s->restarts + 1);
    schedule_restart(s, delay);
}

static void reap(sup *S)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        for (int i = 0; i < SUP_N_SVC; i++)
            if (S->s[i].pid == pid) {
                on_child_exit(S, &S->s[i], status);
                break;
            }
    }
}

/* ---- messages from the services ---------------------------------------------------- */

static void handle_message(sup *S, svc *s, const Ramtrain__Envelope *e)
{
    s->last_seen = now_s();
    switch (e->body_case) {
    case RAMTRAIN__ENVELOPE__BODY_READY:
        if (s->state != SV_STARTING)
            break;
        s->state = SV_READY;
        s->answered = true;
        s->early_deaths = 0;
        s->ready_at = s->last_seen;
        if (e->ready->has_heartbeat_ms && e->ready->heartbeat_ms > 0)
            s->hb_ms = e->ready->heartbeat_ms;
        if (e->ready->has_committed_step)
            LOG(S, LOG_LEVEL_INFO, "%s (pid %d) is ready; last committed step %llu", s->name,
                (int)s->pid, (unsigned long long)e->ready->committed_step);
        else
            LOG(S, LOG_LEVEL_INFO, "%s (pid %d) is ready", s->name, (int)s->pid);
        if (s->idx == SUP_WORKER && S->phase == PH_STOP && !S->stop_sent) {
            send_shutdown(S, s, "stop requested", false, true, 0);
            S->stop_sent = true;
        }
        break;
    case RAMTRAIN__ENVELOPE__BODY_HEARTBEAT:
        s->beats = true;
        break;
    case RAMTRAIN__ENVELOPE__BODY_STEP_REPORT:
        prog_step(S->o->prog, e->step_report);
        break;
    case RAMTRAIN__ENVELOPE__BODY_STATUS_REPLY:
        if (e->request_id == S->status_req && e->status_reply->has_steps_committed) {
            S->status_got = true;
            S->status_steps = e->status_reply->steps_committed;
        }
        break;
    case RAMTRAIN__ENVELOPE__BODY_ERROR_REPLY:
        LOG(S, LOG_LEVEL_WARN, "%s refused request %llu: %s", s->name,
            (unsigned long long)e->request_id,
            e->error_reply->message ? e->error_reply->message : "(no message)");
        break;
    default:
        break; /* Shutdown acknowledgements and the like: nothing to do */
    }
}

/* ---- the control socket ------------------------------------------------------------- */

static void status_text(sup *S, char *buf, size_t len)
{
    double t = now_s();
    char wall[32];
    prog_fmt_duration(t - S->t0, wall, sizeof wall);
    int n = snprintf(buf, len, "run %s in %s: %s for %s\n", S->o->run_id, S->o->run_dir,
                     PHASE_NAME[S->phase], wall);
    for (int i = 0; i < SUP_N_SVC && n < (int)len; i++) {
        svc *s = &S->s[i];
        char beat[48] = "-";
        if (s->pid > 0 && s->beats)
            snprintf(beat, sizeof beat, "%.1f s ago", t - s->last_seen);
        else if (s->pid > 0 && s->state == SV_READY)
            snprintf(beat, sizeof beat, "none (last message %.1f s ago)", t - s->last_seen);
        char pid[24] = "-";
        if (s->pid > 0)
            snprintf(pid, sizeof pid, "%d", (int)s->pid);
        n += snprintf(buf + n, len - (size_t)n,
                      "  %-12s pid %-8s %-9s restarts %-3d heartbeat %s\n", s->name, pid,
                      STATE_NAME[s->state], s->restarts, beat);
    }
    if (n < (int)len)
        prog_describe(S->o->prog, buf + n, len - (size_t)n);
}

static void control_reply(sup *S, const bus_peer *to, uint64_t req, bool ok, const char *text)
{
    Ramtrain__Envelope e;
    Ramtrain__ControlReply r = RAMTRAIN__CONTROL_REPLY__INIT;
    env_init(&e, S->o->run_id, "orchestrator", req);
    r.has_ok = 1, r.ok = ok;
    r.text = (char *)text;
    e.body_case = RAMTRAIN__ENVELOPE__BODY_CONTROL_REPLY;
    e.control_reply = &r;
    bus_server_send(&S->ctl, to, &e);
}

static void on_control(sup *S, const bus_peer *from, uint64_t req, const Ramtrain__Control *c)
{
    char text[4096];
    const char *cmd = c->command != NULL ? c->command : "";
    if (strcmp(cmd, "status") == 0) {
        status_text(S, text, sizeof text);
        control_reply(S, from, req, true, text);
    } else if (strcmp(cmd, "stop") == 0) {
        if (S->phase == PH_RUN) {
            request_stop(S, "ramtrain stop");
            snprintf(text, sizeof text, "%s",
                     S->phase == PH_STOP
                         ? "stopping: the worker finishes the step in hand and writes a checkpoint"
                         : "stopping: training had not started");
        } else {
            snprintf(text, sizeof text, "already %s", PHASE_NAME[S->phase]);
        }
        control_reply(S, from, req, true, text);
    } else if (strcmp(cmd, "restart") == 0) {
        int i = 0;
        while (i < SUP_N_SVC && (c->service == NULL || strcmp(c->service, SVC_NAME[i]) != 0))
            i++;
        svc *s = i < SUP_N_SVC ? &S->s[i] : NULL;
        bool ok = false;
        if (s == NULL) {
            snprintf(text, sizeof text,
                     "restart: unknown service \"%s\" (paramserver, dataloader or worker)",
                     c->service ? c->service : "");
        } else if (S->phase != PH_RUN) {
            snprintf(text, sizeof text, "restart: the run is %s; not restarting %s",
                     PHASE_NAME[S->phase], s->name);
        } else if (s->pid > 0) {
            if (!s->restart_now) {
                kill(s->pid, SIGTERM);
                s->restart_now = true;
                s->kill_at = now_s() + SUP_RESTART_GRACE_S;
                s->state = SV_STOPPING;
            }
            LOG(S, LOG_LEVEL_INFO, "restart of %s (pid %d) requested", s->name, (int)s->pid);
            snprintf(text, sizeof text, "restarting %s (pid %d)", s->name, (int)s->pid);
            ok = true;
        } else if (s->idx == SUP_WORKER && !S->worker_started) {
            snprintf(text, sizeof text, "restart: the worker has not been started yet");
        } else {
            s->state = SV_DOWN;
            s->restart_at = now_s();
            snprintf(text, sizeof text, "%s was not running; starting it now", s->name);
            ok = true;
        }
        control_reply(S, from, req, ok, text);
    } else {
        snprintf(text, sizeof text, "unknown command \"%s\" (status, restart or stop)", cmd);
        control_reply(S, from, req, false, text);
    }
}

static void serve_control(sup *S)
{
    for (int k = 0; k < 64; k++) {
        bus_peer from;
        Ramtrain__Envelope *e;
        uint64_t req;
        int rc = bus_server_recv(&S->ctl, &from, &e, &req);
        if (rc < 0)
            return;
        if (rc == 0)
            continue;
        if (e->body_case == RAMTRAIN__ENVELOPE__BODY_CONTROL)
            on_control(S, &from, req, e->control);
        else if (e->body_case != RAMTRAIN__ENVELOPE__BODY_HEARTBEAT)
            bus_server_refuse(&S->ctl, &from, req, -ENOTSUP,
                              "envelope: the orchestrator's control socket takes Control only");
        env_free(e);
    }
}

/* ---- timers ---------------------------------------------------------------------------- */

/* Silence that marks a service hung: the missed heartbeats, but never less
 * than $RAMTRAIN_HUNG_S (default 60 s): a paramserver writing a large
 * checkpoint, or updating one huge spilled block, sends no heartbeats
 * meanwhile and must not be killed for it. */
static double hung_after(double beats_s)
{
    static double floor_s = -1;
    if (floor_s < 0) {
        const char *v = getenv(SUP_ENV_HUNG);
        char *end;
        double d = v != NULL ? strtod(v, &end) : 60.0;
        floor_s = v != NULL && (end == v || *end != '\0' || d < 0) ? 60.0 : d;
    }
    return beats_s > floor_s ? beats_s : floor_s;
}

static void timers(sup *S)
{
    double t = now_s();
    for (int i = 0; i < SUP_N_SVC; i++) {
        svc *s = &S->s[i];
        if (s->pid == 0)
            continue;
        if (s->term_at > 0 && t >= s->term_at) {
            LOG(S, LOG_LEVEL_WARN, "%s (pid %d) still running: SIGTERM", s->name, (int)s->pid);
            kill(s->pid, SIGTERM);
            s->term_at = 0;
        }
        if (s->kill_at > 0 && t >= s->kill_at) {
            LOG(S, LOG_LEVEL_WARN, "%s (pid %d) still running: SIGKILL", s->name, (int)s->pid);
            kill(s->pid, SIGKILL);
            s->kill_at = 0;
        }
    }
    if (S->phase != PH_RUN && S->phase != PH_STOP)
        return;
    for (int i = 0; i < SUP_N_SVC; i++) {
        svc *s = &S->s[i];
        double beat_s = s->hb_ms / 1000.0;
        if (s->state == SV_DOWN && s->pid == 0 && s->restart_at >= 0 && t >= s->restart_at) {
            spawn(S, s);
        } else if (s->state == SV_STARTING) {
            if (t - s->spawned_at > SUP_START_TIMEOUT_S) {
                LOG(S, LOG_LEVEL_WARN, "%s (pid %d) has not answered Hello in %.0f s: killing it",
                    s->name, (int)s->pid, SUP_START_TIMEOUT_S);
                kill(s->pid, SIGKILL);
                s->hung = true;
                s->state = SV_STOPPING;
            } else if (t - s->hello_at > HELLO_RESEND_S) {
                send_hello(S, s);
            }
        } else if (s->state == SV_READY && s->beats &&
                   t - s->last_seen > hung_after(SUP_HUNG_BEATS * beat_s)) {
            LOG(S, LOG_LEVEL_WARN, "%s (pid %d) silent for %.1f s (more than %d heartbeat "
                "intervals and %s=%.0f s): hung; killing it", s->name, (int)s->pid,
                t - s->last_seen, SUP_HUNG_BEATS, SUP_ENV_HUNG, hung_after(0));
            kill(s->pid, SIGKILL);
            s->hung = true;
            s->state = SV_STOPPING;
        } else if (s->state == SV_READY && !s->beats && !s->warned_no_beats &&
                   t - s->ready_at > 2 * SUP_HUNG_BEATS * beat_s) {
            LOG(S, LOG_LEVEL_WARN, "%s (pid %d) sends no heartbeats: it is not watched for hangs",
                s->name, (int)s->pid);
            s->warned_no_beats = true;
        }
    }
    svc *w = &S->s[SUP_WORKER];
    if (!S->worker_started && S->s[SUP_PARAMSERVER].state == SV_READY &&
        S->s[SUP_DATALOADER].state == SV_READY) {
        S->worker_started = true;
        spawn(S, w);
    }
    if (t - S->last_beat >= S->o->heartbeat_ms / 1000.0) {
        uint64_t seq = (uint64_t)((t - S->t0) * 1000.0 / S->o->heartbeat_ms);
        for (int i = 0; i < SUP_N_SVC; i++)
            if (S->s[i].state == SV_READY)
                send_heartbeat(S, &S->s[i], seq);
        S->last_beat = t;
    }
}

/* ---- the loop -------------------------------------------------------------------------- */

static void handle_signals(sup *S)
{
    while (S->sigs_handled < g_sig_count) {
        S->sigs_handled++;
        int sig = g_sig_last;
        if (S->phase == PH_RUN) {
            request_stop(S, sig == SIGINT ? "SIGINT" : "SIGTERM");
        } else {
            if (S->phase != PH_TEARDOWN)
                LOG(S, LOG_LEVEL_WARN, "%s again: stopping every service now",
                    sig == SIGINT ? "SIGINT" : "SIGTERM");
            S->res->signal = sig;
            teardown(S, SUP_INTERRUPTED, 2.0);
        }
    }
}

static bool all_gone(const sup *S)
{
    for (int i = 0; i < SUP_N_SVC; i++)
        if (S->s[i].pid > 0)
            return false;
    return true;
}

static void loop(sup *S)
{
    for (;;) {
        zmq_pollitem_t it[1 + SUP_N_SVC];
        svc *who[1 + SUP_N_SVC];
        int n = 0;
        it[n] = (zmq_pollitem_t){.socket = S->ctl.sock, .events = ZMQ_POLLIN};
        who[n++] = NULL;
        for (int i = 0; i < SUP_N_SVC; i++)
            if (S->s[i].bus.sock != NULL) {
                it[n] = (zmq_pollitem_t){.socket = S->s[i].bus.sock, .events = ZMQ_POLLIN};
                who[n++] = &S->s[i];
            }
        int rc = zmq_poll(it, n, 100);
        if (rc < 0 && zmq_errno() != EINTR)
            LOG(S, LOG_LEVEL_ERROR, "zmq_poll: %s", zmq_strerror(zmq_errno()));
        handle_signals(S);
        for (int k = 0; rc > 0 && k < n; k++) {
            if (!(it[k].revents & ZMQ_POLLIN))
                continue;
            if (who[k] == NULL)
                serve_control(S);
            else
                drain(S, who[k]);
        }
        reap(S);
        timers(S);
        if ((S->phase == PH_FINISH || S->phase == PH_TEARDOWN) && all_gone(S))
            return;
    }
}

int sup_run(const sup_opts *o, sup_result *res, rt_err *err)
{
    memset(res, 0, sizeof *res);
    sup *S = calloc(1, sizeof *S);
    if (S == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    S->o = o;
    S->res = res;
    S->t0 = now_s();
    S->devnull = -1;
    S->next_req = 1;
    int rc = 0;
    for (int i = 0; i < SUP_N_SVC; i++) {
        svc *s = &S->s[i];
        s->idx = i;
        s->name = SVC_NAME[i];
        s->argv = o->argv[i];
        s->log_fd = -1;
        s->restart_at = i == SUP_WORKER ? -1 : 0; /* the worker waits for the other two */
        s->hb_ms = o->heartbeat_ms;
        snprintf(s->endpoint, sizeof s->endpoint, "ipc://%s/sock/%s", o->run_dir, s->name);
        snprintf(s->log_path, sizeof s->log_path, "%s/logs/%s.log", o->run_dir, s->name);
        s->log_fd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (s->log_fd < 0) {
            rc = err_set(err, -errno, "cannot open %s: %s", s->log_path, strerror(errno));
            goto out;
        }
    }
    S->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    S->zctx = zmq_ctx_new();
    if (S->devnull < 0 || S->zctx == NULL) {
        rc = err_set(err, -EIO, "cannot open /dev/null or a ZeroMQ context");
        goto out;
    }
    char ctl_ep[RD_PATH_MAX + 32];
    snprintf(ctl_ep, sizeof ctl_ep, "ipc://%s/sock/control", o->run_dir);
    if ((rc = bus_server_open(&S->ctl, o->run_id, "orchestrator", ctl_ep, err)) < 0)
        goto out;

    struct sigaction sa = {.sa_handler = on_stop_signal}, sc = {.sa_handler = on_sigchld,
                                                                 .sa_flags = SA_NOCLDSTOP};
    struct sigaction old_int, old_term, old_chld, old_pipe, ign = {.sa_handler = SIG_IGN};
    g_sig_count = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGCHLD, &sc, &old_chld);
    sigaction(SIGPIPE, &ign, &old_pipe);

    loop(S);

    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGCHLD, &old_chld, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);

    rt_err e2 = {{0}};
    if (rd_remove_state(o->run_id, o->spill_dir, &res->state_removed, &e2) < 0)
        LOG(S, LOG_LEVEL_ERROR, "%s", e2.msg);
    else if (res->state_removed > 0)
        LOG(S, res->outcome == SUP_DONE || res->outcome == SUP_STOPPED ? LOG_LEVEL_DEBUG
                                                                        : LOG_LEVEL_INFO,
            "removed %d shared-memory and spill object%s the services left", res->state_removed,
            res->state_removed == 1 ? "" : "s");
    if (res->steps_committed == 0)
        res->steps_committed = prog_steps_done(o->prog);
out:
    res->wall_s = now_s() - S->t0;
    bus_server_close(&S->ctl);
    for (int i = 0; i < SUP_N_SVC; i++) {
        bus_client_close(&S->s[i].bus);
        if (S->s[i].log_fd >= 0)
            close(S->s[i].log_fd);
    }
    if (S->zctx != NULL)
        zmq_ctx_term(S->zctx);
    if (S->devnull >= 0)
        close(S->devnull);
    free(S);
    return rc;
}
