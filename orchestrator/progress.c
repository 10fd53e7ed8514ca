/*
 * progress: metrics.jsonl, the progress line and the orchestrator's log
 * (see progress.h).
 *
 * metrics.jsonl lines are built with jansson (a checkpoint path may hold any
 * byte) and written with one write(2) each, so a reader tailing the file
 * never sees half a line.
 *
 * Rejected: a second thread redrawing the line on a timer (the ETA would
 * tick between steps). Nothing here is worth a thread: the line is redrawn
 * when a step lands or a log line went past it.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orchestrator/progress.h"

typedef struct prog_sample {
    double seconds, compute, weights, optimizer, data;
    uint64_t tokens_seen;
} prog_sample;

struct prog {
    int metrics_fd, log_fd;
    uint64_t total;
    bool tty;
    bool drawn;                        /* a progress line is on the terminal */
    bool any;                          /* a step was recorded in this session */
    uint64_t last_step;                /* 0-based step of the last record */
    int64_t recorded;                  /* highest step in metrics.jsonl, this session or an
                                          earlier one (-1: none): a resumed run that redoes
                                          steps does not record them twice */
    double last_loss;
    uint64_t every;                    /* non-tty: log every this many steps */
    prog_sample win[PROG_WINDOW];      /* ring of the last steps */
    int n_win, win_next;
    double sum_seconds;                /* this session's recorded steps */
    uint64_t sum_tokens_seen;
    char line[512];                    /* the progress line as last drawn */
};

/* The step of the last complete line of metrics.jsonl (fd), or -1. */
static int64_t last_recorded(int fd)
{
    char buf[8192];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t start = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
    ssize_t n = end > 0 ? pread(fd, buf, (size_t)(end - start), start) : 0;
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    while (n > 0 && buf[n - 1] != '\n')
        buf[--n] = '\0'; /* a torn last line (a killed orchestrator) does not count */
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    char *line = strrchr(buf, '\n');
    line = line != NULL ? line + 1 : buf;
    json_t *o = json_loads(line, 0, NULL);
    json_t *step = json_object_get(o, "step");
    int64_t r = json_is_integer(step) ? (int64_t)json_integer_value(step) : -1;
    json_decref(o);
    return r;
}

int prog_open(const char *run_dir, uint64_t total, bool tty, prog **out, rt_err *err)
{
    prog *p = calloc(1, sizeof *p);
    if (p == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    p->metrics_fd = p->log_fd = -1;
    p->total = total;
    p->tty = tty;
    p->every = total <= 50 ? 1 : (total + 99) / 100;
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    p->metrics_fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (p->metrics_fd < 0) {
        int e = errno;
        free(p);
        return err_set(err, -e, "cannot open %s: %s", path, strerror(e));
    }
    p->recorded = last_recorded(p->metrics_fd);
    snprintf(path, sizeof path, "%s/logs/orchestrator.log", run_dir);
    p->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (p->log_fd < 0) {
        int e = errno;
        close(p->metrics_fd);
        free(p);
        return err_set(err, -e, "cannot open %s: %s", path, strerror(e));
    }
    *out = p;
    return 0;
}

static void clear_line(prog *p)
{
    if (p != NULL && p->drawn) {
        static const char CLR[] = "\r\033[K";
        if (write(STDERR_FILENO, CLR, sizeof CLR - 1) < 0) {
            /* stderr gone: nothing to clear */
        }
        p->drawn = false;
    }
}

static void draw_line(prog *p)
{
    if (p == NULL || !p->tty || p->line[0] == '\0')
        return;
    char buf[600];
    int n = snprintf(buf, sizeof buf, "\r\033[K%s", p->line);
    if (write(STDERR_FILENO, buf, (size_t)n) == n)
        p->drawn = true;
}

void prog_close(prog *p)
{
    if (p == NULL)
        return;
    if (p->drawn && write(STDERR_FILENO, "\n", 1) < 0) {
        /* stderr gone */
    }
    close(p->metrics_fd);
    close(p->log_fd);
    free(p);
}

void prog_log(prog *p, enum log_level level, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (level > log_get_level())
        return;
    clear_line(p);
    log_write(level, "%s", msg);
    if (p != NULL && p->log_fd >= 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char stamp[40], line[LOG_LINE_MAX + 128];
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        int n = snprintf(line, sizeof line, "%s.%06ldZ orchestrator[%ld] %s: %s\n", stamp,
                         ts.tv_nsec / 1000, (long)getpid(), log_level_name(level), msg);
        if (n > (int)sizeof line)
            n = (int)sizeof line;
        if (write(p->log_fd, line, (size_t)n) < 0) {
            /* the log is best effort: stderr has the line */
        }
    }
    draw_line(p);
}

void prog_fmt_duration(double s, char *buf, size_t len)
{
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, len, "?");
        return;
    }
    uint64_t t = (uint64_t)(s + 0.5);
    if (t < 60)
        snprintf(buf, len, "%llus", (unsigned long long)t);
    else if (t < 3600)
        snprintf(buf, len, "%llum%02llus", (unsigned long long)(t / 60),
                 (unsigned long long)(t % 60));
    else
        snprintf(buf, len, "%lluh%02llum", (unsigned long long)(t / 3600),
                 (unsigned long long)(t / 60 % 60));
}

