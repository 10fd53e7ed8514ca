/*
 * log: leveled, one-line log records on stderr.
 *
 * Each record is one line:
 *   2025-01-31T12:34:56.123456Z worker[4242] WARN: FetchLayer(3) timed out
 * (UTC, so lines from several hosts sort together). The orchestrator captures
 * each service's stderr into the run directory; nothing here opens files.
 *
 * Threads: a record is formatted on the caller's stack and written with one
 * write(2) of at most LOG_LINE_MAX bytes (<= PIPE_BUF), so records from
 * several threads, or several processes sharing one pipe, never interleave.
 * log_init() is meant to run once at start-up, before threads exist; the
 * level is an atomic so log_set_level() is safe at any time.
 *
 * Rejected: syslog (services run under the orchestrator, not a daemon
 * manager, and per-run logs belong in the run directory); stdio (FILE locks
 * and buffering split long lines across several writes).
 */
#ifndef RAMTRAIN_SERVICES_COMMON_LOG_H
#define RAMTRAIN_SERVICES_COMMON_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

/* Not LOG_ERR/LOG_INFO...: those are <syslog.h> macros. */
enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

#define LOG_ENV "RAMTRAIN_LOG"  /* error|warn|info|debug; overrides log_init's level */
#define LOG_NAME_MAX 32         /* process names are truncated to this (with the NUL) */
#define LOG_LINE_MAX 4096       /* = PIPE_BUF on Linux: one atomic write */

/* Sets the process name and level for all later records. When RAMTRAIN_LOG is
 * set it overrides level; an unknown value keeps level, logs a warning naming
 * the variable and returns -EINVAL. Returns 0 otherwise. Not thread-safe:
 * call before starting threads. Before any call, name is "ramtrain" and the
 * level is info. */
int log_init(const char *name, enum log_level level);

/* Changes the level; any thread, any time. */
void log_set_level(enum log_level level);

/* Returns the current level. */
enum log_level log_get_level(void);

/* Parses "error", "warn", "info" or "debug" (case-insensitive) into *level.
 * Returns 0, or -EINVAL for anything else (leaving *level untouched). */
int log_level_parse(const char *s, enum log_level *level);

/* Returns "ERROR", "WARN", "INFO" or "DEBUG" (static storage). */
const char *log_level_name(enum log_level level);

/* Writes one record when level is enabled. A trailing newline in fmt is
 * dropped, embedded control characters become spaces, and a record longer
 * than LOG_LINE_MAX is cut and ends in "...". Preserves errno. Blocks only
 * as long as write(2) to stderr does. */
void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__)

#ifdef __cplusplus
}
#endif

#endif
