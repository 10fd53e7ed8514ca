/*
 * progress: what `ramtrain run` shows and records about the training.
 *
 * - metrics.jsonl: one JSON object per step, from the first StepReport of
 *   each step (a restarted worker may report a step again, a resumed run may
 *   redo steps after its checkpoint: the file keeps the first).
 * - On a terminal (stderr is a tty): one progress line redrawn in place,
 *     step 12/200  loss 2.345  1.2k tok/s  ETA 3m20s  compute 81% | weights 4% | optimizer 10% | data 5%
 *   otherwise a plain log line per step for runs of at most 50 steps, and
 *   about every 1% of the steps beyond that.
 * - The orchestrator's own log lines (prog_log) go to stderr, with the
 *   progress line cleared first and redrawn after, and to
 *   logs/orchestrator.log.
 *
 * Rates and the ETA use the last PROG_WINDOW steps, so a slow first step
 * (the paramserver faulting pages in) does not skew them for long.
 *
 * Threads: one; the orchestrator's main loop.
 */
#ifndef RAMTRAIN_ORCH_PROGRESS_H
#define RAMTRAIN_ORCH_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ramtrain.pb-c.h"
#include "services/common/log.h"
#include "storage/err.h"

#define PROG_WINDOW 16                 /* steps averaged for tok/s, ETA and the time split */

typedef struct prog prog;

/* Opens run_dir/metrics.jsonl and run_dir/logs/orchestrator.log for
 * appending. total: train.steps; tty: draw the redrawn line. *out is freed
 * with prog_close. */
int prog_open(const char *run_dir, uint64_t total, bool tty, prog **out, rt_err *err);

/* Ends the progress line (a newline when one is drawn) and closes the files.
 * NULL is fine. */
void prog_close(prog *p);

/* One log record: log_write to stderr (the progress line cleared before and
 * redrawn after) and the same line to logs/orchestrator.log. p may be NULL
 * (stderr only). */
void prog_log(prog *p, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Takes a StepReport: when it is the first report of its step in this
 * session, updates the display and returns 1 (a repeat returns 0), and
 * appends its metrics line unless metrics.jsonl already has the step (a
 * resumed run redoing steps after its last checkpoint). */
int prog_step(prog *p, const Ramtrain__StepReport *r);

/* Steps completed according to the reports (last step + 1; 0 before any). */
uint64_t prog_steps_done(const prog *p);

/* Whether a report came, and the last one's loss. */
bool prog_last_loss(const prog *p, double *loss);

/* Input tokens per second over this session's steps (0 before any). */
double prog_tokens_per_s(const prog *p);

/* "step 12/200  loss 2.345  1.2k tok/s  ETA 3m20s" (or "no step reported
 * yet") into buf[len]. */
void prog_describe(const prog *p, char *buf, size_t len);

/* "3m20s", "45s", "2h05m" for seconds s. */
void prog_fmt_duration(double s, char *buf, size_t len);

#endif
