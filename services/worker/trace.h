/*
 * trace: Chrome trace-event JSON of the worker's pipeline (copy, compute and
 * wait spans per block), viewable in Perfetto or chrome://tracing.
 *
 * The file is the JSON Array Format: "[" and then one complete event ("ph":
 * "X", microsecond timestamps on CLOCK_MONOTONIC) per line, each followed by
 * a comma. The format allows the closing "]" to be missing, so a file cut
 * short by a kill still loads; a restarted worker appends its events to the
 * same file (its pid tells the incarnations apart), and tr_close writes a
 * last metadata event and the "]" when the run ends cleanly.
 *
 * Threads: tr_span may be called from any thread; events are formatted on
 * the caller's stack and appended under a mutex with one write(2) each
 * (O_APPEND), so a kill never leaves half an event from another thread.
 */
#ifndef RAMTRAIN_WORKER_TRACE_H
#define RAMTRAIN_WORKER_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#include "storage/err.h"

enum tr_lane {
    TR_COMPUTE = 1, /* the compute path (the backend) */
    TR_COPY_IN = 2, /* weights into the worker's buffers */
    TR_COPY_OUT = 3,/* gradients into the G slots */
    TR_CONTROL = 4, /* data, optimizer and checkpoint requests */
};

typedef struct tr_trace tr_trace;

/* Opens (creating, or appending to) path. NULL path: *out = NULL, and every
 * call below is a no-op on NULL. */
int tr_open(const char *path, tr_trace **out, rt_err *err);

/* Microseconds on CLOCK_MONOTONIC (the trace's clock). */
double tr_now_us(void);

/* One complete span [t0_us, t1_us) on lane `lane` named name (static or
 * caller-owned text without quotes), with block/step/micro args (a negative
 * block leaves them out). */
void tr_span(tr_trace *t, int lane, const char *name, double t0_us, double t1_us, int block,
             uint64_t step, int micro);

/* Closes the file; finished: write the closing metadata event and "]". */
void tr_close(tr_trace *t, bool finished);

#endif
