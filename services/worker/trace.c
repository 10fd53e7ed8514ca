/*
 * trace: Chrome trace-event JSON spans (see trace.h).
 */
#include "services/worker/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct tr_trace {
    int fd;
    int pid;
    pthread_mutex_t mu;
};

static const char *const LANE_NAMES[] = {"", "compute", "copy in (weights)", "copy out (gradients)",
                                         "control"};

static void tr_write(tr_trace *t, const char *s, size_t n)
{
    pthread_mutex_lock(&t->mu);
    while (n > 0) {
        ssize_t w = write(t->fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* a trace that cannot be written does not stop training */
        s += w;
        n -= (size_t)w;
    }
    pthread_mutex_unlock(&t->mu);
}

int tr_open(const char *path, tr_trace **out, rt_err *err)
{
    *out = NULL;
    if (path == NULL)
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_set(err, -errno, "cannot open trace file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, -e, "cannot stat trace file %s: %s", path, strerror(e));
    }
    tr_trace *t = calloc(1, sizeof *t);
    if (t == NULL) {
        close(fd);
        return err_set(err, -ENOMEM, "out of memory");
    }
    t->fd = fd;
    t->pid = (int)getpid();
    pthread_mutex_init(&t->mu, NULL);
    char line[512];
    int n = 0;
    if (st.st_size == 0)
        n += snprintf(line + n, sizeof line - (size_t)n, "[\n");
    n += snprintf(line + n, sizeof line - (size_t)n,
                  "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":\"worker %d\"}},\n",
                  t->pid, t->pid);
    tr_write(t, line, (size_t)n);
    for (int lane = TR_COMPUTE; lane <= TR_CONTROL; lane++) {
        n = snprintf(line, sizeof line,
                     "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,"
                     "\"args\":{\"name\":\"%s\"}},\n",
                     t->pid, lane, LANE_NAMES[lane]);
        tr_write(t, line, (size_t)n);
    }
    *out = t;
    return 0;
}

double tr_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

void tr_span(tr_trace *t, int lane, const char *name, double t0_us, double t1_us, int block,
             uint64_t step, int micro)
{
    if (t == NULL)
        return;
    char line[384];
    int n;
    if (block >= 0)
        n = snprintf(line, sizeof line,
                     "{\"name\":\"%s\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":%d,\"tid\":%d,"
                     "\"args\":{\"block\":%d,\"step\":%llu,\"micro\":%d}},\n",
                     name, t0_us, t1_us - t0_us, t->pid, lane, block, (unsigned long long)step,
                     micro);
    else
        n = snprintf(line, sizeof line,
                     "{\"name\":\"%s\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":%d,\"tid\":%d,"
                     "\"args\":{\"step\":%llu}},\n",
                     name, t0_us, t1_us - t0_us, t->pid, lane, (unsigned long long)step);
    if (n > 0 && (size_t)n < sizeof line)
        tr_write(t, line, (size_t)n);
}

void tr_close(tr_trace *t, bool finished)
{
    if (t == NULL)
        return;
    if (finished) {
        char line[160];
        int n = snprintf(line, sizeof line,
                         "{\"name\":\"trace_end\",\"ph\":\"i\",\"s\":\"g\",\"ts\":%.3f,\"pid\":%d,\"tid\":%d}\n]\n",
                         tr_now_us(), t->pid, TR_CONTROL);
        tr_write(t, line, (size_t)n);
    }
    close(t->fd);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