static void fmt_rate(double r, char *buf, size_t len)
{
    if (r < 1000)
        snprintf(buf, len, "%.0f", r);
    else if (r < 1e6)
        snprintf(buf, len, "%.1fk", r / 1e3);
    else
        snprintf(buf, len, "%.1fM", r / 1e6);
}

/* Sums of the window. */
static prog_sample window_sum(const prog *p)
{
    prog_sample s = {0};
    for (int i = 0; i < p->n_win; i++) {
        s.seconds += p->win[i].seconds;
        s.compute += p->win[i].compute;
        s.weights += p->win[i].weights;
        s.optimizer += p->win[i].optimizer;
        s.data += p->win[i].data;
        s.tokens_seen += p->win[i].tokens_seen;
    }
    return s;
}

void prog_describe(const prog *p, char *buf, size_t len)
{
    if (!p->any) {
        snprintf(buf, len, "step 0/%llu  (no step reported yet)", (unsigned long long)p->total);
        return;
    }
    prog_sample s = window_sum(p);
    uint64_t done = p->last_step + 1;
    char rate[32], eta[32];
    fmt_rate(s.seconds > 0 ? (double)s.tokens_seen / s.seconds : 0, rate, sizeof rate);
    double per_step = p->n_win > 0 ? s.seconds / p->n_win : 0;
    prog_fmt_duration(done >= p->total ? 0 : per_step * (double)(p->total - done), eta, sizeof eta);
    snprintf(buf, len, "step %llu/%llu  loss %.3f  %s tok/s  ETA %s", (unsigned long long)done,
             (unsigned long long)p->total, p->last_loss, rate, eta);
}

static int pct(double part, double whole)
{
    return whole > 0 ? (int)(100.0 * part / whole + 0.5) : 0;
}

