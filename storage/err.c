/*
 * err: formatting of module errors (see err.h). Messages are truncated, never
 * overflowed; a truncated message still names its subject first.
 */
#include "storage/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int err_set(rt_err *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

int err_prefix(rt_err *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* msg becomes "prefix: old", truncated at the end if needed. */
    size_t cap = sizeof err->msg - 1;
    size_t pl = strlen(prefix) + 2; /* <= 513: prefix holds at most 511 */
    size_t ol = strlen(err->msg);
    if (ol > cap - pl)
        ol = cap - pl;
    memmove(err->msg + pl, err->msg, ol);
    memcpy(err->msg, prefix, pl - 2);
    err->msg[pl - 2] = ':';
    err->msg[pl - 1] = ' ';
    err->msg[pl + ol] = '\0';
    return code;
}
