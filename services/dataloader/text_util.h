/*
 * text_util: small helpers shared by the data loader's modules (tokenizer,
 * data) and the commands built on them (ramtrain data, ramtrain tokenize):
 * the name of a JSON value's type for error messages, and writing a whole
 * buffer to a descriptor. Stateless; safe from any thread.
 */
#ifndef RAMTRAIN_DATALOADER_TEXT_UTIL_H
#define RAMTRAIN_DATALOADER_TEXT_UTIL_H

#include <jansson.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The name of v's JSON type ("object", "array", "string", "integer", "real",
 * "true", "false", "null"); a static string. v must not be NULL. */
const char *tu_json_kind(const json_t *v);

/* Writes p[0..len) to fd, retrying short writes and EINTR; blocks. Returns 0
 * or a negative errno. */
int tu_write_all(int fd, const void *p, size_t len);

#ifdef __cplusplus
}
#endif

#endif
