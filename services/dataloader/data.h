/*
 * data: the data loader's pipeline, from data config to packed batches
 * (DESIGN.md §1, issue 4). Sources (plain text, JSONL, instruction and chat
 * JSONL rendered with a chat template, llm.c .bin shards, raw .u32 ids, any
 * of them zstd-compressed) are tokenized once into index files cached beside
 * the data; batch k is then a pure function of (data config, seed, k),
 * computed without replaying earlier batches.
 *
 * Batch layout, for B rows of seq_len T:
 *   tokens    int32 [B][T + 1]  row r holds T + 1 consecutive tokens of one
 *                               source's packed stream; inputs are
 *                               tokens[r][0..T), targets tokens[r][1..T]
 *   loss_mask uint8 [B][T]      1 where target tokens[r][t + 1] is trained:
 *                               0 for prompt/user/system tokens of chat data
 *                               and for padding past the end of a source
 *   doc       uint32 [B][T + 1] row-local document ordinal: 0 for the
 *                               document the row starts in, +1 at every
 *                               document start; equal values may attend to
 *                               each other when attention is masked per
 *                               document
 *   source    uint32 [B]        index into the config's sources of each row
 * Documents are packed back to back, each followed by the EOS token (see
 * data_config.add_eos); with shuffle off and one raw u32 source, row r of
 * batch k is the T + 1 tokens starting at token (k·B + r)·T of the file.
 *
 * Threads: configs are plain data owned by their creator. data_open blocks
 * (it may tokenize everything once, on opts->threads threads); an open
 * pipeline is immutable, and data_batch may run on any number of threads at
 * once.
 */
#ifndef RAMTRAIN_DATALOADER_DATA_H
#define RAMTRAIN_DATALOADER_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "services/dataloader/tokenizer.h"
#include "storage/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* libyaml's document and node (<yaml.h>), for callers that embed the data
 * mapping in a larger config. */
struct yaml_document_s;
struct yaml_node_s;

typedef enum data_format {
    DATA_FMT_AUTO = 0, /* from each file's extension (a trailing .zst is ignored) */
    DATA_FMT_TEXT,     /* .txt .text .md: plain text */
    DATA_FMT_JSONL,    /* .jsonl: one object per line, document in text_field */
    DATA_FMT_ALPACA,   /* {instruction, input?, output, system?} per line */
    DATA_FMT_SHAREGPT, /* {conversations: [{from: human|gpt|system, value}]} */
    DATA_FMT_MESSAGES, /* {messages: [{role, content}]} (OpenAI style) */
    DATA_FMT_LLMC,     /* .bin: llm.c shard, 256 x int32 header, uint16/uint32 ids */
    DATA_FMT_U32,      /* .u32: raw little-endian uint32 ids */
} data_format;

typedef enum data_chat_format {
    DATA_CHAT_AUTO = 0, /* alpaca data: alpaca; chat data: llama3 or chatml by the tokenizer's special tokens */
    DATA_CHAT_LLAMA3,   /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
    DATA_CHAT_CHATML,   /* <|im_start|>role\ncontent<|im_end|>\n */
    DATA_CHAT_ALPACA,   /* Stanford Alpaca's "Below is an instruction..." prompt */
} data_chat_format;

typedef enum data_split {
    DATA_SPLIT_FILE = 0,    /* text: each file is one document */
    DATA_SPLIT_BLANK_LINES, /* text: documents are separated by blank lines */
} data_split;

typedef struct data_source_config {
    char *path;                   /* file, directory (walked recursively, hidden
                                     entries skipped) or glob; relative to base_dir */
    data_format format;
    char *text_field;             /* jsonl: the document's key; NULL means "text" */
    data_chat_format chat_format; /* alpaca, sharegpt, messages */
    data_split split;             /* text */
    double weight;                /* > 0: share of rows; 0: not given (all sources
                                     without weights: shares proportional to rows) */
    int line;                     /* line of the entry in the config file, 0 if none */
} data_source_config;

/* A data config. Every string is malloc'd and owned by the config. */
typedef struct data_config {
    char *origin;            /* config file name used in messages ("<string>" when none) */
    char *key_prefix;        /* "data." when embedded in a larger config, else "" */
    char *base_dir;          /* relative paths resolve against it */
    char *tokenizer;         /* tokenizer.json or its directory; NULL: built-in byte tokenizer */
    char *cache_dir;         /* NULL: index files beside the data (fallback
                                $XDG_CACHE_HOME/ramtrain/data when read-only) */
    int64_t seq_len;         /* T, tokens per row (targets); required */
    int64_t batch_rows;      /* B, rows per micro-batch; required */
    uint64_t seed;
    bool shuffle;            /* default true */
    bool mask_doc_attention; /* for the worker: attend within documents only */
    bool skip_bad_lines;     /* on_bad_line: skip (true) or fail (false, default) */
    bool add_bos;            /* text/jsonl documents start with BOS (default false) */
    bool add_eos;            /* every document ends with the EOS token (default true) */
    char *eos_token;         /* EOS by its text (tok_id); NULL: tok_eos */
    int64_t eos_id;          /* EOS by id, wins over eos_token; -1 when not given.
                                Also what ends documents in llmc/u32 sources. */
    int n_sources;
    data_source_config *sources; /* [n_sources] */
} data_config;

/* Reads a data config from a YAML file whose top level is the data mapping.
 * Relative paths in it resolve against the file's directory. Errors name the
 * file, line and key ("data.yaml:7: sources[1].format: \"csv\" is not one of
 * text, jsonl, ..."). *out is freed with data_config_free. Blocks on I/O. */
int data_config_load(const char *path, data_config **out, rt_err *err);

/* As data_config_load, from YAML text text[len]; origin names it in messages
 * (NULL: "<string>"), base_dir resolves relative paths (NULL: "."). */
int data_config_from_string(const char *text, size_t len, const char *origin,
                            const char *base_dir, data_config **out, rt_err *err);

/* As data_config_load, from the mapping node of a document parsed by the
 * caller (the run config embeds the data mapping). key_prefix is put before
 * every key in messages ("data" gives "run.yaml:9: data.seq_len: ..."; NULL
 * for none). doc and node are only read. */
int data_config_from_yaml_node(struct yaml_document_s *doc, struct yaml_node_s *node,
                               const char *origin, const char *base_dir,
                               const char *key_prefix, data_config **out, rt_err *err);

void data_config_free(data_config *cfg);

/* "text", "jsonl", ... (static storage); "auto" for DATA_FMT_AUTO. */
const char *data_format_name(data_format f);
const char *data_chat_format_name(data_chat_format f);

typedef struct data_open_opts {
    int threads;             /* tokenizing threads; 0: all online CPUs */
    int64_t vocab_size;      /* the model's vocabulary: every id must be below it;
                                0: ids are checked against the tokenizer only */
    int max_open_files;      /* files kept open for data_batch; beyond it each read
                                opens and closes (0: 256) */
    size_t build_chunk_bytes;/* text read per tokenizing round (0: 32 MiB); tests
                                make it small to cross chunk boundaries */
} data_open_opts;

typedef struct data_source_stats {
    const char *path;        /* as configured; owned by the pipeline */
    uint32_t files;
    uint32_t files_indexed;  /* index files built by this data_open (0: all reused) */
    uint64_t documents;
    uint64_t tokens;         /* of the source's packed stream, EOS separators included */
    uint64_t rows;           /* rows of T + 1 tokens: one epoch of the source */
    uint64_t lines_skipped;  /* bad lines skipped (on_bad_line: skip) */
    double share;            /* fraction of global rows drawn from it */
    char first_skipped[320]; /* "file:line: why" of the first skipped line, or "" */
} data_source_stats;

typedef struct data_stats {
    int64_t seq_len, batch_rows;
    bool shuffle, mask_doc_attention;
    int32_t eos_id;          /* document separator (raw sources: document end); also the
                                padding id, which is 0 when this is -1 */
    uint32_t n_sources;
    const data_source_stats *sources; /* [n_sources], owned by the pipeline */
    uint32_t files, files_indexed;
    uint64_t documents, tokens, rows, lines_skipped;
    uint32_t max_id;         /* largest id in any source's stream (0 when empty) */
} data_stats;

typedef struct data_pipeline data_pipeline;

/* Opens the pipeline: finds every source's files, validates their index files
 * (built, or rebuilt when stale, on opts->threads threads), checks every id
 * against opts->vocab_size and fills the stats. t must be the tokenizer
 * cfg->tokenizer names (NULL: data_open opens it itself, relative to
 * cfg->base_dir). cfg, t and opts (may be NULL) are only used during the
 * call. Errors name the config, the source and the file (and line) at fault;
 * a source without a single row is -ENODATA. Blocks; *out is freed with
 * data_close. */
int data_open(const data_config *cfg, const tok *t, const data_open_opts *opts,
              data_pipeline **out, rt_err *err);

void data_close(data_pipeline *p);

/* Counts and settings; owned by p, valid until data_close. */
const data_stats *data_get_stats(const data_pipeline *p);

/* Caller-provided buffers of one micro-batch (shapes in the file comment). */
typedef struct data_batch_buf {
    int32_t *tokens;    /* [B][T + 1] */
    uint8_t *loss_mask; /* [B][T] */
    uint32_t *doc;      /* [B][T + 1], or NULL */
    uint32_t *source;   /* [B], or NULL */
} data_batch_buf;

/* Fills buf with micro-batch k (rows k·B .. k·B + B - 1). Pure function of
 * (config, seed, k); thread-safe; no allocation; blocks on reads of the index
 * and data files (an I/O error or a file changed since data_open is -EIO
 * naming the file). */
int data_batch(const data_pipeline *p, uint64_t k, const data_batch_buf *buf, rt_err *err);

/* Where global row g comes from: source index, row within the source, and
 * the source epoch (how many times the source was read through before). */
void data_row_locate(const data_pipeline *p, uint64_t g, uint32_t *source, uint64_t *row,
                     uint64_t *epoch);

/* One document as data_docs_foreach hands it out; valid during the call. */
typedef struct data_doc_view {
    uint64_t index;          /* ordinal in corpus order, from 0 */
    uint32_t source;         /* index into the config's sources */
    const char *path;        /* the data file holding it; owned by the pipeline */
    const int32_t *ids;      /* [n] its tokens as in the packed stream (BOS and chat
                                template included), without the EOS that ends it */
    const uint8_t *trained;  /* [n] 1 where the token is a target the loss counts
                                (0: prompt tokens of chat data) */
    size_t n;
    bool eos;                /* it ended with the EOS id (removed from ids) */
} data_doc_view;

/* Called once per document; a negative return stops the walk and is returned
 * by data_docs_foreach (fill err to say why). */
typedef int (*data_doc_fn)(const data_doc_view *doc, void *user, rt_err *err);

/* Calls fn on every document of p in corpus order: the config's sources in
 * order, each source's files in path order, each file's documents in order,
 * one call at a time on the caller's thread. Documents are those of the
 * token streams data_batch reads: text-like sources as tokenized into their
 * index files, llm.c and u32 sources split after every EOS id. Returns 0,
 * fn's negative return, or -EIO (naming the file) when a file cannot be read
 * or shrank since data_open. Blocks on sequential reads; allocates a buffer
 * as large as the longest document. */
int data_docs_foreach(const data_pipeline *p, data_doc_fn fn, void *user, rt_err *err);

#ifdef __cplusplus
}
#endif

#endif
