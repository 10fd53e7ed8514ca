/*
 * safetensors: reading and writing Hugging Face's safetensors format.
 *
 * A file is: u64 little-endian header length N, N bytes of JSON, then the
 * data section. The JSON maps tensor names to {dtype, shape, data_offsets}
 * (offsets relative to the data section) plus an optional "__metadata__"
 * object of string values. A checkpoint is one file or several shards named
 * by "model.safetensors.index.json" ({"metadata":{...}, "weight_map":{name: file}}).
 *
 * Reading maps each file read-only (mmap) and validates the whole header on
 * open: duplicate keys, unknown dtypes, shapes whose byte count disagrees with
 * the offsets, offsets that overlap, leave holes or run past the file are all
 * errors naming the file and the tensor. Tensor data is never copied by the
 * reader; st_tensor_read_f32 converts into a caller buffer.
 *
 * Writing collects (name, dtype, shape, pointer) entries that the caller keeps
 * alive, then writes header and data to "<path>.tmp" and renames it over
 * <path> after fsync, so a crash never leaves a half-written checkpoint under
 * the final name.
 *
 * Threads: an open st_set is read-only and may be shared; a writer is not.
 */
#ifndef RAMTRAIN_STORAGE_SAFETENSORS_H
#define RAMTRAIN_STORAGE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "storage/dtype.h"
#include "storage/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20) /* header JSON larger than this is rejected */

typedef struct st_tensor {
    char *name;                    /* owned by the set */
    dt_type dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
    const void *data;              /* into the file's read-only mapping */
    const char *file;              /* path of the file holding it, owned by the set */
} st_tensor;

typedef struct st_meta {
    char *key, *value;             /* owned by the set */
} st_meta;

typedef struct st_set {
    int n_files;
    struct st_mapped *files;       /* private: one per file */
    int n_tensors;
    st_tensor *tensors;            /* sorted by name */
    int n_meta;
    st_meta *meta;                 /* "__metadata__" of the first file */
} st_set;

/* Opens one .safetensors file, a "*.index.json" of a sharded checkpoint, or a
 * directory holding model.safetensors or model.safetensors.index.json.
 * On success *out is a new set the caller frees with st_close. Blocks on I/O. */
int st_open(const char *path, st_set **out, rt_err *err);

/* Unmaps and frees everything the set owns; NULL is allowed. */
void st_close(st_set *set);

/* The tensor called name, or NULL. Borrowed from set. */
const st_tensor *st_find(const st_set *set, const char *name);

/* The metadata value for key, or NULL. Borrowed from set. */
const char *st_meta_get(const st_set *set, const char *key);

/* Number of elements of t. */
uint64_t st_numel(const st_tensor *t);

/* Bytes of a tensor of that shape and dtype into *out: 0, or -EOVERFLOW
 * when the count does not fit in 64 bits. */
int st_shape_bytes(const int64_t *shape, int ndim, dt_type dtype, uint64_t *out);

/* Converts t to fp32 into dst, which holds n floats; n must equal st_numel(t).
 * Errors (naming the tensor and file) for a non-float dtype or a size mismatch. */
int st_tensor_read_f32(const st_tensor *t, float *dst, uint64_t n, rt_err *err);

/* One tensor of a header being encoded. */
typedef struct st_entry {
    const char *name;              /* borrowed */
    dt_type dtype;
    int ndim;                      /* 0..ST_MAX_DIMS */
    const int64_t *shape;          /* [ndim], borrowed */
    uint64_t nbytes;               /* of its data */
} st_entry;

/* Encodes the start of a safetensors file holding ents[0..n) packed in that
 * order: the 8-byte little-endian header length, then the header JSON
 * ("__metadata__" from meta_kv = {key, value, ..., NULL} first, when meta_kv
 * is neither NULL nor empty; then the tensors), padded with spaces so the
 * whole is a multiple of align bytes (a power of two, 8 or more): the data
 * section starts there. *head (malloc'd; the caller frees it) gets
 * *head_len bytes. Errors name path and the key or tensor. */
int st_header_encode(const char *path, const st_entry *ents, int n, const char *const *meta_kv, size_t align,
                     uint8_t **head, size_t *head_len, rt_err *err);

typedef struct st_writer {
    int n, cap;
    struct st_wentry *entries;     /* private */
    int n_meta, cap_meta;
    st_meta *meta;                 /* copies, owned by the writer */
} st_writer;

/* Prepares an empty writer. */
void st_writer_init(st_writer *w);

/* Frees what the writer owns (not the tensor data it points at). */
void st_writer_free(st_writer *w);

/* Adds a tensor; data (nbytes = numel * dt_size) must stay valid until the
 * write. The name is copied. -EEXIST for a name already added. */
int st_writer_add(st_writer *w, const char *name, dt_type dtype, int ndim,
                  const int64_t *shape, const void *data, rt_err *err);

/* Sets a "__metadata__" string entry (copied; replaces an earlier value). */
int st_writer_meta(st_writer *w, const char *key, const char *value, rt_err *err);

/* Writes one file at path (atomically: tmp + fsync + rename). Blocks on I/O. */
int st_writer_write(const st_writer *w, const char *path, rt_err *err);

/* Writes a sharded checkpoint into dir: "model-%05d-of-%05d.safetensors" files
 * of at most max_shard_bytes of tensor data each (a larger tensor gets a shard
 * of its own) and "model.safetensors.index.json". With everything fitting in
 * one shard it writes "model.safetensors" alone. Blocks on I/O. */
int st_writer_write_sharded(const st_writer *w, const char *dir,
                            uint64_t max_shard_bytes, rt_err *err);

#ifdef __cplusplus
}
#endif

#endif