static void write_metrics(prog *p, const Ramtrain__StepReport *r)
{
    json_t *o = json_object();
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double secs = r->has_seconds ? r->seconds : 0;
    json_object_set_new(o, "step", json_integer((json_int_t)r->step));
    if (r->has_loss)
        json_object_set_new(o, "loss", json_real(r->loss));
    if (r->has_lr)
        json_object_set_new(o, "lr", json_real(r->lr));
    if (r->has_grad_norm)
        json_object_set_new(o, "grad_norm", json_real(r->grad_norm));
    json_object_set_new(o, "tokens", json_integer((json_int_t)r->tokens));
    json_object_set_new(o, "tokens_seen", json_integer((json_int_t)r->tokens_seen));
    json_object_set_new(o, "seconds", json_real(secs));
    json_object_set_new(o, "tokens_per_s",
                        json_real(secs > 0 ? (double)r->tokens_seen / secs : 0));
    json_object_set_new(o, "compute_s", json_real(r->compute_s));
    json_object_set_new(o, "wait_weights_s", json_real(r->wait_weights_s));
    json_object_set_new(o, "wait_optimizer_s", json_real(r->wait_optimizer_s));
    json_object_set_new(o, "wait_data_s", json_real(r->wait_data_s));
    if (r->checkpoint_path != NULL && r->checkpoint_path[0]) {
        json_object_set_new(o, "checkpoint", json_string(r->checkpoint_path));
        json_object_set_new(o, "checkpoint_s", json_real(r->checkpoint_s));
    }
    struct tm tm;
    char stamp[48], iso[64];
    gmtime_r(&now.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(iso, sizeof iso, "%s.%03ldZ", stamp, now.tv_nsec / 1000000);
    json_object_set_new(o, "time", json_string(iso));
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (s == NULL)
        return;
    size_t n = strlen(s);
    char *line = realloc(s, n + 2);
    if (line == NULL) {
        free(s);
        return;
    }
    line[n] = '\n';
    if (write(p->metrics_fd, line, n + 1) != (ssize_t)(n + 1))
        prog_log(p, LOG_LEVEL_WARN, "metrics.jsonl: cannot append step %llu: %s",
                 (unsigned long long)r->step, strerror(errno));
    free(line);
}

int prog_step(prog *p, const Ramtrain__StepReport *r)
{
    if (!r->has_step || (p->any && r->step <= p->last_step))
        return 0;
    if ((int64_t)r->step > p->recorded) {
        write_metrics(p, r);
        p->recorded = (int64_t)r->step;
    }
    p->any = true;
    p->last_step = r->step;
    p->last_loss = r->has_loss ? r->loss : 0;
    prog_sample *w = &p->win[p->win_next];
    *w = (prog_sample){.seconds = r->seconds, .compute = r->compute_s,
                       .weights = r->wait_weights_s, .optimizer = r->wait_optimizer_s,
                       .data = r->wait_data_s, .tokens_seen = r->tokens_seen};
    p->win_next = (p->win_next + 1) % PROG_WINDOW;
    if (p->n_win < PROG_WINDOW)
        p->n_win++;
    p->sum_seconds += r->seconds;
    p->sum_tokens_seen += r->tokens_seen;

    char head[256];
    prog_describe(p, head, sizeof head);
    prog_sample s = window_sum(p);
    char split[160];
    snprintf(split, sizeof split, "compute %d%% | weights %d%% | optimizer %d%% | data %d%%",
             pct(s.compute, s.seconds), pct(s.weights, s.seconds), pct(s.optimizer, s.seconds),
             pct(s.data, s.seconds));
    uint64_t done = r->step + 1;
    if (p->tty) {
        snprintf(p->line, sizeof p->line, "%s  %s", head, split);
        clear_line(p);
        draw_line(p);
        if (r->checkpoint_path != NULL && r->checkpoint_path[0])
            prog_log(p, LOG_LEVEL_INFO, "checkpoint %s (%.2f s)", r->checkpoint_path,
                     r->checkpoint_s);
    } else if (done % p->every == 0 || done >= p->total || done == 1) {
        prog_log(p, LOG_LEVEL_INFO, "%s  %s%s%s", head, split,
                 r->checkpoint_path != NULL && r->checkpoint_path[0] ? "  checkpoint " : "",
                 r->checkpoint_path != NULL ? r->checkpoint_path : "");
    }
    return 1;
}

uint64_t prog_steps_done(const prog *p)
{
    return p->any ? p->last_step + 1 : 0;
}

bool prog_last_loss(const prog *p, double *loss)
{
    *loss = p->last_loss;
    return p->any;
}

double prog_tokens_per_s(const prog *p)
{
    return p->sum_seconds > 0 ? (double)p->sum_tokens_seen / p->sum_seconds : 0;
}
