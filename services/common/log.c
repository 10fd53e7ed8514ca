/*
 * log: one-line log records on stderr (see log.h).
 *
 * The only process-wide state is the name and the level, set at start-up.
 * The pid is read per record (getpid is cheap) so a forked child logs its own
 * pid without calling log_init again. Peer-supplied text (names, paths) can
 * end up in a record, so control characters are replaced: one record must
 * stay one line for anyone who parses the logs.
 */
#include "services/common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static char log_name[LOG_NAME_MAX] = "ramtrain";
static atomic_int log_level = LOG_LEVEL_INFO;

static const char *const log_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

int log_level_parse(const char *s, enum log_level *level)
{
    if (s == NULL)
        return -EINVAL;
    for (int i = LOG_LEVEL_ERROR; i <= LOG_LEVEL_DEBUG; i++) {
        if (strcasecmp(s, log_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *log_level_name(enum log_level level)
{
    if ((int)level < LOG_LEVEL_ERROR || level > LOG_LEVEL_DEBUG)
        return "?";
    return log_names[level];
}

void log_set_level(enum log_level level)
{
    if ((int)level < LOG_LEVEL_ERROR)
        level = LOG_LEVEL_ERROR;
    if (level > LOG_LEVEL_DEBUG)
        level = LOG_LEVEL_DEBUG;
    /* Relaxed: the level only gates output; no other data hangs on it. */
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

enum log_level log_get_level(void)
{
    return (enum log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

int log_init(const char *name, enum log_level level)
{
    if (name != NULL && name[0] != '\0')
        snprintf(log_name, sizeof log_name, "%s", name);
    log_set_level(level);

    const char *env = getenv(LOG_ENV);
    if (env == NULL || env[0] == '\0')
        return 0;
    enum log_level from_env;
    if (log_level_parse(env, &from_env) != 0) {
        log_warn("%s=\"%.32s\" is not one of error, warn, info, debug; using %s",
                 LOG_ENV, env, log_level_name(level));
        return -EINVAL;
    }
    log_set_level(from_env);
    return 0;
}

/* Formats "2025-01-31T12:34:56.123456Z" into buf; returns its length. */
static size_t log_timestamp(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(buf + n, cap - n, ".%06ldZ", ts.tv_nsec / 1000);
    return m < 0 ? n : n + (size_t)m;
}

void log_write(enum log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed))
        return;
    int saved_errno = errno;

    /* The record is formatted NUL-terminated into line; the '\n' then takes
     * the NUL's place, so the written record is at most LOG_LINE_MAX bytes. */
    char line[LOG_LINE_MAX];
    const size_t body_cap = sizeof line;
    char ts[40];
    log_timestamp(ts, sizeof ts);
    int head = snprintf(line, body_cap, "%s %s[%ld] %s: ", ts, log_name, (long)getpid(),
                        log_level_name(level));
    if (head < 0 || (size_t)head >= body_cap)
        head = 0;

    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + head, body_cap - (size_t)head, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;

    size_t len = (size_t)head + (size_t)n;
    int cut = len > body_cap - 1;
    if (cut)
        len = body_cap - 1;
    while (!cut && len > (size_t)head && line[len - 1] == '\n')
        len--;
    for (size_t i = (size_t)head; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7f)
            line[i] = ' ';
    }
    if (cut)
        memcpy(line + len - 3, "...", 3);
    line[len++] = '\n';

    size_t off = 0;
    while (off < len) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* stderr is gone: nowhere left to report it */
        off += (size_t)w;
    }
    errno = saved_errno;
}
