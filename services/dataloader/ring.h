/*
 * ring: the data loader's shared-memory ring of batch slots (DESIGN.md §1,
 * §4 step 1).
 *
 * One shared-memory object per run, "ramtrain.<run-id>.ring", in the same
 * directory the layer blocks use (RAMTRAIN_SHM_DIR, else /dev/shm), mode
 * 0600. A 4 KiB header page (magic, version, geometry, and per slot the
 * batch it holds and its state), then n_slots slots, each holding one
 * micro-batch of `rows` rows:
 *   tokens  int32  [rows][seq + 1]   inputs are [:, :seq], targets [:, 1:]
 *   mask    uint8  [rows][seq]       loss mask of each target token
 *   doc     uint32 [rows][seq + 1]   document index within the row (0, 1, ...)
 * each array 4 KiB aligned inside the slot, slots 4 KiB aligned (so a GPU
 * worker can register them and copy with a copy engine).
 *
 * Batch k lives in slot k % n_slots. The loader writes a slot and then
 * publishes (batch, READY) with a release store; the worker reads the batch
 * from the slot named in BatchReady and may check `batch` there. The loader
 * reuses a slot only after the worker has asked for a batch two past it, so
 * the batch the worker is still computing on is never overwritten.
 *
 * The ring holds no state worth keeping: batch k is a pure function of the
 * data config, the seed and k, so a restarted loader recreates the ring and
 * fills it again.
 */
#ifndef RAMTRAIN_DATALOADER_RING_H
#define RAMTRAIN_DATALOADER_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "storage/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RING_MAGIC 0x474e495254524d52ull /* "RMRTRING" little-endian */
#define RING_VERSION 1u
#define RING_MAX_SLOTS 64

enum ring_state {
    RING_EMPTY = 0,
    RING_FILLING = 1,
    RING_READY = 2,
};

typedef struct ring_slot_info {
    _Atomic uint64_t batch;           /* global micro-batch index k it holds */
    _Atomic uint32_t state;           /* ring_state */
    uint32_t n_rows;                  /* rows filled (= rows) */
} ring_slot_info;

typedef struct ring_header {
    uint64_t magic;                   /* RING_MAGIC, written last at creation */
    uint32_t version;                 /* RING_VERSION */
    uint32_t header_bytes;            /* sizeof(ring_header) */
    char run_id[64];
    uint32_t n_slots, rows, seq;      /* geometry */
    uint32_t pad;
    uint64_t slot_bytes;              /* bytes per slot, 4 KiB multiple */
    uint64_t slots_off;               /* offset of slot 0 (4096) */
    uint64_t tokens_off, mask_off, doc_off; /* offsets of the arrays inside a slot */
    uint64_t map_bytes;               /* size of the object */
    ring_slot_info slot[RING_MAX_SLOTS];
} ring_header;

_Static_assert(sizeof(ring_header) <= 4096, "ring_header must fit its page");

typedef struct ring {
    ring_header *hdr;                 /* = the mapping */
    uint64_t map_bytes;
    char path[256];
} ring;

/* Creates (replacing a stale one) the ring of run_id with n_slots slots of
 * rows x seq; maps it shared. Blocks while the kernel allocates. */
int ring_create(const char *run_id, uint32_t n_slots, uint32_t rows, uint32_t seq, ring *out,
                rt_err *err);

/* Maps an existing ring read/write and validates its header (magic,
 * version, run id, sizes). */
int ring_attach(const char *run_id, ring *out, rt_err *err);

/* Unmaps (the object stays). Safe on a zeroed ring. */
void ring_close(ring *r);

/* Removes the ring object of run_id; 0 or -ENOENT. */
int ring_unlink(const char *run_id, rt_err *err);

/* Array pointers of slot s. */
int32_t *ring_tokens(const ring *r, uint32_t s);
uint8_t *ring_mask(const ring *r, uint32_t s);
uint32_t *ring_doc(const ring *r, uint32_t s);

#ifdef __cplusplus
}
#endif

#endif
