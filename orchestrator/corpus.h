/*
 * corpus: the training text of `ramtrain run`'s embedded default run
 * (run_config.h, rc_default_yaml), generated here so that the default run
 * needs no download.
 *
 * Short children's stories from a small probabilistic grammar (a few hundred
 * words, a dozen sentence kinds with several templates each, characters
 * that keep their names and pronouns through a story): English-like, and
 * far more predictable than its byte frequencies, so a small byte-level
 * model learns it well below the unigram entropy. Each story is one
 * paragraph on one line; stories are separated by blank lines.
 *
 * Threads: no shared state.
 */
#ifndef RAMTRAIN_ORCH_CORPUS_H
#define RAMTRAIN_ORCH_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "storage/err.h"

#define CORPUS_MAX_STORY 4096 /* bytes: no story (with its separator) is longer */

/* Writes whole stories, as many as fit in `bytes`, to path: the file is at
 * most `bytes` and more than bytes - CORPUS_MAX_STORY long, and the same seed
 * gives the same bytes on every machine. bytes must be at least
 * CORPUS_MAX_STORY. Atomic (temp file, fsync, rename). Blocks on I/O. */
int corpus_write(const char *path, size_t bytes, uint64_t seed, rt_err *err);

/* Fills out[cap] with the stories corpus_write(path, cap, seed) writes and
 * returns their length (the same bytes, without the file). */
size_t corpus_fill(char *out, size_t cap, uint64_t seed);

#endif
