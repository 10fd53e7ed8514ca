/*
 * fio_ref: runs fio as the reference of the storage benchmarks (DESIGN.md
 * §7: every benchmark measures its reference in the same run).
 */
#ifndef RAMTRAIN_BENCH_FIO_REF_H
#define RAMTRAIN_BENCH_FIO_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Finds fio in PATH into path[len]; 0, or -1 with a message naming the
 * Debian package on stderr. */
int fio_find(char *path, size_t len);

/* Runs one sequential O_DIRECT job (io_uring engine, fio's own unregistered
 * buffers) on file: write or read, `size` bytes in `bs`-byte requests at
 * queue depth `depth`. Returns fio's bandwidth in bytes/s (> 0), or a
 * negative value after printing why. version (may be NULL) gets fio's
 * "fio version" string in version[vlen], left as it was when the report has
 * none. Blocks for the whole run. */
double fio_seq(const char *fio, const char *file, bool write, uint64_t bs, unsigned depth,
               uint64_t size, char *version, size_t vlen);

#endif
