/*
 * run_config: the run configuration of `ramtrain run` (issue 5), read from
 * YAML, overridden by `--set key=value`, validated, and written back as the
 * resolved config every service of the run reads (RUN_DIR/config.yaml).
 *
 * Keys (tests outside the project rely on these names and meanings):
 *   model.path            Hugging Face model directory to start from, or
 *   model.config          config.json path (or an inline mapping of its keys);
 *                         both only when model.config is an inline mapping
 *                         describing the same model as PATH/config.json (what
 *                         rc_write writes for a model.path run)
 *   model.seed            random init seed (with model.config)
 *   data.*                the data loader's mapping (services/dataloader/data.h:
 *                         sources, shuffle, seed, tokenizer, ...); seq_len and
 *                         batch_rows come from train.seq_len / train.batch_size
 *   train.steps, batch_size, seq_len, grad_accum, lr, schedule
 *         (constant|cosine|linear), warmup, min_lr, weight_decay, beta1,
 *         beta2, eps, clip (0 = off)
 *   compute.device        auto|cpu|cuda
 *   compute.dtype         fp32|bf16
 *   compute.prefetch      P, weight buffers of the worker's pipeline (>= 1)
 *   compute.threads       backend threads (0: one per core)
 *   compute.resident      blocks kept resident in the worker: "auto" (as
 *                         memory allows), "none", "all" or a byte size
 *   paramserver.ram_budget  bytes ("64G", "512M", or a plain number; 0 = no limit)
 *   paramserver.spill_dir   where optimizer state beyond the budget goes
 *   paramserver.threads     optimizer threads (0: one per core)
 *   checkpoint.every      steps between checkpoints (0: only the final one)
 *   checkpoint.keep       checkpoints kept (0: all)
 *
 * Errors name the origin (file or "--set"), the line, the dotted key and what
 * was expected: "run.yaml:7: train.lr: \"fast\" is not a number".
 *
 * Threads: a run_config is plain data owned by its creator.
 */
#ifndef RAMTRAIN_SERVICES_COMMON_RUN_CONFIG_H
#define RAMTRAIN_SERVICES_COMMON_RUN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpu/model.h"
#include "services/dataloader/data.h"
#include "storage/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rc_schedule { RC_SCHED_CONSTANT = 0, RC_SCHED_COSINE, RC_SCHED_LINEAR } rc_schedule;
typedef enum rc_device { RC_DEV_AUTO = 0, RC_DEV_CPU, RC_DEV_CUDA } rc_device;

#define RC_RESIDENT_AUTO (-1)  /* compute.resident: as memory allows */
#define RC_RESIDENT_ALL (-2)   /* every block */

typedef struct run_config {
    char *origin;              /* file the config came from, "<default>" for the embedded one */

    /* model */
    char *model_path;          /* absolute HF model directory, or NULL */
    char *model_config_path;   /* absolute config.json path, or NULL (inline or from model_path) */
    char *model_config_json;   /* the model's config.json text (always set after rc_load) */
    model_config model;        /* parsed from model_config_json */
    uint64_t model_seed;

    data_config *data;         /* seq_len = train.seq_len, batch_rows = train.batch_size;
                                  paths absolute */

    /* train */
    uint64_t steps;
    int64_t batch_size, seq_len;
    uint32_t grad_accum;
    double lr, min_lr, weight_decay, beta1, beta2, eps, clip;
    rc_schedule schedule;
    uint64_t warmup;

    /* compute */
    rc_device device;
    bool bf16;                 /* compute.dtype */
    uint32_t prefetch;
    uint32_t threads;
    int64_t resident;          /* bytes, or RC_RESIDENT_AUTO / RC_RESIDENT_ALL; 0: none */

    /* paramserver */
    uint64_t ram_budget;       /* 0: no limit */
    char *spill_dir;           /* absolute, or NULL: RUN_DIR/spill */
    uint32_t ps_threads;

    /* checkpoint */
    uint64_t ckpt_every;       /* 0: only at the end */
    uint32_t ckpt_keep;        /* 0: all */
} run_config;

/* The embedded default run (YAML text): a small byte-level model trained on
 * the corpus `ramtrain run` writes into the run directory (orchestrator/
 * corpus.h). corpus_path is put in, quoted, as the data source. Fills
 * buf[cap] (NUL-terminated) and returns the text's length; -ENAMETOOLONG
 * when it does not fit (4 KiB plus the path always does), -EILSEQ when the
 * path is not UTF-8. Load it with rc_load_text(buf, n, "<default>", ...). */
int rc_default_yaml(const char *corpus_path, char *buf, size_t cap);

/* Loads a run config from YAML text (origin names it in messages; base_dir
 * resolves relative paths), applies the overrides "a.b=value" in order (each
 * may add a key the file lacks; its errors say "--set a.b=value"), then
 * validates everything, reading the model's config.json and the data config
 * (data_config_from_yaml_node; data files are not opened). *out is freed
 * with rc_free. Blocks on small reads. */
int rc_load_text(const char *text, size_t len, const char *origin, const char *base_dir,
                 char *const *overrides, int n_overrides, run_config **out, rt_err *err);

/* As rc_load_text, from a file (relative paths resolve against its directory). */
int rc_load_file(const char *path, char *const *overrides, int n_overrides, run_config **out,
                 rt_err *err);

void rc_free(run_config *c);

/* Writes the resolved config as YAML: every key with its value (defaults
 * filled in, paths absolute, the model config inline as model.config), so
 * rc_load_file(path) gives back an equal config. Atomic (temp + rename). */
int rc_write(const run_config *c, const char *path, rt_err *err);

/* The text rc_write writes: a malloc'd NUL-terminated *text of *len bytes
 * (the caller frees it). Sources' format, chat_format and text_field are
 * left out when auto / not given, data.eos_id when -1 (data.c reads no null
 * there), and a model.config path is written as the inline config. */
int rc_to_yaml(const run_config *c, char **text, size_t *len, rt_err *err);

/* "constant", "cosine", "linear"; "auto", "cpu", "cuda". Static storage. */
const char *rc_schedule_name(rc_schedule s);
const char *rc_device_name(rc_device d);

#ifdef __cplusplus
}
#endif

#endif
