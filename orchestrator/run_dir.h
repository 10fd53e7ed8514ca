/*
 * run_dir: the run directory of `ramtrain run` and what identifies a run.
 *
 *   DIR/config.yaml         the resolved run config (every service reads it)
 *   DIR/model/config.json   the model's config.json
 *   DIR/run_id              "r" + 12 hex digits, made once when DIR is created
 *   DIR/lock                flock'd by the orchestrator for the life of the
 *                           run; holds its pid as text
 *   DIR/logs/               <service>.log (stdout+stderr, appended across
 *                           restarts) and orchestrator.log
 *   DIR/metrics.jsonl       one line per step
 *   DIR/checkpoints/        step-N/ directories (storage/checkpoint.h)
 *   DIR/sock/               the services' and the orchestrator's ipc sockets
 *   DIR/data/               the corpus of the embedded default config
 *
 * A run also keeps state outside DIR: the layer blocks, the paramserver's
 * undo journal and the batch ring in shared memory, and the spill file.
 * rd_remove_state deletes them (by name, as `ramtrain clean` does); the
 * checkpoints are never removed.
 *
 * The lock is the one source of truth for "a run is alive in DIR": the
 * kernel drops a flock when its holder dies, however it dies, so a stale
 * lock file never blocks the next run.
 *
 * Threads: none; plain functions on the caller's thread, blocking on small
 * file-system calls.
 */
#ifndef RAMTRAIN_ORCH_RUN_DIR_H
#define RAMTRAIN_ORCH_RUN_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "storage/err.h"

#define RD_PATH_MAX 4096
#define RD_RUN_ID_LEN 14               /* "r" + 12 hex digits + NUL */
#define RD_RUNS_DIR "runs"             /* default parent of run directories */
#define RD_LATEST "latest"             /* RD_RUNS_DIR/latest -> the newest default run */
/* sun_path holds 108 bytes with its NUL: the longest socket path ZeroMQ's ipc
 * transport can bind. DIR/sock/paramserver must fit. */
#define RD_SOCK_PATH_MAX 107

/* Makes path absolute against the current directory (no symlinks resolved;
 * the path need not exist) into out[len]. 0 or -ENAMETOOLONG / -errno. */
int rd_abspath(const char *path, char *out, size_t len, rt_err *err);

/* The default run directory RD_RUNS_DIR/run-YYYYmmdd-HHMMSS (local time) in
 * out[len]; "-2", "-3", ... are appended while the name exists. Creates
 * nothing. */
int rd_default_path(char *out, size_t len, rt_err *err);

/* Points RD_RUNS_DIR/latest at dir's last component (a relative symlink,
 * replaced atomically). */
int rd_latest_update(const char *dir, rt_err *err);

/* Checks whether a live orchestrator holds DIR/lock, without creating or
 * changing anything: 0 when DIR or its lock file is absent or the lock is
 * free; -EBUSY with *holder (the pid written in the file, 0 when unreadable)
 * and err "run directory DIR is in use by pid N" when it is held. */
int rd_lock_probe(const char *dir, pid_t *holder, rt_err *err);

/* Takes DIR/lock (creating it) with flock(LOCK_EX | LOCK_NB) and writes our
 * pid into it. *fd (O_CLOEXEC) holds the lock until it is closed or the
 * process ends. -EBUSY as rd_lock_probe when another process holds it. */
int rd_lock_take(const char *dir, int *fd, rt_err *err);

/* True when dir exists and holds at least one entry. */
bool rd_nonempty(const char *dir);

/* Creates DIR and its logs/, checkpoints/, sock/, model/ and data/ (mkdir -p). */
int rd_make_layout(const char *dir, rt_err *err);

/* Makes a new run id for dir (which must exist): "r" + the low 48 bits, in
 * hex, of FNV-1a over its real path and the current time in nanoseconds. */
int rd_run_id_new(const char *dir, char out[RD_RUN_ID_LEN], rt_err *err);

/* Reads DIR/run_id into out[len] and checks it (bs_run_id_check). -ENOENT
 * with "DIR is not a run directory (no DIR/run_id)" when it is missing. */
int rd_run_id_read(const char *dir, char *out, size_t len, rt_err *err);

/* Writes len bytes to path atomically (path.tmp, fsync, rename). */
int rd_write_file(const char *path, const void *buf, size_t len, rt_err *err);

/* Removes what run_id keeps outside the run directory: every
 * "ramtrain.<run_id>.<shard>.<block>", ".<shard>.journal" and ".ring" object
 * in $RAMTRAIN_SHM_DIR, /dev/hugepages and /dev/shm, and, when spill_dir is
 * not NULL, "ramtrain.<run_id>.<shard>.spill" in it. *n (may be NULL) gets
 * the count removed. 0, or the first unlink error with err naming the path
 * (it goes on with the rest). */
int rd_remove_state(const char *run_id, const char *spill_dir, int *n, rt_err *err);

/* True when the file name is one of run_id's objects: in shared memory (spill
 * false) "ramtrain.<id>.ring", "ramtrain.<id>.<shard>.journal" or
 * "ramtrain.<id>.<shard>.<block>"; in a spill directory (spill true)
 * "ramtrain.<id>.<shard>.spill". */
bool rd_is_run_object(const char *name, const char *run_id, bool spill);

/* Last lines of a log file: at most n lines from the last 16 KiB of path,
 * each prefixed with `indent`, into out[len] (NUL-terminated; "" when the
 * file is empty or unreadable). */
void rd_log_tail(const char *path, int n, const char *indent, char *out, size_t len);

#endif
