/*
 * err: the error value every module returns through.
 *
 * Module functions return 0 or a negative errno and, on failure, fill an
 * rt_err with one line that names the file, key or tensor at fault and what
 * was expected. The caller decides whether to print it; nothing here exits.
 * Rejected: a thread-local "last error" string. It hides which call failed
 * and breaks when two modules fail in one call chain.
 */
#ifndef RAMTRAIN_STORAGE_ERR_H
#define RAMTRAIN_STORAGE_ERR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rt_err {
    char msg[1024]; /* one line, no trailing newline; "" when nothing failed */
} rt_err;

/* Formats msg into err (when err is not NULL) and returns code (a negative errno). */
int err_set(rt_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to err's message; returns code. */
int err_prefix(rt_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif
