/*
 * tokenizer: text <-> token ids, from a Hugging Face tokenizer.json (BPE
 * models) or the built-in byte tokenizer (DESIGN.md §1, issue 4).
 *
 * Supported (everything else in a tokenizer.json is an error naming it):
 * - byte-level BPE as GPT-2, Llama-3 and Qwen2 use it: the ByteLevel
 *   pre-tokenizer (its built-in split regex when use_regex is true), Split
 *   pre-tokenizers with the regex from the file (Oniguruma, the engine
 *   Hugging Face uses; the common patterns run as built-in splitters),
 *   Digits, WhitespaceSplit, Sequences of them; merges as "a b" strings or
 *   ["a", "b"] pairs; ignore_merges;
 * - SentencePiece-style BPE as Llama-2 and Mistral use it: Metaspace / "▁",
 *   byte_fallback with <0xNN> tokens, fuse_unk, the Replace / Prepend / NFC /
 *   NFD / NFKC / NFKD / Lowercase / Strip / StripAccents normalizers and
 *   Sequences of them;
 * - added and special tokens, matched in the text before the model runs, as
 *   Hugging Face does (single_word, lstrip, rstrip, normalized);
 * - the post-processor's BOS/EOS (TemplateProcessing, ByteLevel,
 *   BertProcessing, RobertaProcessing, Sequence) when asked to add special
 *   tokens;
 * - decoders: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip,
 *   BPEDecoder, Sequence.
 * Text is Unicode: bytes that are not UTF-8 become U+FFFD first, one per
 * maximal invalid subpart, exactly as TextDecoder("utf-8") decodes them
 * (what Hugging Face's tokenizers see after their own UTF-8 decoding).
 * Where Hugging Face's JavaScript and Rust implementations disagree,
 * tokenizer.c's opening comment says which one we follow.
 * The built-in byte tokenizer maps byte b to id b (any bytes, as they are),
 * and has special tokens <|bos|> 256, <|eos|> 257, <|pad|> 258.
 *
 * Threads: a tok is immutable after tok_open; tok_encode and tok_decode may
 * run on any number of threads at once (each call owns its scratch).
 */
#ifndef RAMTRAIN_DATALOADER_TOKENIZER_H
#define RAMTRAIN_DATALOADER_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tok tok;

/* Loads path (a tokenizer.json, or a directory holding one); path NULL
 * gives the built-in byte tokenizer. Errors name the file and the JSON path
 * at fault (e.g. "tokenizer.json: model.type \"WordPiece\" is not supported:
 * only BPE"). Blocks on I/O. *out is freed with tok_close. */
int tok_open(const char *path, tok **out, rt_err *err);

void tok_close(tok *t);

/* Number of ids (the largest id + 1, added tokens included). */
int32_t tok_vocab_size(const tok *t);

/* Id of the special token bos / eos / pad as the file names them (from the
 * post-processor, added tokens and conventions: <s>, </s>, <|endoftext|>,
 * <|begin_of_text|>, <|end_of_text|>, <|eot_id|>, <|im_end|>), or -1.
 * BOS: the first id the post-processor puts before the text, else the first
 * of <|begin_of_text|>, <s>, <|startoftext|>, <bos> that is a token. EOS:
 * the last id it puts after the text, else the first of </s>,
 * <|endoftext|>, <|end_of_text|>, <|im_end|>, <|eot_id|>, <eos> that is a
 * token (added tokens first, then the vocabulary). */
int32_t tok_bos(const tok *t);
int32_t tok_eos(const tok *t);

/* Id of a token by its text (added tokens first, then the vocabulary), or -1. */
int32_t tok_id(const tok *t, const char *text);

/* Encodes text[len] (any bytes: invalid UTF-8 is handled as Hugging Face
 * handles it) into a growing array: *ids (malloc'd, caller frees; may be
 * passed in non-NULL with *cap its capacity to reuse it) and *n ids.
 * add_special: add what the post-processor adds (BOS for Llama), as
 * Hugging Face's encode(text) does by default. 0 or -ENOMEM. */
int tok_encode(const tok *t, const char *text, size_t len, bool add_special, int32_t **ids,
               size_t *n, size_t *cap, rt_err *err);

/* Per-thread state of encoding: growable buffers and a cache of recent
 * words, so encoding many short texts allocates nothing. One scratch serves
 * one thread at a time, for the tok it was made for. 0 or -ENOMEM. */
typedef struct tok_scratch tok_scratch;
int tok_scratch_init(const tok *t, tok_scratch **out, rt_err *err);
void tok_scratch_free(tok_scratch *s);

/* tok_encode with the caller's scratch s (made for t): same results. */
int tok_encode_with(const tok *t, tok_scratch *s, const char *text, size_t len, bool add_special,
                    int32_t **ids, size_t *n, size_t *cap, rt_err *err);

/* The pre-tokens of text[len] as the model sees them (after invalid UTF-8
 * is replaced, added tokens are split out, normalizers and pre-tokenizers
 * run; byte-level pieces as raw bytes, added tokens not included): *out
 * (malloc'd, NUL-terminated, caller frees) holds them one after another,
 * *piece_lens (malloc'd, caller frees) their *n lengths. For tests and
 * debugging. 0, -ENOMEM or -EINVAL (a regex failed). */
int tok_pretokenize(const tok *t, const char *text, size_t len, char **out, size_t *out_len,
                    size_t **piece_lens, size_t *n, rt_err *err);

/* Decodes ids[n] into a malloc'd NUL-terminated string *out of *len bytes
 * (caller frees). skip_special drops special tokens. An id out of range is
 * -EINVAL naming it. */
int tok_decode(const tok *t, const int32_t *ids, size_t n, bool skip_special, char **out,
               size_t *len, rt_err *err);

/* One line for logs: "byte-level BPE, 128256 ids (tokenizer.json)". Owned by t. */
const char *tok_describe(const tok *t);

#ifdef __cplusplus
}
#endif

#endif
