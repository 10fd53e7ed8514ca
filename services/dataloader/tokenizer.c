/*
 * tokenizer: Hugging Face tokenizer.json (BPE models) and the built-in byte
 * tokenizer (see tokenizer.h for what is supported).
 *
 * The reference is Hugging Face's own behaviour as its Tokenizers.js
 * (@huggingface/tokenizers 0.2) implements it, compared id for id on real
 * tokenizer.json files (GPT-2, Llama-2, Llama-3, Mistral-style). Where
 * Tokenizers.js and the Rust library differ we follow Tokenizers.js, except
 * where Tokenizers.js ignores a field the file sets (Split's behavior,
 * Metaspace's split, added tokens' single_word, continuing_subword_prefix,
 * the Metaspace decoder's prepend_scheme "never"): there the field means what
 * the Rust library makes it mean. The consequences, each deliberate:
 * - Text is Unicode: input bytes that are not UTF-8 become U+FFFD exactly as
 *   TextDecoder("utf-8") (WHATWG, one U+FFFD per maximal subpart) decodes them,
 *   before anything else; a BOM is kept as U+FEFF.
 * - Unicode properties (\p{L}, \p{N}, ... in every regex, and the letter /
 *   number / mark tests of the built-in splitters) come from the general
 *   category table at the end of this file, taken from Node 20's ICU
 *   (Unicode 17.0), not from Oniguruma's own tables (Unicode 15.0).
 * - ByteLevel's built-in split regex uses JavaScript's \s (it adds U+FEFF
 *   and lacks U+0085), as GPT-2's JS tokenizers do; \s in regexes from the
 *   file is Unicode White_Space, as Oniguruma and Tokenizers.js have it.
 *   (?i:...) folds ASCII letters only.
 * - Lowercase is JavaScript's toLowerCase (final sigma included); NFD, NFKD
 *   and NFKC of characters newer than utf8proc's Unicode 15 come from a small
 *   table generated from Node, the rest from utf8proc.
 * - Added tokens are split out of the raw text first, leftmost then longest,
 *   (normalized ones out of the normalized text); lstrip / rstrip trim
 *   JavaScript whitespace next to them; a text section that equals an added
 *   token's content is that token, and so is a model token whose text is an
 *   added token's content. Metaspace's prepend_scheme "first" adds "▁" to
 *   the text section that starts the input.
 * - Decoding passes added tokens through the ByteLevel decoder unchanged (a
 *   token with a character outside the byte map gives its own UTF-8 bytes)
 *   and turns invalid byte sequences (ByteLevel, ByteFallback) into U+FFFD
 *   the WHATWG way; no clean-up of tokenization spaces (the Rust library's
 *   decode; Tokenizers.js needs clean_up_tokenization_spaces: false to
 *   match). truncation and padding are ignored: encode returns every id.
 *
 * Speed: ids are computed on UTF-8 bytes without building the byte-level
 * strings ("Ġhello"); the split regexes of GPT-2, Llama-3 / cl100k and Qwen2
 * run as hand-written matchers that test_tokenizer checks against Oniguruma
 * running the same pattern; merges use a hash keyed by the pair of ids and,
 * per word, a linear scan (short words) or a heap (long ones); a
 * per-scratch cache maps recent words to their ids. When no token has "▁"
 * right after another character (Llama-2, Mistral), no merge can cross such
 * a point, so a whole SentencePiece line is merged word by word: the same
 * ids, through the cache. Nothing is allocated per token: each tok_scratch
 * owns growable buffers.
 *
 * Threads: a tok is read-only after tok_open (Oniguruma searches a shared
 * regex with per-scratch regions). A tok_scratch belongs to one thread at a
 * time; tok_encode makes a scratch per call.
 *
 * Rejected: compiling every pattern with Oniguruma only (4x slower on
 * Llama-3's pattern, and tied to its Unicode version); a thread-local word
 * cache (hidden global state); keeping vocab strings in jansson objects
 * (one hash probe per token through jansson's generic table is slower and
 * pins the whole parsed document in memory).
 */
#define _GNU_SOURCE /* memmem */
#include "services/dataloader/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <oniguruma.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "services/dataloader/text_util.h"

#define TOK_MAX_PRE 16           /* pre-tokenizer steps after flattening Sequences */
#define TOK_MAX_NORM 32          /* normalizer steps after flattening */
#define TOK_MAX_DEC 32           /* decoder steps after flattening */
#define TOK_SMALL_WORD 48        /* symbols up to which merges scan instead of using the heap */
#define TOK_CACHE_KEY_MAX 64     /* bytes: longer words are not cached */
#define TOK_CACHE_SLOTS 16384    /* power of two */
#define TOK_CACHE_IDS (1u << 18) /* ids held by the cache before it is cleared */

/* Built-in byte tokenizer. */
#define TOK_BYTE_BOS 256
#define TOK_BYTE_EOS 257
#define TOK_BYTE_PAD 258

static const char TOK_BYTE_NAMES[3][8] = {"<|bos|>", "<|eos|>", "<|pad|>"};

/* ---- Unicode ------------------------------------------------------------ */

/* General categories, in the order of the table at the end of the file. */
enum {
    GC_LU, GC_LL, GC_LT, GC_LM, GC_LO, GC_MN, GC_MC, GC_ME, GC_ND, GC_NL,
    GC_NO, GC_PC, GC_PD, GC_PS, GC_PE, GC_PI, GC_PF, GC_PO, GC_SM, GC_SC,
    GC_SK, GC_SO, GC_ZS, GC_ZL, GC_ZP, GC_CC, GC_CF, GC_CS, GC_CO, GC_CN,
    GC_COUNT
};
#define GCM(x) (1u << (x))
#define GCM_L (GCM(GC_LU) | GCM(GC_LL) | GCM(GC_LT) | GCM(GC_LM) | GCM(GC_LO))
#define GCM_M (GCM(GC_MN) | GCM(GC_MC) | GCM(GC_ME))
#define GCM_N (GCM(GC_ND) | GCM(GC_NL) | GCM(GC_NO))

#define TOK_GC_NRUNS 4144
static const uint32_t TOK_GC_RUNS[TOK_GC_NRUNS]; /* (first code point << 5) | category; defined at the end */

/* Character classes of the built-in splitters. */
enum { CL_OTHER = 0, CL_L = 1, CL_N = 2, CL_WS = 4 };

/* Unicode White_Space (Oniguruma's and Tokenizers.js's \s in file regexes)
 * or, with js, JavaScript's \s (adds U+FEFF, lacks U+0085). */
static int tok_is_ws(uint32_t c, int js)
{
    if (c <= 0x20)
        return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    if (c < 0x85)
        return 0;
    if (c == 0x85)
        return !js;
    return c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000 || (js && c == 0xFEFF);
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/* Decodes the valid UTF-8 character at s[0..n) (n >= 1); returns its length. */
static inline int tok_u8_next(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    if (b < 0xE0 && n >= 2) {
        *cp = ((uint32_t)(b & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (b < 0xF0 && n >= 3) {
        *cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    if (n >= 4) {
        *cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
              ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        return 4;
    }
    *cp = 0xFFFD; /* unreachable on sanitized text */
    return 1;
}

/* Length of the valid UTF-8 character ending just before s[end] (end >= 1). */
static inline size_t tok_u8_prev_len(const uint8_t *s, size_t end)
{
    size_t k = 1;
    while (k < end && k < 4 && (s[end - k] & 0xC0) == 0x80)
        k++;
    return k;
}

static int tok_u8_put(uint8_t *o, uint32_t c)
{
    if (c < 0x80) {
        o[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (uint8_t)(0xC0 | (c >> 6));
        o[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (c >> 12));
        o[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (c >> 18));
    o[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* WHATWG UTF-8 decode of s[0..n): the number of bytes the sanitized text
 * needs (n when s is valid), written to out when out is not NULL. Each
 * maximal subpart of an invalid sequence becomes one U+FFFD (EF BF BD). */
static size_t tok_u8_sanitize(const uint8_t *s, size_t n, uint8_t *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) {
            if (out)
                out[o] = b;
            o++;
            i++;
            continue;
        }
        int need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF)
            need = 1;
        else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            if (b == 0xE0)
                lo = 0xA0;
            if (b == 0xED)
                hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            if (b == 0xF0)
                lo = 0x90;
            if (b == 0xF4)
                hi = 0x8F;
        } else
            need = -1;
        size_t j = i + 1; /* first byte not yet accepted */
        int ok = need > 0;
        for (int k = 0; ok && k < need; k++) {
            if (j >= n || s[j] < lo || s[j] > hi)
                ok = 0; /* s[j] is not consumed: it starts the next character */
            else {
                j++;
                lo = 0x80;
                hi = 0xBF;
            }
        }
        if (!ok) {
            if (out)
                memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i = need > 0 ? j : i + 1;
            continue;
        }
        if (out)
            memcpy(out + o, s + i, j - i);
        o += j - i;
        i = j;
    }
    return o;
}

/* True when s[0..n) is valid UTF-8 (ASCII runs are skipped 8 bytes at a time). */
static int tok_u8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & 0x8080808080808080ull) == 0) {
                i += 8;
                continue;
            }
        }
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF)
            len = 2;
        else if (b >= 0xE0 && b <= 0xEF) {
            len = 3;
            if (b == 0xE0)
                lo = 0xA0;
            if (b == 0xED)
                hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            len = 4;
            if (b == 0xF0)
                lo = 0x90;
            if (b == 0xF4)
                hi = 0x8F;
        } else
            return 0;
        if (len > n - i)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if (s[i + k] < lo || s[i + k] > hi)
                return 0;
            lo = 0x80;
            hi = 0xBF;
        }
        i += len;
    }
    return 1;
}

/* ---- growable buffers ------------------------------------------------------- */

typedef struct tok_buf {
    uint8_t *p;
    size_t len, cap; /* bytes */
} tok_buf;

static int tok_buf_reserve(tok_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int tok_buf_put(tok_buf *b, const void *src, size_t n)
{
    if (tok_buf_reserve(b, n + 1) < 0)
        return -ENOMEM;
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

typedef struct tok_ids {
    int32_t *p;
    size_t n, cap; /* ids */
} tok_ids;

static int tok_ids_push(tok_ids *v, int32_t id)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->p, cap * sizeof *p);
        if (p == NULL)
            return -ENOMEM;
        v->p = p;
        v->cap = cap;
    }
    v->p[v->n++] = id;
    return 0;
}

/* ---- hashing ------------------------------------------------------------ */

static inline uint64_t tok_mix(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return h;
}

static uint64_t tok_hash(const void *data, size_t n)
{
    const uint8_t *s = data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ tok_mix(w)) * 0x9E3779B97F4A7C15ull;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ tok_mix(w ^ n)) * 0x9E3779B97F4A7C15ull;
    return tok_mix(h);
}

/* String -> int32, open addressing; the strings live in the tok's arena. */
typedef struct tok_smap_slot {
    uint32_t hash; /* low 32 bits of tok_hash; 0 marks an empty slot (hashes are forced odd) */
    uint32_t len;  /* bytes */
    uint64_t off;  /* into the arena */
    int32_t val;
} tok_smap_slot;

typedef struct tok_smap {
    tok_smap_slot *slots;
    size_t mask, used;
} tok_smap;

static int tok_smap_init(tok_smap *m, size_t expect)
{
    size_t cap = 16;
    while (cap < expect * 2)
        cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    if (m->slots == NULL)
        return -ENOMEM;
    m->mask = cap - 1;
    m->used = 0;
    return 0;
}

/* Slot of key s[0..n) in m: a full slot holding it, or the empty slot where
 * it would go. */
static tok_smap_slot *tok_smap_find(const tok_smap *m, const char *arena, const void *s, size_t n)
{
    uint32_t h = (uint32_t)tok_hash(s, n) | 1u;
    size_t i = h & m->mask;
    for (;;) {
        tok_smap_slot *sl = &m->slots[i];
        if (sl->hash == 0)
            return sl;
        if (sl->hash == h && sl->len == n && memcmp(arena + sl->off, s, n) == 0)
            return sl;
        i = (i + 1) & m->mask;
    }
}

static int32_t tok_smap_get(const tok_smap *m, const char *arena, const void *s, size_t n)
{
    if (m->slots == NULL)
        return -1;
    tok_smap_slot *sl = tok_smap_find(m, arena, s, n);
    return sl->hash ? sl->val : -1;
}

/* Inserts or overwrites key (arena + off)[0..n) -> val. The table is sized
 * for its keys up front, so it never fills. */
static void tok_smap_set(tok_smap *m, const char *arena, uint64_t off, size_t n, int32_t val)
{
    tok_smap_slot *sl = tok_smap_find(m, arena, arena + off, n);
    if (sl->hash == 0) {
        sl->hash = (uint32_t)tok_hash(arena + off, n) | 1u;
        sl->len = (uint32_t)n;
        sl->off = off;
        m->used++;
    }
    sl->val = val;
}

/* Pair of ids -> (rank, merged id). */
typedef struct tok_merge_slot {
    uint64_t key; /* (left << 32) | right; UINT64_MAX when empty */
    int32_t rank, id;
} tok_merge_slot;

typedef struct tok_mmap {
    tok_merge_slot *slots;
    size_t mask;
} tok_mmap;

static inline size_t tok_mmap_index(uint64_t key, size_t mask)
{
    return (size_t)(tok_mix(key * 0x9E3779B97F4A7C15ull)) & mask;
}

static inline const tok_merge_slot *tok_mmap_get(const tok_mmap *m, int32_t a, int32_t b)
{
    if (m->slots == NULL)
        return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = tok_mmap_index(key, m->mask);
    for (;;) {
        const tok_merge_slot *sl = &m->slots[i];
        if (sl->key == key)
            return sl;
        if (sl->key == UINT64_MAX)
            return NULL;
        i = (i + 1) & m->mask;
    }
}

/* ---- the tokenizer ----------------------------------------------------------- */

/* Built-in splitters that replace Oniguruma for the patterns real files use. */
enum {
    FAST_NONE,
    FAST_GPT2,   /* 's|'t|...| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    FAST_CL100K, /* Llama-3 / cl100k: (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|... */
    FAST_QWEN2,  /* as FAST_CL100K with \p{N} instead of \p{N}{1,3} */
};

static const char PAT_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char PAT_CL100K[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char PAT_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* A pattern from the file: a literal String or a Regex. */
typedef struct tok_pat {
    char *lit;       /* String pattern, owned; NULL for a Regex */
    size_t lit_len;  /* bytes */
    regex_t *re;     /* Regex compiled by Oniguruma; NULL when fast handles it */
    int fast;        /* FAST_* */
    int ws_js;       /* the fast splitter uses JavaScript's \s */
} tok_pat;

enum { N_NFC, N_NFD, N_NFKC, N_NFKD, N_REPLACE, N_PREPEND, N_LOWER, N_STRIP, N_STRIP_ACCENTS };

typedef struct tok_norm {
    int kind;
    tok_pat pat;       /* Replace */
    char *content;     /* Replace's content, Prepend's prepend; owned */
    size_t content_len;
    int left, right;   /* Strip */
} tok_norm;

enum { P_BYTELEVEL, P_SPLIT, P_METASPACE, P_DIGITS, P_WSPLIT };
enum { B_REMOVED, B_ISOLATED, B_PREVIOUS, B_NEXT, B_CONTIGUOUS };
enum { PS_ALWAYS, PS_FIRST, PS_NEVER };

typedef struct tok_pre {
    int kind;
    int prefix_space, use_regex; /* ByteLevel */
    tok_pat pat;                 /* Split; ByteLevel's built-in regex */
    int behavior, invert;        /* Split */
    char rep[8];                 /* Metaspace replacement, UTF-8 */
    size_t rep_len;
    int scheme, split;           /* Metaspace */
    int individual;              /* Digits */
} tok_pre;

enum { D_BYTELEVEL, D_METASPACE, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_BPE };

typedef struct tok_dec {
    int kind;
    tok_pat pat;        /* Replace */
    char *content;      /* Replace's content, BPEDecoder's suffix; owned */
    size_t content_len;
    uint32_t strip_cp;  /* Strip's content character */
    int start, stop;    /* Strip */
    char rep[8];        /* Metaspace replacement */
    size_t rep_len;
    int strip_first;    /* Metaspace: drop the first token's leading space */
} tok_dec;

typedef struct tok_added {
    int32_t id;
    uint64_t off, len;   /* content in the arena */
    uint64_t noff, nlen; /* normalized content in the arena (normalized tokens only) */
    int single_word, lstrip, rstrip, normalized, special;
} tok_added;

/* Byte trie of added-token contents for leftmost-longest matching. */
typedef struct tok_trie_node {
    int32_t child, sibling; /* first child, next sibling; -1 when none */
    int32_t token;          /* index into t->added ending here, or -1 */
    uint8_t byte;
} tok_trie_node;

typedef struct tok_trie {
    tok_trie_node *nodes; /* [0] is the root */
    size_t n, cap;
    uint8_t first[256];   /* bytes that start some content */
} tok_trie;

enum { TOK_KIND_BYTES, TOK_KIND_BPE };

struct tok {
    int kind;
    char desc[320];
    char *path;            /* as opened (the file, not the directory) */
    int32_t n_ids;         /* largest id + 1 */

    char *arena;           /* every string below: vocab, added contents */
    size_t arena_len, arena_cap;
    uint64_t *id_off;      /* [n_ids] token text of each id in the arena */
    uint32_t *id_len;      /* [n_ids] bytes; UINT32_MAX when the id has no token */
    uint8_t *id_flags;     /* [n_ids] TOKF_* */

    tok_smap vocab;        /* model vocabulary */
    tok_smap added_content;/* added token content -> index into added */
    tok_smap added_any;    /* content and normalized content -> index (Tokenizers.js's added_tokens_map) */
    tok_added *added;
    int n_added;
    tok_trie raw_trie, norm_trie;

    /* BPE */
    tok_mmap merges;
    int32_t unk_id;        /* -1: none */
    int fuse_unk, byte_fallback, ignore_merges;
    char *cont_prefix, *eow_suffix; /* owned, NULL when unset or "" */
    size_t cont_prefix_len, eow_suffix_len;
    int32_t byte_id[256];  /* id of the byte-level character of byte b, -1 */
    int32_t fallback_id[256]; /* id of "<0xNN>", -1 */
    int32_t *cp_id;        /* [0x10000] id of the one-character token, -1 */
    int sp_words;          /* no token has "▁" right after another character, so no merge
                            * crosses such a point: long pieces are merged word by word */
    int32_t *remap;        /* [n_ids] or NULL: model ids whose text is an added token's
                            * (normalized) content become that token's id (Tokenizers.js) */

    tok_norm norm[TOK_MAX_NORM];
    int n_norm;
    tok_pre pre[TOK_MAX_PRE];
    int n_pre;
    tok_dec dec[TOK_MAX_DEC];
    int n_dec, has_decoder;
    int32_t *prefix_ids, *suffix_ids; /* added by the post-processor */
    size_t n_prefix, n_suffix;
    int32_t bos, eos;

    uint16_t *uc_stage1;   /* [0x1100] block of each 256 code points */
    uint8_t *uc_stage2;    /* [blocks * 256] general category */
};

enum { TOKF_HAS = 1, TOKF_ADDED = 2, TOKF_SPECIAL = 4 };

static inline int tok_gc(const tok *t, uint32_t c)
{
    if (c > 0x10FFFF)
        return GC_CN;
    return t->uc_stage2[(size_t)t->uc_stage1[c >> 8] * 256 + (c & 0xFF)];
}

/* Class of the character at s[i] (CL_*) and its length in *len. */
static inline unsigned tok_cls_at(const tok *t, const uint8_t *s, size_t n, size_t i, int ws_js,
                                  int *len)
{
    uint32_t c;
    *len = tok_u8_next(s + i, n - i, &c);
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
            return CL_L;
        if (c >= '0' && c <= '9')
            return CL_N;
        return tok_is_ws(c, ws_js) ? CL_WS : CL_OTHER;
    }
    if (tok_is_ws(c, ws_js))
        return CL_WS;
    unsigned m = GCM(tok_gc(t, c));
    if (m & GCM_L)
        return CL_L;
    if (m & GCM_N)
        return CL_N;
    return CL_OTHER;
}

/* End of the run of characters of class cls starting at i. */
static inline size_t tok_run(const tok *t, const uint8_t *s, size_t n, size_t i, unsigned cls, int ws_js)
{
    while (i < n) {
        int l;
        if (tok_cls_at(t, s, n, i, ws_js, &l) != cls)
            break;
        i += (size_t)l;
    }
    return i;
}

/* Whitespace run [p, e) is followed by e (n or a non-space). The end of
 * \s+(?!\S)|\s+ from p: the run without its last character when the run is
 * longer than one character and not at the end, else the whole run. */
static inline size_t tok_ws_tail(const uint8_t *s, size_t n, size_t p, size_t e)
{
    if (e == n)
        return e;
    size_t last = tok_u8_prev_len(s, e);
    return e - last > p ? e - last : e;
}

/* GPT-2's pattern: the end of the match that starts at p (< n). Every
 * character is matched by some alternative, so matches tile the text. */
static size_t tok_fast_gpt2(const tok *t, const uint8_t *s, size_t n, size_t p, int ws_js)
{
    uint8_t c0 = s[p];
    if (c0 == '\'' && p + 1 < n) {
        uint8_t c1 = s[p + 1];
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
            return p + 2;
        if (p + 2 < n) {
            uint8_t c2 = s[p + 2];
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
                return p + 3;
        }
    }
    int l;
    if (c0 == ' ' && p + 1 < n) {
        unsigned c = tok_cls_at(t, s, n, p + 1, ws_js, &l);
        if (c != CL_WS)
            return tok_run(t, s, n, p + 1 + (size_t)l, c, ws_js);
    }
    unsigned c = tok_cls_at(t, s, n, p, ws_js, &l);
    size_t e = tok_run(t, s, n, p + (size_t)l, c, ws_js);
    return c == CL_WS ? tok_ws_tail(s, n, p, e) : e;
}

/* Llama-3 / cl100k (digits 3) and Qwen2 (digits 1): the end of the match at p. */
static size_t tok_fast_cl100k(const tok *t, const uint8_t *s, size_t n, size_t p, int digits)
{
    uint8_t c0 = s[p];
    if (c0 == '\'' && p + 1 < n) {
        uint8_t c1 = s[p + 1] | 0x20;
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
            return p + 2;
        if (p + 2 < n) {
            uint8_t c2 = s[p + 2] | 0x20;
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
                return p + 3;
        }
    }
    int l0, l1;
    unsigned k0 = tok_cls_at(t, s, n, p, 0, &l0);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (k0 == CL_L)
        return tok_run(t, s, n, p + (size_t)l0, CL_L, 0);
    if (k0 != CL_N && c0 != '\r' && c0 != '\n' && p + (size_t)l0 < n &&
        tok_cls_at(t, s, n, p + (size_t)l0, 0, &l1) == CL_L)
        return tok_run(t, s, n, p + (size_t)l0 + (size_t)l1, CL_L, 0);
    /* \p{N}{1,digits} */
    if (k0 == CL_N) {
        size_t e = p + (size_t)l0;
        for (int d = 1; d < digits && e < n; d++) {
            int l;
            if (tok_cls_at(t, s, n, e, 0, &l) != CL_N)
                break;
            e += (size_t)l;
        }
        return e;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t q = SIZE_MAX;
    if (k0 == CL_OTHER)
        q = p + (size_t)l0;
    else if (c0 == ' ' && p + 1 < n && tok_cls_at(t, s, n, p + 1, 0, &l1) == CL_OTHER)
        q = p + 1 + (size_t)l1;
    if (q != SIZE_MAX) {
        size_t e = tok_run(t, s, n, q, CL_OTHER, 0);
        while (e < n && (s[e] == '\r' || s[e] == '\n'))
            e++;
        return e;
    }
    /* whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+ */
    size_t e = tok_run(t, s, n, p + (size_t)l0, CL_WS, 0);
    for (size_t j = e; j > p; j--)
        if (s[j - 1] == '\r' || s[j - 1] == '\n')
            return j;
    return tok_ws_tail(s, n, p, e);
}

/* ---- Oniguruma ------------------------------------------------------------------ */

/* General category masks by property name (Oniguruma's spellings). */
static const struct {
    const char *name;
    uint32_t mask;
} TOK_GC_NAMES[] = {
    {"L", GCM_L}, {"Letter", GCM_L}, {"LC", GCM(GC_LU) | GCM(GC_LL) | GCM(GC_LT)},
    {"L&", GCM(GC_LU) | GCM(GC_LL) | GCM(GC_LT)}, {"Cased_Letter", GCM(GC_LU) | GCM(GC_LL) | GCM(GC_LT)},
    {"Lu", GCM(GC_LU)}, {"Uppercase_Letter", GCM(GC_LU)}, {"Ll", GCM(GC_LL)},
    {"Lowercase_Letter", GCM(GC_LL)}, {"Lt", GCM(GC_LT)}, {"Titlecase_Letter", GCM(GC_LT)},
    {"Lm", GCM(GC_LM)}, {"Modifier_Letter", GCM(GC_LM)}, {"Lo", GCM(GC_LO)},
    {"Other_Letter", GCM(GC_LO)}, {"M", GCM_M}, {"Mark", GCM_M}, {"Combining_Mark", GCM_M},
    {"Mn", GCM(GC_MN)}, {"Nonspacing_Mark", GCM(GC_MN)}, {"Mc", GCM(GC_MC)},
    {"Spacing_Mark", GCM(GC_MC)}, {"Me", GCM(GC_ME)}, {"Enclosing_Mark", GCM(GC_ME)},
    {"N", GCM_N}, {"Number", GCM_N}, {"Nd", GCM(GC_ND)}, {"Decimal_Number", GCM(GC_ND)},
    {"Nl", GCM(GC_NL)}, {"Letter_Number", GCM(GC_NL)}, {"No", GCM(GC_NO)},
    {"Other_Number", GCM(GC_NO)},
    {"P", GCM(GC_PC) | GCM(GC_PD) | GCM(GC_PS) | GCM(GC_PE) | GCM(GC_PI) | GCM(GC_PF) | GCM(GC_PO)},
    {"Punctuation", GCM(GC_PC) | GCM(GC_PD) | GCM(GC_PS) | GCM(GC_PE) | GCM(GC_PI) | GCM(GC_PF) | GCM(GC_PO)},
    {"Pc", GCM(GC_PC)}, {"Connector_Punctuation", GCM(GC_PC)}, {"Pd", GCM(GC_PD)},
    {"Dash_Punctuation", GCM(GC_PD)}, {"Ps", GCM(GC_PS)}, {"Open_Punctuation", GCM(GC_PS)},
    {"Pe", GCM(GC_PE)}, {"Close_Punctuation", GCM(GC_PE)}, {"Pi", GCM(GC_PI)},
    {"Initial_Punctuation", GCM(GC_PI)}, {"Pf", GCM(GC_PF)}, {"Final_Punctuation", GCM(GC_PF)},
    {"Po", GCM(GC_PO)}, {"Other_Punctuation", GCM(GC_PO)},
    {"S", GCM(GC_SM) | GCM(GC_SC) | GCM(GC_SK) | GCM(GC_SO)},
    {"Symbol", GCM(GC_SM) | GCM(GC_SC) | GCM(GC_SK) | GCM(GC_SO)}, {"Sm", GCM(GC_SM)},
    {"Math_Symbol", GCM(GC_SM)}, {"Sc", GCM(GC_SC)}, {"Currency_Symbol", GCM(GC_SC)},
    {"Sk", GCM(GC_SK)}, {"Modifier_Symbol", GCM(GC_SK)}, {"So", GCM(GC_SO)},
    {"Other_Symbol", GCM(GC_SO)}, {"Z", GCM(GC_ZS) | GCM(GC_ZL) | GCM(GC_ZP)},
    {"Separator", GCM(GC_ZS) | GCM(GC_ZL) | GCM(GC_ZP)}, {"Zs", GCM(GC_ZS)},
    {"Space_Separator", GCM(GC_ZS)}, {"Zl", GCM(GC_ZL)}, {"Line_Separator", GCM(GC_ZL)},
    {"Zp", GCM(GC_ZP)}, {"Paragraph_Separator", GCM(GC_ZP)},
    {"C", GCM(GC_CC) | GCM(GC_CF) | GCM(GC_CS) | GCM(GC_CO) | GCM(GC_CN)},
    {"Other", GCM(GC_CC) | GCM(GC_CF) | GCM(GC_CS) | GCM(GC_CO) | GCM(GC_CN)},
    {"Cc", GCM(GC_CC)}, {"Control", GCM(GC_CC)}, {"Cf", GCM(GC_CF)}, {"Format", GCM(GC_CF)},
    {"Co", GCM(GC_CO)}, {"Private_Use", GCM(GC_CO)}, {"Cn", GCM(GC_CN)},
    {"Unassigned", GCM(GC_CN)},
};

static uint32_t tok_gc_mask_by_name(const char *name, size_t len)
{
    if (len > 3 && memcmp(name, "gc=", 3) == 0)
        name += 3, len -= 3;
    else if (len > 17 && memcmp(name, "General_Category=", 17) == 0)
        name += 17, len -= 17;
    for (size_t i = 0; i < sizeof TOK_GC_NAMES / sizeof TOK_GC_NAMES[0]; i++)
        if (strlen(TOK_GC_NAMES[i].name) == len && memcmp(TOK_GC_NAMES[i].name, name, len) == 0)
            return TOK_GC_NAMES[i].mask;
    return 0;
}

/* Appends the code point ranges of the categories in mask ("\x{41}-\x{5A}...")
 * to out, surrogates left out. */
static int tok_put_ranges(tok_buf *out, uint32_t mask)
{
    char tmp[48];
    for (size_t i = 0; i < TOK_GC_NRUNS; i++) {
        if (!(mask & GCM(TOK_GC_RUNS[i] & 31)))
            continue;
        uint32_t lo = TOK_GC_RUNS[i] >> 5;
        size_t j = i;
        while (j + 1 < TOK_GC_NRUNS && (mask & GCM(TOK_GC_RUNS[j + 1] & 31)))
            j++;
        uint32_t hi = j + 1 < TOK_GC_NRUNS ? (TOK_GC_RUNS[j + 1] >> 5) - 1 : 0x10FFFF;
        i = j;
        uint32_t parts[2][2] = {{lo, hi}, {1, 0}};
        if (lo <= 0xDFFF && hi >= 0xD800) { /* cut the surrogates out */
            parts[0][1] = 0xD7FF;
            parts[1][0] = 0xE000;
            parts[1][1] = hi;
        }
        for (int k = 0; k < 2; k++) {
            if (parts[k][0] > parts[k][1])
                continue;
            int m = parts[k][0] == parts[k][1]
                        ? snprintf(tmp, sizeof tmp, "\\x{%X}", parts[k][0])
                        : snprintf(tmp, sizeof tmp, "\\x{%X}-\\x{%X}", parts[k][0], parts[k][1]);
            if (tok_buf_put(out, tmp, (size_t)m) < 0)
                return -ENOMEM;
        }
    }
    return 0;
}

/* Rewrites pattern p[0..n) for Oniguruma: \p{GC} / \P{GC} / \p{^GC} (general
 * categories only) and \d / \D become explicit ranges from our table, inside
 * or outside brackets. Everything else is left to Oniguruma. */
static int tok_rx_rewrite(const char *p, size_t n, tok_buf *out)
{
    int depth = 0; /* bracket nesting */
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            uint32_t mask = 0;
            int neg = 0;
            size_t next = i + 2;
            if ((d == 'p' || d == 'P') && i + 2 < n && p[i + 2] == '{') {
                const char *close = memchr(p + i + 3, '}', n - i - 3);
                if (close != NULL) {
                    const char *name = p + i + 3;
                    size_t len = (size_t)(close - name);
                    neg = d == 'P';
                    if (len > 0 && name[0] == '^')
                        neg = !neg, name++, len--;
                    mask = tok_gc_mask_by_name(name, len);
                    next = (size_t)(close - p) + 1;
                }
            } else if (d == 'd' || d == 'D') {
                mask = GCM(GC_ND);
                neg = d == 'D';
            }
            if (mask == 0) {
                /* copy the escape and the whole character after the backslash */
                size_t l = 1;
                while (i + 1 + l < n && ((uint8_t)p[i + 1 + l] & 0xC0) == 0x80)
                    l++;
                if (tok_buf_put(out, p + i, 1 + l) < 0)
                    return -ENOMEM;
                i += 1 + l;
                continue;
            }
            const char *open = neg ? "[^" : "[";
            if (depth > 0 && !neg)
                open = "";
            if (tok_buf_put(out, open, strlen(open)) < 0 || tok_put_ranges(out, mask) < 0 ||
                tok_buf_put(out, *open ? "]" : "", *open ? 1 : 0) < 0)
                return -ENOMEM;
            i = next;
            continue;
        }
        if (c == '[') {
            if (i + 1 < n && p[i + 1] == ':') { /* POSIX bracket [:alpha:] */
                const char *end = i + 2 < n ? memmem(p + i + 2, n - i - 2, ":]", 2) : NULL;
                if (end != NULL && depth > 0) {
                    size_t l = (size_t)(end - (p + i)) + 2;
                    if (tok_buf_put(out, p + i, l) < 0)
                        return -ENOMEM;
                    i += l;
                    continue;
                }
            }
            depth++;
            size_t l = 1;
            if (i + l < n && p[i + l] == '^')
                l++;
            if (i + l < n && p[i + l] == ']') /* a leading ] is literal */
                l++;
            if (tok_buf_put(out, p + i, l) < 0)
                return -ENOMEM;
            i += l;
            continue;
        }
        if (c == ']' && depth > 0)
            depth--;
        if (tok_buf_put(out, p + i, 1) < 0)
            return -ENOMEM;
        i++;
    }
    return 0;
}

/* Compiles pattern p[0..n) (already checked to be UTF-8) into pat, or picks
 * a built-in splitter for it. */
static int tok_pat_regex(tok_pat *pat, const char *p, size_t n, int allow_fast, char *why,
                         size_t why_len)
{
    if (allow_fast) {
        if (n == sizeof PAT_GPT2 - 1 && memcmp(p, PAT_GPT2, n) == 0)
            pat->fast = FAST_GPT2;
        else if (n == sizeof PAT_CL100K - 1 && memcmp(p, PAT_CL100K, n) == 0)
            pat->fast = FAST_CL100K;
        else if (n == sizeof PAT_QWEN2 - 1 && memcmp(p, PAT_QWEN2, n) == 0)
            pat->fast = FAST_QWEN2;
        if (pat->fast != FAST_NONE)
            return 0;
    }
    tok_buf rx = {0};
    if (tok_rx_rewrite(p, n, &rx) < 0 || tok_buf_put(&rx, "", 0) < 0) {
        free(rx.p);
        return -ENOMEM;
    }
    OnigErrorInfo einfo;
    int r = onig_new(&pat->re, rx.p, rx.p + rx.len, ONIG_OPTION_IGNORECASE_IS_ASCII,
                     ONIG_ENCODING_UTF8, ONIG_SYNTAX_ONIGURUMA, &einfo);
    free(rx.p);
    if (r != ONIG_NORMAL) {
        UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, r, &einfo);
        snprintf(why, why_len, "%s", (const char *)msg);
        pat->re = NULL;
        return -EINVAL;
    }
    return 0;
}

static void tok_pat_free(tok_pat *pat)
{
    free(pat->lit);
    if (pat->re)
        onig_free(pat->re);
    memset(pat, 0, sizeof *pat);
}

/* ---- loading: helpers --------------------------------------------------------- */

typedef struct tok_ld {
    tok *t;
    const char *file; /* for messages */
    rt_err *err;
} tok_ld;

static int tok_jbad(tok_ld *ld, const char *path, const json_t *v, const char *expected)
{
    if (v == NULL)
        return err_set(ld->err, -EINVAL, "%s: %s is missing, expected %s", ld->file, path, expected);
    return err_set(ld->err, -EINVAL, "%s: %s is a JSON %s, expected %s", ld->file, path,
                   tu_json_kind(v), expected);
}

/* obj[key] as a string (UTF-8 checked); *s NULL when absent or null and not
 * required. */
static int tok_jstr(tok_ld *ld, const json_t *obj, const char *path, const char *key, int required,
                    const char **s, size_t *len)
{
    char p[512];
    snprintf(p, sizeof p, "%s%s%s", path, *path ? "." : "", key);
    json_t *v = json_object_get(obj, key);
    *s = NULL;
    *len = 0;
    if (v == NULL || json_is_null(v)) {
        if (required)
            return tok_jbad(ld, p, v, "a string");
        return 0;
    }
    if (!json_is_string(v))
        return tok_jbad(ld, p, v, "a string");
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

static int tok_jbool(tok_ld *ld, const json_t *obj, const char *path, const char *key, int def,
                     int *out)
{
    json_t *v = json_object_get(obj, key);
    *out = def;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v)) {
        char p[512];
        snprintf(p, sizeof p, "%s%s%s", path, *path ? "." : "", key);
        return tok_jbad(ld, p, v, "true or false");
    }
    *out = json_is_true(v);
    return 0;
}

static int tok_jint(tok_ld *ld, const json_t *obj, const char *path, const char *key, int64_t def,
                    int64_t lo, int64_t hi, int64_t *out)
{
    char p[512];
    snprintf(p, sizeof p, "%s%s%s", path, *path ? "." : "", key);
    json_t *v = json_object_get(obj, key);
    *out = def;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        char exp[96];
        snprintf(exp, sizeof exp, "an integer in [%lld, %lld]", (long long)lo, (long long)hi);
        if (json_is_integer(v))
            return err_set(ld->err, -EINVAL, "%s: %s is %lld, expected %s", ld->file, p,
                           (long long)json_integer_value(v), exp);
        return tok_jbad(ld, p, v, exp);
    }
    *out = json_integer_value(v);
    return 0;
}

/* The "type" of component obj at path (an object); fails when obj is not
 * an object or has no string type. */
static int tok_jtype(tok_ld *ld, const json_t *obj, const char *path, const char **type)
{
    if (!json_is_object(obj))
        return tok_jbad(ld, path, obj, "an object or null");
    size_t len;
    return tok_jstr(ld, obj, path, "type", 1, type, &len);
}

static int tok_unsupported(tok_ld *ld, const char *path, const char *type, const char *supported)
{
    return err_set(ld->err, -EINVAL, "%s: %s.type \"%s\" is not supported (%s)", ld->file, path,
                   type, supported);
}

static int tok_arena_put(tok *t, const void *s, size_t n, uint64_t *off)
{
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 1u << 16;
        while (cap < t->arena_len + n + 1)
            cap *= 2;
        char *p = realloc(t->arena, cap);
        if (p == NULL)
            return -ENOMEM;
        t->arena = p;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = '\0';
    *off = t->arena_len;
    t->arena_len += n + 1;
    return 0;
}

/* A String or Regex pattern object at path. */
static int tok_jpattern(tok_ld *ld, const json_t *obj, const char *path, int allow_fast, tok_pat *pat)
{
    char p[512];
    snprintf(p, sizeof p, "%s.pattern", path);
    json_t *v = json_object_get(obj, "pattern");
    if (!json_is_object(v))
        return tok_jbad(ld, p, v, "an object {\"String\": ...} or {\"Regex\": ...}");
    json_t *s = json_object_get(v, "String"), *r = json_object_get(v, "Regex");
    if ((s == NULL) == (r == NULL))
        return err_set(ld->err, -EINVAL, "%s: %s must have exactly one of \"String\" and \"Regex\"",
                       ld->file, p);
    const char *text;
    size_t len;
    int rc = tok_jstr(ld, v, p, s ? "String" : "Regex", 1, &text, &len);
    if (rc < 0)
        return rc;
    if (s) {
        if (len == 0)
            return err_set(ld->err, -EINVAL, "%s: %s.String is empty, expected some text",
                           ld->file, p);
        pat->lit = malloc(len + 1);
        if (pat->lit == NULL)
            return -ENOMEM;
        memcpy(pat->lit, text, len + 1);
        pat->lit_len = len;
        return 0;
    }
    char why[ONIG_MAX_ERROR_MESSAGE_LEN];
    rc = tok_pat_regex(pat, text, len, allow_fast, why, sizeof why);
    if (rc == -EINVAL)
        return err_set(ld->err, rc, "%s: %s.Regex \"%s\" does not compile: %s", ld->file, p, text, why);
    return rc;
}

/* Metaspace's replacement character at obj (default U+2581). */
static int tok_jreplacement(tok_ld *ld, const json_t *obj, const char *path, char rep[8], size_t *rep_len)
{
    const char *s;
    size_t len;
    int rc = tok_jstr(ld, obj, path, "replacement", 0, &s, &len);
    if (rc < 0)
        return rc;
    if (s == NULL) {
        s = "\xE2\x96\x81";
        len = 3;
    }
    uint32_t c;
    if (len == 0 || len > 4 || tok_u8_next((const uint8_t *)s, len, &c) != (int)len)
        return err_set(ld->err, -EINVAL, "%s: %s.replacement \"%s\" is not one character", ld->file,
                       path, s);
    memcpy(rep, s, len);
    *rep_len = len;
    return 0;
}

/* prepend_scheme, or the legacy add_prefix_space (false means never). */
static int tok_jscheme(tok_ld *ld, const json_t *obj, const char *path, int *scheme)
{
    const char *s;
    size_t len;
    int rc = tok_jstr(ld, obj, path, "prepend_scheme", 0, &s, &len);
    if (rc < 0)
        return rc;
    if (s == NULL) {
        int aps;
        rc = tok_jbool(ld, obj, path, "add_prefix_space", 1, &aps);
        *scheme = aps ? PS_ALWAYS : PS_NEVER;
        return rc;
    }
    if (strcmp(s, "always") == 0)
        *scheme = PS_ALWAYS;
    else if (strcmp(s, "first") == 0)
        *scheme = PS_FIRST;
    else if (strcmp(s, "never") == 0)
        *scheme = PS_NEVER;
    else
        return err_set(ld->err, -EINVAL,
                       "%s: %s.prepend_scheme \"%s\" is not one of \"first\", \"always\", \"never\"",
                       ld->file, path, s);
    return 0;
}

/* ---- loading: components ------------------------------------------------------ */

typedef int (*tok_load_fn)(tok_ld *ld, const json_t *v, const char *path);

/* Loads each element of a Sequence component v[key] with load, in order
 * (the loaders take null elements as absent). */
static int tok_load_seq(tok_ld *ld, const json_t *v, const char *path, const char *key, tok_load_fn load)
{
    char p[512];
    snprintf(p, sizeof p, "%s.%s", path, key);
    json_t *a = json_object_get(v, key);
    if (!json_is_array(a))
        return tok_jbad(ld, p, a, "an array");
    for (size_t i = 0; i < json_array_size(a); i++) {
        char q[512];
        snprintf(q, sizeof q, "%.400s[%zu]", p, i);
        int rc = load(ld, json_array_get(a, i), q);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int tok_load_normalizer(tok_ld *ld, const json_t *v, const char *path)
{
    tok *t = ld->t;
    if (v == NULL || json_is_null(v))
        return 0;
    const char *type;
    int rc = tok_jtype(ld, v, path, &type);
    if (rc < 0)
        return rc;
    if (strcmp(type, "Sequence") == 0)
        return tok_load_seq(ld, v, path, "normalizers", tok_load_normalizer);
    if (t->n_norm == TOK_MAX_NORM)
        return err_set(ld->err, -EINVAL, "%s: %s: more than %d normalizers", ld->file, path, TOK_MAX_NORM);
    tok_norm *n = &t->norm[t->n_norm];
    memset(n, 0, sizeof *n);
    const char *s;
    size_t len;
    if (strcmp(type, "NFC") == 0)
        n->kind = N_NFC;
    else if (strcmp(type, "NFD") == 0)
        n->kind = N_NFD;
    else if (strcmp(type, "NFKC") == 0)
        n->kind = N_NFKC;
    else if (strcmp(type, "NFKD") == 0)
        n->kind = N_NFKD;
    else if (strcmp(type, "Lowercase") == 0)
        n->kind = N_LOWER;
    else if (strcmp(type, "StripAccents") == 0)
        n->kind = N_STRIP_ACCENTS;
    else if (strcmp(type, "Strip") == 0) {
        n->kind = N_STRIP;
        if ((rc = tok_jbool(ld, v, path, "strip_left", 0, &n->left)) < 0 ||
            (rc = tok_jbool(ld, v, path, "strip_right", 0, &n->right)) < 0)
            return rc;
    } else if (strcmp(type, "Prepend") == 0 || strcmp(type, "Replace") == 0) {
        int replace = type[0] == 'R';
        n->kind = replace ? N_REPLACE : N_PREPEND;
        t->n_norm++; /* owned from here on, freed by tok_close on failure */
        if (replace && (rc = tok_jpattern(ld, v, path, 0, &n->pat)) < 0)
            return rc;
        if ((rc = tok_jstr(ld, v, path, replace ? "content" : "prepend", 1, &s, &len)) < 0)
            return rc;
        if ((n->content = malloc(len + 1)) == NULL)
            return -ENOMEM;
        memcpy(n->content, s, len + 1);
        n->content_len = len;
        return 0;
    } else
        return tok_unsupported(ld, path, type,
                               "supported: Sequence, NFC, NFD, NFKC, NFKD, Replace, Prepend, "
                               "Lowercase, Strip, StripAccents");
    t->n_norm++;
    return 0;
}

static const char *const TOK_BEHAVIORS[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                            "Contiguous"};

static int tok_load_pre(tok_ld *ld, const json_t *v, const char *path)
{
    tok *t = ld->t;
    if (v == NULL || json_is_null(v))
        return 0;
    const char *type;
    int rc = tok_jtype(ld, v, path, &type);
    if (rc < 0)
        return rc;
    if (strcmp(type, "Sequence") == 0)
        return tok_load_seq(ld, v, path, "pretokenizers", tok_load_pre);
    if (t->n_pre == TOK_MAX_PRE)
        return err_set(ld->err, -EINVAL, "%s: %s: more than %d pre-tokenizers", ld->file, path, TOK_MAX_PRE);
    tok_pre *pr = &t->pre[t->n_pre];
    memset(pr, 0, sizeof *pr);
    if (strcmp(type, "ByteLevel") == 0) {
        pr->kind = P_BYTELEVEL;
        if ((rc = tok_jbool(ld, v, path, "add_prefix_space", 0, &pr->prefix_space)) < 0 ||
            (rc = tok_jbool(ld, v, path, "use_regex", 1, &pr->use_regex)) < 0)
            return rc;
    } else if (strcmp(type, "Split") == 0) {
        pr->kind = P_SPLIT;
        t->n_pre++;
        if ((rc = tok_jpattern(ld, v, path, 1, &pr->pat)) < 0 ||
            (rc = tok_jbool(ld, v, path, "invert", 0, &pr->invert)) < 0)
            return rc;
        const char *b;
        size_t len;
        if ((rc = tok_jstr(ld, v, path, "behavior", 1, &b, &len)) < 0)
            return rc;
        pr->behavior = -1;
        for (int i = 0; i < 5; i++)
            if (strcmp(b, TOK_BEHAVIORS[i]) == 0)
                pr->behavior = i;
        if (pr->behavior < 0)
            return err_set(ld->err, -EINVAL,
                           "%s: %s.behavior \"%s\" is not one of Removed, Isolated, "
                           "MergedWithPrevious, MergedWithNext, Contiguous",
                           ld->file, path, b);
        return 0;
    } else if (strcmp(type, "Metaspace") == 0) {
        pr->kind = P_METASPACE;
        if ((rc = tok_jreplacement(ld, v, path, pr->rep, &pr->rep_len)) < 0 ||
            (rc = tok_jscheme(ld, v, path, &pr->scheme)) < 0 ||
            (rc = tok_jbool(ld, v, path, "split", 0, &pr->split)) < 0)
            return rc;
    } else if (strcmp(type, "Digits") == 0) {
        pr->kind = P_DIGITS;
        if ((rc = tok_jbool(ld, v, path, "individual_digits", 0, &pr->individual)) < 0)
            return rc;
    } else if (strcmp(type, "WhitespaceSplit") == 0) {
        pr->kind = P_WSPLIT;
    } else
        return tok_unsupported(ld, path, type,
                               "supported: Sequence, ByteLevel, Split, Metaspace, Digits, WhitespaceSplit");
    t->n_pre++;
    return 0;
}

/* Appends ids to *v (growing it); *n counts them. */
static int tok_ids_append(int32_t **v, size_t *n, const int32_t *ids, size_t k)
{
    int32_t *p = realloc(*v, (*n + k + 1) * sizeof *p);
    if (p == NULL)
        return -ENOMEM;
    if (k > 0)
        memcpy(p + *n, ids, k * sizeof *p);
    *v = p;
    *n += k;
    return 0;
}

static int32_t tok_lookup(const tok *t, const char *s, size_t n)
{
    int32_t a = tok_smap_get(&t->added_content, t->arena, s, n);
    if (a >= 0)
        return t->added[a].id;
    return tok_smap_get(&t->vocab, t->arena, s, n);
}

/* One post-processor: what it puts before and after the sequence, given in
 * pre/suf (built here, caller frees). */
static int tok_load_post(tok_ld *ld, const json_t *v, const char *path, int32_t **pre, size_t *npre,
                         int32_t **suf, size_t *nsuf)
{
    tok *t = ld->t;
    if (v == NULL || json_is_null(v))
        return 0;
    const char *type;
    int rc = tok_jtype(ld, v, path, &type);
    if (rc < 0)
        return rc;
    char p[512];
    if (strcmp(type, "Sequence") == 0) {
        snprintf(p, sizeof p, "%s.processors", path);
        json_t *a = json_object_get(v, "processors");
        if (!json_is_array(a))
            return tok_jbad(ld, p, a, "an array");
        for (size_t i = 0; i < json_array_size(a); i++) {
            /* each processor wraps what the ones before it produced */
            int32_t *p2 = NULL, *s2 = NULL;
            size_t np2 = 0, ns2 = 0;
            char q[512];
            snprintf(q, sizeof q, "%.400s[%zu]", p, i);
            rc = tok_load_post(ld, json_array_get(a, i), q, &p2, &np2, &s2, &ns2);
            if (rc == 0)
                rc = tok_ids_append(&p2, &np2, *pre, *npre);
            if (rc == 0)
                rc = tok_ids_append(suf, nsuf, s2, ns2);
            if (rc == 0) {
                free(*pre);
                *pre = p2;
                *npre = np2;
                p2 = NULL;
            }
            free(p2);
            free(s2);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    if (strcmp(type, "ByteLevel") == 0)
        return 0;
    if (strcmp(type, "BertProcessing") == 0 || strcmp(type, "RobertaProcessing") == 0) {
        const char *keys[2] = {"cls", "sep"};
        for (int k = 0; k < 2; k++) {
            snprintf(p, sizeof p, "%s.%s", path, keys[k]);
            json_t *a = json_object_get(v, keys[k]);
            json_t *idv = json_array_get(a, 1);
            if (!json_is_array(a) || json_array_size(a) != 2 || !json_is_integer(idv) ||
                json_integer_value(idv) < 0 || json_integer_value(idv) >= t->n_ids)
                return tok_jbad(ld, p, a, "[token, id] with an id of the vocabulary");
            int32_t id = (int32_t)json_integer_value(idv);
            if ((rc = tok_ids_append(k ? suf : pre, k ? nsuf : npre, &id, 1)) < 0)
                return rc;
        }
        return 0;
    }
    if (strcmp(type, "TemplateProcessing") != 0)
        return tok_unsupported(ld, path, type,
                               "supported: TemplateProcessing, ByteLevel, BertProcessing, "
                               "RobertaProcessing, Sequence");
    snprintf(p, sizeof p, "%s.single", path);
    json_t *single = json_object_get(v, "single");
    if (!json_is_array(single))
        return tok_jbad(ld, p, single, "an array of {\"SpecialToken\": ...} and {\"Sequence\": ...}");
    json_t *specials = json_object_get(v, "special_tokens");
    int seen_a = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
        char q[512];
        snprintf(q, sizeof q, "%.400s[%zu]", p, i);
        json_t *item = json_array_get(single, i);
        json_t *seq = json_object_get(item, "Sequence"), *sp = json_object_get(item, "SpecialToken");
        if (json_is_object(seq)) {
            const char *sid;
            size_t len;
            snprintf(q + strlen(q), sizeof q - strlen(q), ".Sequence");
            if ((rc = tok_jstr(ld, seq, q, "id", 1, &sid, &len)) < 0)
                return rc;
            if (strcmp(sid, "A") != 0 || seen_a)
                return err_set(ld->err, -EINVAL,
                               "%s: %s.id is \"%s\": a single-sequence template holds $A once", ld->file,
                               q, sid);
            seen_a = 1;
            continue;
        }
        if (!json_is_object(sp))
            return tok_jbad(ld, q, item, "{\"SpecialToken\": ...} or {\"Sequence\": ...}");
        const char *name;
        size_t len;
        snprintf(q + strlen(q), sizeof q - strlen(q), ".SpecialToken");
        if ((rc = tok_jstr(ld, sp, q, "id", 1, &name, &len)) < 0)
            return rc;
        json_t *ids = json_object_get(json_object_get(specials, name), "ids");
        int32_t one;
        if (json_is_array(ids)) {
            for (size_t k = 0; k < json_array_size(ids); k++) {
                json_t *x = json_array_get(ids, k);
                if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= t->n_ids) {
                    char r[700];
                    snprintf(r, sizeof r, "%s.special_tokens[\"%s\"].ids[%zu]", path, name, k);
                    return tok_jbad(ld, r, x, "an id of the vocabulary");
                }
                one = (int32_t)json_integer_value(x);
                if ((rc = tok_ids_append(seen_a ? suf : pre, seen_a ? nsuf : npre, &one, 1)) < 0)
                    return rc;
            }
        } else {
            one = tok_lookup(t, name, len);
            if (one < 0)
                return err_set(ld->err, -EINVAL,
                               "%s: %s.id \"%s\" is neither in %s.special_tokens nor a token", ld->file,
                               q, name, path);
            if ((rc = tok_ids_append(seen_a ? suf : pre, seen_a ? nsuf : npre, &one, 1)) < 0)
                return rc;
        }
    }
    if (!seen_a)
        return err_set(ld->err, -EINVAL, "%s: %s has no {\"Sequence\": {\"id\": \"A\"}}", ld->file, p);
    return 0;
}

static int tok_load_decoder(tok_ld *ld, const json_t *v, const char *path)
{
    tok *t = ld->t;
    if (v == NULL || json_is_null(v))
        return 0;
    const char *type;
    int rc = tok_jtype(ld, v, path, &type);
    if (rc < 0)
        return rc;
    t->has_decoder = 1;
    if (strcmp(type, "Sequence") == 0)
        return tok_load_seq(ld, v, path, "decoders", tok_load_decoder);
    if (t->n_dec == TOK_MAX_DEC)
        return err_set(ld->err, -EINVAL, "%s: %s: more than %d decoders", ld->file, path, TOK_MAX_DEC);
    tok_dec *d = &t->dec[t->n_dec];
    memset(d, 0, sizeof *d);
    const char *s;
    size_t len;
    if (strcmp(type, "ByteLevel") == 0)
        d->kind = D_BYTELEVEL;
    else if (strcmp(type, "ByteFallback") == 0)
        d->kind = D_BYTEFALLBACK;
    else if (strcmp(type, "Fuse") == 0)
        d->kind = D_FUSE;
    else if (strcmp(type, "Metaspace") == 0) {
        int scheme;
        d->kind = D_METASPACE;
        if ((rc = tok_jreplacement(ld, v, path, d->rep, &d->rep_len)) < 0 ||
            (rc = tok_jscheme(ld, v, path, &scheme)) < 0)
            return rc;
        d->strip_first = scheme != PS_NEVER;
    } else if (strcmp(type, "Strip") == 0) {
        int64_t a, b;
        d->kind = D_STRIP;
        if ((rc = tok_jstr(ld, v, path, "content", 1, &s, &len)) < 0)
            return rc;
        if (len == 0 || len > 4 || tok_u8_next((const uint8_t *)s, len, &d->strip_cp) != (int)len)
            return err_set(ld->err, -EINVAL, "%s: %s.content \"%s\" is not one character", ld->file,
                           path, s);
        if ((rc = tok_jint(ld, v, path, "start", 0, 0, INT32_MAX, &a)) < 0 ||
            (rc = tok_jint(ld, v, path, "stop", 0, 0, INT32_MAX, &b)) < 0)
            return rc;
        d->start = (int)a;
        d->stop = (int)b;
    } else if (strcmp(type, "Replace") == 0 || strcmp(type, "BPEDecoder") == 0) {
        int replace = type[0] == 'R';
        d->kind = replace ? D_REPLACE : D_BPE;
        t->n_dec++;
        if (replace && (rc = tok_jpattern(ld, v, path, 0, &d->pat)) < 0)
            return rc;
        if ((rc = tok_jstr(ld, v, path, replace ? "content" : "suffix", replace, &s, &len)) < 0)
            return rc;
        if (s == NULL)
            s = "</w>", len = 4;
        if ((d->content = malloc(len + 1)) == NULL)
            return -ENOMEM;
        memcpy(d->content, s, len + 1);
        d->content_len = len;
        return 0;
    } else
        return tok_unsupported(ld, path, type,
                               "supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, "
                               "BPEDecoder, Sequence");
    t->n_dec++;
    return 0;
}

/* ---- scratch ------------------------------------------------------------------- */

typedef struct tok_span {
    uint32_t off, len; /* bytes into the text being split */
    int32_t tag;       /* pattern split: 1 match, 0 not; added split: token index + 1, 0 text */
} tok_span;

typedef struct tok_spans {
    tok_span *p;
    size_t n, cap;
} tok_spans;

static int tok_spans_push(tok_spans *v, size_t off, size_t len, int32_t tag)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        tok_span *p = realloc(v->p, cap * sizeof *p);
        if (p == NULL)
            return -ENOMEM;
        v->p = p;
        v->cap = cap;
    }
    v->p[v->n++] = (tok_span){(uint32_t)off, (uint32_t)len, tag};
    return 0;
}

typedef struct tok_heap_e {
    int32_t rank, pos;  /* order: rank, then position of the left symbol */
    int32_t right;      /* symbol index of the right side when pushed */
    int32_t lid, rid;   /* ids of both sides when pushed (stale entries are skipped) */
    int32_t id;         /* merged id */
} tok_heap_e;

typedef struct tok_cache_slot {
    uint32_t hash;      /* 0: empty */
    uint32_t klen;      /* key bytes, flag byte included */
    uint32_t koff;      /* into ckeys */
    uint32_t voff, vn;  /* ids in cvals */
} tok_cache_slot;

struct tok_scratch {
    const tok *t;
    tok_buf clean;              /* sanitized input text */
    tok_buf nb[2];              /* normalizer steps, ping-pong */
    uint8_t **chunk;            /* [nchunks] strings the pre-tokenizers make (never moved) */
    size_t *chunk_cap, *chunk_used; /* [nchunks] bytes */
    size_t nchunks, cur;        /* chunks; the one being filled */
    tok_buf tmp;                /* byte-level strings, lookup keys */
    tok_buf nfx;                /* text with newer characters decomposed before utf8proc */
    tok_spans sect, sub;        /* added-token splits of the text / of a normalized section */
    tok_spans lvl[TOK_MAX_PRE]; /* pieces made by each pre-tokenizer step */
    int32_t *u32;               /* [u32_cap] code points for utf8proc */
    size_t u32_cap;
    int32_t *sid, *sprev, *snext, *prank, *pnew; /* [scap] symbols of the word being merged */
    uint32_t *sstart, *slen;    /* [scap] bytes of each symbol in the word */
    size_t scap;
    tok_heap_e *heap;           /* [heap_cap] */
    size_t heap_cap;
    tok_ids word;               /* ids of the current word */
    tok_cache_slot *cache;      /* [TOK_CACHE_SLOTS] */
    size_t cache_used;
    tok_buf ckeys;              /* cache keys */
    tok_ids cvals;              /* cache values */
    OnigRegion *region;
    tok_ids *out;               /* ids of the running encode */
    int last_unk;               /* the last id the model emitted was unk (fuse_unk) */
    tok_buf *collect;           /* tok_pretokenize: the pieces instead of the model */
    tok_buf *collect_lens;      /* size_t per piece */
};

int tok_scratch_init(const tok *t, tok_scratch **out, rt_err *err)
{
    tok_scratch *s = calloc(1, sizeof *s);
    if (s == NULL)
        return err_set(err, -ENOMEM, "tokenizer: out of memory for a scratch");
    s->t = t;
    s->region = onig_region_new();
    if (s->region == NULL) {
        free(s);
        return err_set(err, -ENOMEM, "tokenizer: out of memory for a scratch");
    }
    *out = s;
    return 0;
}

void tok_scratch_free(tok_scratch *s)
{
    if (s == NULL)
        return;
    free(s->clean.p);
    free(s->nb[0].p);
    free(s->nb[1].p);
    for (size_t i = 0; i < s->nchunks; i++)
        free(s->chunk[i]);
    free(s->chunk);
    free(s->chunk_cap);
    free(s->chunk_used);
    free(s->tmp.p);
    free(s->nfx.p);
    free(s->sect.p);
    free(s->sub.p);
    for (int i = 0; i < TOK_MAX_PRE; i++)
        free(s->lvl[i].p);
    free(s->u32);
    free(s->sid);
    free(s->sprev);
    free(s->snext);
    free(s->prank);
    free(s->pnew);
    free(s->sstart);
    free(s->slen);
    free(s->heap);
    free(s->word.p);
    free(s->cache);
    free(s->ckeys.p);
    free(s->cvals.p);
    onig_region_free(s->region, 1);
    free(s);
}

/* ---- patterns --------------------------------------------------------------------- */

/* The first match of pat in s[from..n): 1 with [*mb, *me), 0 when none, or
 * a negative errno when the regex engine fails. */
static int tok_pat_find(tok_scratch *sc, const tok_pat *pat, const uint8_t *s, size_t n, size_t from,
                        size_t *mb, size_t *me)
{
    if (pat->lit) {
        if (from >= n)
            return 0;
        const uint8_t *m = memmem(s + from, n - from, pat->lit, pat->lit_len);
        if (m == NULL)
            return 0;
        *mb = (size_t)(m - s);
        *me = *mb + pat->lit_len;
        return 1;
    }
    if (pat->fast != FAST_NONE) {
        if (from >= n)
            return 0;
        *mb = from;
        *me = pat->fast == FAST_GPT2 ? tok_fast_gpt2(sc->t, s, n, from, pat->ws_js)
                                     : tok_fast_cl100k(sc->t, s, n, from, pat->fast == FAST_CL100K ? 3 : 1);
        return 1;
    }
    int r = onig_search(pat->re, s, s + n, s + from, s + n, sc->region, ONIG_OPTION_NONE);
    if (r == ONIG_MISMATCH)
        return 0;
    if (r < 0)
        return -EINVAL;
    *mb = (size_t)sc->region->beg[0];
    *me = (size_t)sc->region->end[0];
    return 1;
}

/* Splits s[0..n) into matches (tag 1, empty ones included) and the text
 * between them (tag 0), appended to v in order. */
static int tok_pat_spans(tok_scratch *sc, const tok_pat *pat, const uint8_t *s, size_t n, tok_spans *v)
{
    size_t pos = 0, prev = 0, mb, me;
    for (;;) {
        int r = tok_pat_find(sc, pat, s, n, pos, &mb, &me);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        if (mb > prev && tok_spans_push(v, prev, mb - prev, 0) < 0)
            return -ENOMEM;
        if (tok_spans_push(v, mb, me - mb, 1) < 0)
            return -ENOMEM;
        prev = me;
        if (me > mb)
            pos = me;
        else {
            if (mb >= n)
                break;
            uint32_t c;
            pos = mb + (size_t)tok_u8_next(s + mb, n - mb, &c);
        }
    }
    if (prev < n && tok_spans_push(v, prev, n - prev, 0) < 0)
        return -ENOMEM;
    return 0;
}

/* ---- normalizers -------------------------------------------------------------------- */

static int tok_ascii(const uint8_t *s, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull)
            return 0;
    }
    for (; i < n; i++)
        if (s[i] & 0x80)
            return 0;
    return 1;
}

/* JavaScript's String.prototype.trim whitespace (JS \s plus line terminators, the same set). */
static size_t tok_js_trim_start(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c;
        int l = tok_u8_next(s + i, n - i, &c);
        if (!tok_is_ws(c, 1))
            break;
        i += (size_t)l;
    }
    return i;
}

static size_t tok_js_trim_end(const uint8_t *s, size_t n)
{
    while (n > 0) {
        size_t l = tok_u8_prev_len(s, n);
        uint32_t c;
        tok_u8_next(s + n - l, l, &c);
        if (!tok_is_ws(c, 1))
            break;
        n -= l;
    }
    return n;
}

/* Where utf8proc 2.8 (Unicode 15.0) and Node's ICU (Unicode 17.0) differ,
 * one code point at a time: lowercase mappings and the NFD / NFKD / NFKC
 * forms of a lone character (zero-terminated, at most 4 code points).
 * Generated by comparing String.prototype.toLowerCase / normalize in Node
 * 20.20 with utf8proc_tolower / utf8proc_decompose_char for every code
 * point. NFC changes no lone character; compositions of characters new
 * since Unicode 15 are not covered. Both ascending by code point. */
static const struct {
    uint32_t cp, lower;
} TOK_LOWER_DELTA[] = {
    {0x1C89, 0x1C8A},
    {0xA7CB, 0x264},
    {0xA7CC, 0xA7CD},
    {0xA7CE, 0xA7CF},
    {0xA7D2, 0xA7D3},
    {0xA7D4, 0xA7D5},
    {0xA7DA, 0xA7DB},
    {0xA7DC, 0x19B},
    {0x10D50, 0x10D70},
    {0x10D51, 0x10D71},
    {0x10D52, 0x10D72},
    {0x10D53, 0x10D73},
    {0x10D54, 0x10D74},
    {0x10D55, 0x10D75},
    {0x10D56, 0x10D76},
    {0x10D57, 0x10D77},
    {0x10D58, 0x10D78},
    {0x10D59, 0x10D79},
    {0x10D5A, 0x10D7A},
    {0x10D5B, 0x10D7B},
    {0x10D5C, 0x10D7C},
    {0x10D5D, 0x10D7D},
    {0x10D5E, 0x10D7E},
    {0x10D5F, 0x10D7F},
    {0x10D60, 0x10D80},
    {0x10D61, 0x10D81},
    {0x10D62, 0x10D82},
    {0x10D63, 0x10D83},
    {0x10D64, 0x10D84},
    {0x10D65, 0x10D85},
    {0x16EA0, 0x16EBB},
    {0x16EA1, 0x16EBC},
    {0x16EA2, 0x16EBD},
    {0x16EA3, 0x16EBE},
    {0x16EA4, 0x16EBF},
    {0x16EA5, 0x16EC0},
    {0x16EA6, 0x16EC1},
    {0x16EA7, 0x16EC2},
    {0x16EA8, 0x16EC3},
    {0x16EA9, 0x16EC4},
    {0x16EAA, 0x16EC5},
    {0x16EAB, 0x16EC6},
    {0x16EAC, 0x16EC7},
    {0x16EAD, 0x16EC8},
    {0x16EAE, 0x16EC9},
    {0x16EAF, 0x16ECA},
    {0x16EB0, 0x16ECB},
    {0x16EB1, 0x16ECC},
    {0x16EB2, 0x16ECD},
    {0x16EB3, 0x16ECE},
    {0x16EB4, 0x16ECF},
    {0x16EB5, 0x16ED0},
    {0x16EB6, 0x16ED1},
    {0x16EB7, 0x16ED2},
    {0x16EB8, 0x16ED3},
};

static const struct {
    uint32_t cp;
    uint32_t seq[3][4]; /* NFD, NFKD, NFKC */
} TOK_NORM_DELTA[] = {
    {0xA7F1, {{0xA7F1, 0x0, 0x0, 0x0}, {0x53, 0x0, 0x0, 0x0}, {0x53, 0x0, 0x0, 0x0}}},
    {0x105C9, {{0x105D2, 0x307, 0x0, 0x0}, {0x105D2, 0x307, 0x0, 0x0}, {0x105C9, 0x0, 0x0, 0x0}}},
    {0x105E4, {{0x105DA, 0x307, 0x0, 0x0}, {0x105DA, 0x307, 0x0, 0x0}, {0x105E4, 0x0, 0x0, 0x0}}},
    {0x11383, {{0x11382, 0x113C9, 0x0, 0x0}, {0x11382, 0x113C9, 0x0, 0x0}, {0x11383, 0x0, 0x0, 0x0}}},
    {0x11385, {{0x11384, 0x113BB, 0x0, 0x0}, {0x11384, 0x113BB, 0x0, 0x0}, {0x11385, 0x0, 0x0, 0x0}}},
    {0x1138E, {{0x1138B, 0x113C2, 0x0, 0x0}, {0x1138B, 0x113C2, 0x0, 0x0}, {0x1138E, 0x0, 0x0, 0x0}}},
    {0x11391, {{0x11390, 0x113C9, 0x0, 0x0}, {0x11390, 0x113C9, 0x0, 0x0}, {0x11391, 0x0, 0x0, 0x0}}},
    {0x113C5, {{0x113C2, 0x113C2, 0x0, 0x0}, {0x113C2, 0x113C2, 0x0, 0x0}, {0x113C5, 0x0, 0x0, 0x0}}},
    {0x113C7, {{0x113C2, 0x113B8, 0x0, 0x0}, {0x113C2, 0x113B8, 0x0, 0x0}, {0x113C7, 0x0, 0x0, 0x0}}},
    {0x113C8, {{0x113C2, 0x113C9, 0x0, 0x0}, {0x113C2, 0x113C9, 0x0, 0x0}, {0x113C8, 0x0, 0x0, 0x0}}},
    {0x16121, {{0x1611E, 0x1611E, 0x0, 0x0}, {0x1611E, 0x1611E, 0x0, 0x0}, {0x16121, 0x0, 0x0, 0x0}}},
    {0x16122, {{0x1611E, 0x16129, 0x0, 0x0}, {0x1611E, 0x16129, 0x0, 0x0}, {0x16122, 0x0, 0x0, 0x0}}},
    {0x16123, {{0x1611E, 0x1611F, 0x0, 0x0}, {0x1611E, 0x1611F, 0x0, 0x0}, {0x16123, 0x0, 0x0, 0x0}}},
    {0x16124, {{0x16129, 0x1611F, 0x0, 0x0}, {0x16129, 0x1611F, 0x0, 0x0}, {0x16124, 0x0, 0x0, 0x0}}},
    {0x16125, {{0x1611E, 0x16120, 0x0, 0x0}, {0x1611E, 0x16120, 0x0, 0x0}, {0x16125, 0x0, 0x0, 0x0}}},
    {0x16126, {{0x1611E, 0x1611E, 0x1611F, 0x0}, {0x1611E, 0x1611E, 0x1611F, 0x0}, {0x16126, 0x0, 0x0, 0x0}}},
    {0x16127, {{0x1611E, 0x16129, 0x1611F, 0x0}, {0x1611E, 0x16129, 0x1611F, 0x0}, {0x16127, 0x0, 0x0, 0x0}}},
    {0x16128, {{0x1611E, 0x1611E, 0x16120, 0x0}, {0x1611E, 0x1611E, 0x16120, 0x0}, {0x16128, 0x0, 0x0, 0x0}}},
    {0x16D68, {{0x16D67, 0x16D67, 0x0, 0x0}, {0x16D67, 0x16D67, 0x0, 0x0}, {0x16D68, 0x0, 0x0, 0x0}}},
    {0x16D69, {{0x16D63, 0x16D67, 0x0, 0x0}, {0x16D63, 0x16D67, 0x0, 0x0}, {0x16D69, 0x0, 0x0, 0x0}}},
    {0x16D6A, {{0x16D63, 0x16D67, 0x16D67, 0x0}, {0x16D63, 0x16D67, 0x16D67, 0x0}, {0x16D6A, 0x0, 0x0, 0x0}}},
    {0x1CCD6, {{0x1CCD6, 0x0, 0x0, 0x0}, {0x41, 0x0, 0x0, 0x0}, {0x41, 0x0, 0x0, 0x0}}},
    {0x1CCD7, {{0x1CCD7, 0x0, 0x0, 0x0}, {0x42, 0x0, 0x0, 0x0}, {0x42, 0x0, 0x0, 0x0}}},
    {0x1CCD8, {{0x1CCD8, 0x0, 0x0, 0x0}, {0x43, 0x0, 0x0, 0x0}, {0x43, 0x0, 0x0, 0x0}}},
    {0x1CCD9, {{0x1CCD9, 0x0, 0x0, 0x0}, {0x44, 0x0, 0x0, 0x0}, {0x44, 0x0, 0x0, 0x0}}},
    {0x1CCDA, {{0x1CCDA, 0x0, 0x0, 0x0}, {0x45, 0x0, 0x0, 0x0}, {0x45, 0x0, 0x0, 0x0}}},
    {0x1CCDB, {{0x1CCDB, 0x0, 0x0, 0x0}, {0x46, 0x0, 0x0, 0x0}, {0x46, 0x0, 0x0, 0x0}}},
    {0x1CCDC, {{0x1CCDC, 0x0, 0x0, 0x0}, {0x47, 0x0, 0x0, 0x0}, {0x47, 0x0, 0x0, 0x0}}},
    {0x1CCDD, {{0x1CCDD, 0x0, 0x0, 0x0}, {0x48, 0x0, 0x0, 0x0}, {0x48, 0x0, 0x0, 0x0}}},
    {0x1CCDE, {{0x1CCDE, 0x0, 0x0, 0x0}, {0x49, 0x0, 0x0, 0x0}, {0x49, 0x0, 0x0, 0x0}}},
    {0x1CCDF, {{0x1CCDF, 0x0, 0x0, 0x0}, {0x4A, 0x0, 0x0, 0x0}, {0x4A, 0x0, 0x0, 0x0}}},
    {0x1CCE0, {{0x1CCE0, 0x0, 0x0, 0x0}, {0x4B, 0x0, 0x0, 0x0}, {0x4B, 0x0, 0x0, 0x0}}},
    {0x1CCE1, {{0x1CCE1, 0x0, 0x0, 0x0}, {0x4C, 0x0, 0x0, 0x0}, {0x4C, 0x0, 0x0, 0x0}}},
    {0x1CCE2, {{0x1CCE2, 0x0, 0x0, 0x0}, {0x4D, 0x0, 0x0, 0x0}, {0x4D, 0x0, 0x0, 0x0}}},
    {0x1CCE3, {{0x1CCE3, 0x0, 0x0, 0x0}, {0x4E, 0x0, 0x0, 0x0}, {0x4E, 0x0, 0x0, 0x0}}},
    {0x1CCE4, {{0x1CCE4, 0x0, 0x0, 0x0}, {0x4F, 0x0, 0x0, 0x0}, {0x4F, 0x0, 0x0, 0x0}}},
    {0x1CCE5, {{0x1CCE5, 0x0, 0x0, 0x0}, {0x50, 0x0, 0x0, 0x0}, {0x50, 0x0, 0x0, 0x0}}},
    {0x1CCE6, {{0x1CCE6, 0x0, 0x0, 0x0}, {0x51, 0x0, 0x0, 0x0}, {0x51, 0x0, 0x0, 0x0}}},
    {0x1CCE7, {{0x1CCE7, 0x0, 0x0, 0x0}, {0x52, 0x0, 0x0, 0x0}, {0x52, 0x0, 0x0, 0x0}}},
    {0x1CCE8, {{0x1CCE8, 0x0, 0x0, 0x0}, {0x53, 0x0, 0x0, 0x0}, {0x53, 0x0, 0x0, 0x0}}},
    {0x1CCE9, {{0x1CCE9, 0x0, 0x0, 0x0}, {0x54, 0x0, 0x0, 0x0}, {0x54, 0x0, 0x0, 0x0}}},
    {0x1CCEA, {{0x1CCEA, 0x0, 0x0, 0x0}, {0x55, 0x0, 0x0, 0x0}, {0x55, 0x0, 0x0, 0x0}}},
    {0x1CCEB, {{0x1CCEB, 0x0, 0x0, 0x0}, {0x56, 0x0, 0x0, 0x0}, {0x56, 0x0, 0x0, 0x0}}},
    {0x1CCEC, {{0x1CCEC, 0x0, 0x0, 0x0}, {0x57, 0x0, 0x0, 0x0}, {0x57, 0x0, 0x0, 0x0}}},
    {0x1CCED, {{0x1CCED, 0x0, 0x0, 0x0}, {0x58, 0x0, 0x0, 0x0}, {0x58, 0x0, 0x0, 0x0}}},
    {0x1CCEE, {{0x1CCEE, 0x0, 0x0, 0x0}, {0x59, 0x0, 0x0, 0x0}, {0x59, 0x0, 0x0, 0x0}}},
    {0x1CCEF, {{0x1CCEF, 0x0, 0x0, 0x0}, {0x5A, 0x0, 0x0, 0x0}, {0x5A, 0x0, 0x0, 0x0}}},
    {0x1CCF0, {{0x1CCF0, 0x0, 0x0, 0x0}, {0x30, 0x0, 0x0, 0x0}, {0x30, 0x0, 0x0, 0x0}}},
    {0x1CCF1, {{0x1CCF1, 0x0, 0x0, 0x0}, {0x31, 0x0, 0x0, 0x0}, {0x31, 0x0, 0x0, 0x0}}},
    {0x1CCF2, {{0x1CCF2, 0x0, 0x0, 0x0}, {0x32, 0x0, 0x0, 0x0}, {0x32, 0x0, 0x0, 0x0}}},
    {0x1CCF3, {{0x1CCF3, 0x0, 0x0, 0x0}, {0x33, 0x0, 0x0, 0x0}, {0x33, 0x0, 0x0, 0x0}}},
    {0x1CCF4, {{0x1CCF4, 0x0, 0x0, 0x0}, {0x34, 0x0, 0x0, 0x0}, {0x34, 0x0, 0x0, 0x0}}},
    {0x1CCF5, {{0x1CCF5, 0x0, 0x0, 0x0}, {0x35, 0x0, 0x0, 0x0}, {0x35, 0x0, 0x0, 0x0}}},
    {0x1CCF6, {{0x1CCF6, 0x0, 0x0, 0x0}, {0x36, 0x0, 0x0, 0x0}, {0x36, 0x0, 0x0, 0x0}}},
    {0x1CCF7, {{0x1CCF7, 0x0, 0x0, 0x0}, {0x37, 0x0, 0x0, 0x0}, {0x37, 0x0, 0x0, 0x0}}},
    {0x1CCF8, {{0x1CCF8, 0x0, 0x0, 0x0}, {0x38, 0x0, 0x0, 0x0}, {0x38, 0x0, 0x0, 0x0}}},
    {0x1CCF9, {{0x1CCF9, 0x0, 0x0, 0x0}, {0x39, 0x0, 0x0, 0x0}, {0x39, 0x0, 0x0, 0x0}}},
};

static int tok_lower_delta(uint32_t c, uint32_t *lc)
{
    size_t lo = 0, hi = sizeof TOK_LOWER_DELTA / sizeof TOK_LOWER_DELTA[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (TOK_LOWER_DELTA[mid].cp == c) {
            *lc = TOK_LOWER_DELTA[mid].lower;
            return 1;
        }
        if (TOK_LOWER_DELTA[mid].cp < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static const uint32_t *tok_norm_delta(uint32_t c, int form)
{
    size_t lo = 0, hi = sizeof TOK_NORM_DELTA / sizeof TOK_NORM_DELTA[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (TOK_NORM_DELTA[mid].cp == c)
            return TOK_NORM_DELTA[mid].seq[form];
        if (TOK_NORM_DELTA[mid].cp < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Unicode's Cased and Case_Ignorable properties as code point ranges, from
 * Node 20.20 (/\p{Cased}/u, /\p{Case_Ignorable}/u): the context of
 * Final_Sigma. Ascending, inclusive. */
typedef struct tok_range {
    uint32_t lo, hi;
} tok_range;

static const tok_range TOK_CASED[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xAA, 0xAA}, {0xB5, 0xB5}, {0xBA, 0xBA}, {0xC0, 0xD6},
    {0xD8, 0xF6}, {0xF8, 0x1BA}, {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x296, 0x2B8}, {0x2C0, 0x2C1},
    {0x2E0, 0x2E4}, {0x345, 0x345}, {0x370, 0x373}, {0x376, 0x377}, {0x37A, 0x37D}, {0x37F, 0x37F},
    {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481},
    {0x48A, 0x52F}, {0x531, 0x556}, {0x560, 0x588}, {0x10A0, 0x10C5}, {0x10C7, 0x10C7},
    {0x10CD, 0x10CD}, {0x10D0, 0x10FA}, {0x10FC, 0x10FF}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD},
    {0x1C80, 0x1C8A}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF}, {0x1D00, 0x1DBF}, {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59},
    {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB},
    {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2071, 0x2071}, {0x207F, 0x207F},
    {0x2090, 0x209C}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115},
    {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D},
    {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149}, {0x214E, 0x214E},
    {0x2160, 0x217F}, {0x2183, 0x2184}, {0x24B6, 0x24E9}, {0x2C00, 0x2CE4}, {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3}, {0x2D00, 0x2D25}, {0x2D27, 0x2D27}, {0x2D2D, 0x2D2D}, {0xA640, 0xA66D},
    {0xA680, 0xA69D}, {0xA722, 0xA787}, {0xA78B, 0xA78E}, {0xA790, 0xA7DC}, {0xA7F1, 0xA7F6},
    {0xA7F8, 0xA7FA}, {0xAB30, 0xAB5A}, {0xAB5C, 0xAB69}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06},
    {0xFB13, 0xFB17}, {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3},
    {0x104D8, 0x104FB}, {0x10570, 0x1057A}, {0x1057C, 0x1058A}, {0x1058C, 0x10592},
    {0x10594, 0x10595}, {0x10597, 0x105A1}, {0x105A3, 0x105B1}, {0x105B3, 0x105B9},
    {0x105BB, 0x105BC}, {0x10780, 0x10780}, {0x10783, 0x10785}, {0x10787, 0x107B0},
    {0x107B2, 0x107BA}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x10D50, 0x10D65},
    {0x10D70, 0x10D85}, {0x118A0, 0x118DF}, {0x16E40, 0x16E7F}, {0x16EA0, 0x16EB8},
    {0x16EBB, 0x16ED3}, {0x1D400, 0x1D454}, {0x1D456, 0x1D49C}, {0x1D49E, 0x1D49F},
    {0x1D4A2, 0x1D4A2}, {0x1D4A5, 0x1D4A6}, {0x1D4A9, 0x1D4AC}, {0x1D4AE, 0x1D4B9},
    {0x1D4BB, 0x1D4BB}, {0x1D4BD, 0x1D4C3}, {0x1D4C5, 0x1D505}, {0x1D507, 0x1D50A},
    {0x1D50D, 0x1D514}, {0x1D516, 0x1D51C}, {0x1D51E, 0x1D539}, {0x1D53B, 0x1D53E},
    {0x1D540, 0x1D544}, {0x1D546, 0x1D546}, {0x1D54A, 0x1D550}, {0x1D552, 0x1D6A5},
    {0x1D6A8, 0x1D6C0}, {0x1D6C2, 0x1D6DA}, {0x1D6DC, 0x1D6FA}, {0x1D6FC, 0x1D714},
    {0x1D716, 0x1D734}, {0x1D736, 0x1D74E}, {0x1D750, 0x1D76E}, {0x1D770, 0x1D788},
    {0x1D78A, 0x1D7A8}, {0x1D7AA, 0x1D7C2}, {0x1D7C4, 0x1D7CB}, {0x1DF00, 0x1DF09},
    {0x1DF0B, 0x1DF1E}, {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D}, {0x1E900, 0x1E943},
    {0x1F130, 0x1F149}, {0x1F150, 0x1F169}, {0x1F170, 0x1F189},
};

static const tok_range TOK_CASE_IGNORABLE[] = {
    {0x27, 0x27}, {0x2E, 0x2E}, {0x3A, 0x3A}, {0x5E, 0x5E}, {0x60, 0x60}, {0xA8, 0xA8},
    {0xAD, 0xAD}, {0xAF, 0xAF}, {0xB4, 0xB4}, {0xB7, 0xB8}, {0x2B0, 0x36F}, {0x374, 0x375},
    {0x37A, 0x37A}, {0x384, 0x385}, {0x387, 0x387}, {0x483, 0x489}, {0x559, 0x559}, {0x55F, 0x55F},
    {0x591, 0x5BD}, {0x5BF, 0x5BF}, {0x5C1, 0x5C2}, {0x5C4, 0x5C5}, {0x5C7, 0x5C7}, {0x5F4, 0x5F4},
    {0x600, 0x605}, {0x610, 0x61A}, {0x61C, 0x61C}, {0x640, 0x640}, {0x64B, 0x65F}, {0x670, 0x670},
    {0x6D6, 0x6DD}, {0x6DF, 0x6E8}, {0x6EA, 0x6ED}, {0x70F, 0x70F}, {0x711, 0x711}, {0x730, 0x74A},
    {0x7A6, 0x7B0}, {0x7EB, 0x7F5}, {0x7FA, 0x7FA}, {0x7FD, 0x7FD}, {0x816, 0x82D}, {0x859, 0x85B},
    {0x888, 0x888}, {0x890, 0x891}, {0x897, 0x89F}, {0x8C9, 0x902}, {0x93A, 0x93A}, {0x93C, 0x93C},
    {0x941, 0x948}, {0x94D, 0x94D}, {0x951, 0x957}, {0x962, 0x963}, {0x971, 0x971}, {0x981, 0x981},
    {0x9BC, 0x9BC}, {0x9C1, 0x9C4}, {0x9CD, 0x9CD}, {0x9E2, 0x9E3}, {0x9FE, 0x9FE}, {0xA01, 0xA02},
    {0xA3C, 0xA3C}, {0xA41, 0xA42}, {0xA47, 0xA48}, {0xA4B, 0xA4D}, {0xA51, 0xA51}, {0xA70, 0xA71},
    {0xA75, 0xA75}, {0xA81, 0xA82}, {0xABC, 0xABC}, {0xAC1, 0xAC5}, {0xAC7, 0xAC8}, {0xACD, 0xACD},
    {0xAE2, 0xAE3}, {0xAFA, 0xAFF}, {0xB01, 0xB01}, {0xB3C, 0xB3C}, {0xB3F, 0xB3F}, {0xB41, 0xB44},
    {0xB4D, 0xB4D}, {0xB55, 0xB56}, {0xB62, 0xB63}, {0xB82, 0xB82}, {0xBC0, 0xBC0}, {0xBCD, 0xBCD},
    {0xC00, 0xC00}, {0xC04, 0xC04}, {0xC3C, 0xC3C}, {0xC3E, 0xC40}, {0xC46, 0xC48}, {0xC4A, 0xC4D},
    {0xC55, 0xC56}, {0xC62, 0xC63}, {0xC81, 0xC81}, {0xCBC, 0xCBC}, {0xCBF, 0xCBF}, {0xCC6, 0xCC6},
    {0xCCC, 0xCCD}, {0xCE2, 0xCE3}, {0xD00, 0xD01}, {0xD3B, 0xD3C}, {0xD41, 0xD44}, {0xD4D, 0xD4D},
    {0xD62, 0xD63}, {0xD81, 0xD81}, {0xDCA, 0xDCA}, {0xDD2, 0xDD4}, {0xDD6, 0xDD6}, {0xE31, 0xE31},
    {0xE34, 0xE3A}, {0xE46, 0xE4E}, {0xEB1, 0xEB1}, {0xEB4, 0xEBC}, {0xEC6, 0xEC6}, {0xEC8, 0xECE},
    {0xF18, 0xF19}, {0xF35, 0xF35}, {0xF37, 0xF37}, {0xF39, 0xF39}, {0xF71, 0xF7E}, {0xF80, 0xF84},
    {0xF86, 0xF87}, {0xF8D, 0xF97}, {0xF99, 0xFBC}, {0xFC6, 0xFC6}, {0x102D, 0x1030},
    {0x1032, 0x1037}, {0x1039, 0x103A}, {0x103D, 0x103E}, {0x1058, 0x1059}, {0x105E, 0x1060},
    {0x1071, 0x1074}, {0x1082, 0x1082}, {0x1085, 0x1086}, {0x108D, 0x108D}, {0x109D, 0x109D},
    {0x10FC, 0x10FC}, {0x135D, 0x135F}, {0x1712, 0x1714}, {0x1732, 0x1733}, {0x1752, 0x1753},
    {0x1772, 0x1773}, {0x17B4, 0x17B5}, {0x17B7, 0x17BD}, {0x17C6, 0x17C6}, {0x17C9, 0x17D3},
    {0x17D7, 0x17D7}, {0x17DD, 0x17DD}, {0x180B, 0x180F}, {0x1843, 0x1843}, {0x1885, 0x1886},
    {0x18A9, 0x18A9}, {0x1920, 0x1922}, {0x1927, 0x1928}, {0x1932, 0x1932}, {0x1939, 0x193B},
    {0x1A17, 0x1A18}, {0x1A1B, 0x1A1B}, {0x1A56, 0x1A56}, {0x1A58, 0x1A5E}, {0x1A60, 0x1A60},
    {0x1A62, 0x1A62}, {0x1A65, 0x1A6C}, {0x1A73, 0x1A7C}, {0x1A7F, 0x1A7F}, {0x1AA7, 0x1AA7},
    {0x1AB0, 0x1ADD}, {0x1AE0, 0x1AEB}, {0x1B00, 0x1B03}, {0x1B34, 0x1B34}, {0x1B36, 0x1B3A},
    {0x1B3C, 0x1B3C}, {0x1B42, 0x1B42}, {0x1B6B, 0x1B73}, {0x1B80, 0x1B81}, {0x1BA2, 0x1BA5},
    {0x1BA8, 0x1BA9}, {0x1BAB, 0x1BAD}, {0x1BE6, 0x1BE6}, {0x1BE8, 0x1BE9}, {0x1BED, 0x1BED},
    {0x1BEF, 0x1BF1}, {0x1C2C, 0x1C33}, {0x1C36, 0x1C37}, {0x1C78, 0x1C7D}, {0x1CD0, 0x1CD2},
    {0x1CD4, 0x1CE0}, {0x1CE2, 0x1CE8}, {0x1CED, 0x1CED}, {0x1CF4, 0x1CF4}, {0x1CF8, 0x1CF9},
    {0x1D2C, 0x1D6A}, {0x1D78, 0x1D78}, {0x1D9B, 0x1DFF}, {0x1FBD, 0x1FBD}, {0x1FBF, 0x1FC1},
    {0x1FCD, 0x1FCF}, {0x1FDD, 0x1FDF}, {0x1FED, 0x1FEF}, {0x1FFD, 0x1FFE}, {0x200B, 0x200F},
    {0x2018, 0x2019}, {0x2024, 0x2024}, {0x2027, 0x2027}, {0x202A, 0x202E}, {0x2060, 0x2064},
    {0x2066, 0x206F}, {0x2071, 0x2071}, {0x207F, 0x207F}, {0x2090, 0x209C}, {0x20D0, 0x20F0},
    {0x2C7C, 0x2C7D}, {0x2CEF, 0x2CF1}, {0x2D6F, 0x2D6F}, {0x2D7F, 0x2D7F}, {0x2DE0, 0x2DFF},
    {0x2E2F, 0x2E2F}, {0x3005, 0x3005}, {0x302A, 0x302D}, {0x3031, 0x3035}, {0x303B, 0x303B},
    {0x3099, 0x309E}, {0x30FC, 0x30FE}, {0xA015, 0xA015}, {0xA4F8, 0xA4FD}, {0xA60C, 0xA60C},
    {0xA66F, 0xA672}, {0xA674, 0xA67D}, {0xA67F, 0xA67F}, {0xA69C, 0xA69F}, {0xA6F0, 0xA6F1},
    {0xA700, 0xA721}, {0xA770, 0xA770}, {0xA788, 0xA78A}, {0xA7F1, 0xA7F4}, {0xA7F8, 0xA7F9},
    {0xA802, 0xA802}, {0xA806, 0xA806}, {0xA80B, 0xA80B}, {0xA825, 0xA826}, {0xA82C, 0xA82C},
    {0xA8C4, 0xA8C5}, {0xA8E0, 0xA8F1}, {0xA8FF, 0xA8FF}, {0xA926, 0xA92D}, {0xA947, 0xA951},
    {0xA980, 0xA982}, {0xA9B3, 0xA9B3}, {0xA9B6, 0xA9B9}, {0xA9BC, 0xA9BD}, {0xA9CF, 0xA9CF},
    {0xA9E5, 0xA9E6}, {0xAA29, 0xAA2E}, {0xAA31, 0xAA32}, {0xAA35, 0xAA36}, {0xAA43, 0xAA43},
    {0xAA4C, 0xAA4C}, {0xAA70, 0xAA70}, {0xAA7C, 0xAA7C}, {0xAAB0, 0xAAB0}, {0xAAB2, 0xAAB4},
    {0xAAB7, 0xAAB8}, {0xAABE, 0xAABF}, {0xAAC1, 0xAAC1}, {0xAADD, 0xAADD}, {0xAAEC, 0xAAED},
    {0xAAF3, 0xAAF4}, {0xAAF6, 0xAAF6}, {0xAB5B, 0xAB5F}, {0xAB69, 0xAB6B}, {0xABE5, 0xABE5},
    {0xABE8, 0xABE8}, {0xABED, 0xABED}, {0xFB1E, 0xFB1E}, {0xFBB2, 0xFBC2}, {0xFE00, 0xFE0F},
    {0xFE13, 0xFE13}, {0xFE20, 0xFE2F}, {0xFE52, 0xFE52}, {0xFE55, 0xFE55}, {0xFEFF, 0xFEFF},
    {0xFF07, 0xFF07}, {0xFF0E, 0xFF0E}, {0xFF1A, 0xFF1A}, {0xFF3E, 0xFF3E}, {0xFF40, 0xFF40},
    {0xFF70, 0xFF70}, {0xFF9E, 0xFF9F}, {0xFFE3, 0xFFE3}, {0xFFF9, 0xFFFB}, {0x101FD, 0x101FD},
    {0x102E0, 0x102E0}, {0x10376, 0x1037A}, {0x10780, 0x10785}, {0x10787, 0x107B0},
    {0x107B2, 0x107BA}, {0x10A01, 0x10A03}, {0x10A05, 0x10A06}, {0x10A0C, 0x10A0F},
    {0x10A38, 0x10A3A}, {0x10A3F, 0x10A3F}, {0x10AE5, 0x10AE6}, {0x10D24, 0x10D27},
    {0x10D4E, 0x10D4E}, {0x10D69, 0x10D6D}, {0x10D6F, 0x10D6F}, {0x10EAB, 0x10EAC},
    {0x10EC5, 0x10EC5}, {0x10EFA, 0x10EFF}, {0x10F46, 0x10F50}, {0x10F82, 0x10F85},
    {0x11001, 0x11001}, {0x11038, 0x11046}, {0x11070, 0x11070}, {0x11073, 0x11074},
    {0x1107F, 0x11081}, {0x110B3, 0x110B6}, {0x110B9, 0x110BA}, {0x110BD, 0x110BD},
    {0x110C2, 0x110C2}, {0x110CD, 0x110CD}, {0x11100, 0x11102}, {0x11127, 0x1112B},
    {0x1112D, 0x11134}, {0x11173, 0x11173}, {0x11180, 0x11181}, {0x111B6, 0x111BE},
    {0x111C9, 0x111CC}, {0x111CF, 0x111CF}, {0x1122F, 0x11231}, {0x11234, 0x11234},
    {0x11236, 0x11237}, {0x1123E, 0x1123E}, {0x11241, 0x11241}, {0x112DF, 0x112DF},
    {0x112E3, 0x112EA}, {0x11300, 0x11301}, {0x1133B, 0x1133C}, {0x11340, 0x11340},
    {0x11366, 0x1136C}, {0x11370, 0x11374}, {0x113BB, 0x113C0}, {0x113CE, 0x113CE},
    {0x113D0, 0x113D0}, {0x113D2, 0x113D2}, {0x113E1, 0x113E2}, {0x11438, 0x1143F},
    {0x11442, 0x11444}, {0x11446, 0x11446}, {0x1145E, 0x1145E}, {0x114B3, 0x114B8},
    {0x114BA, 0x114BA}, {0x114BF, 0x114C0}, {0x114C2, 0x114C3}, {0x115B2, 0x115B5},
    {0x115BC, 0x115BD}, {0x115BF, 0x115C0}, {0x115DC, 0x115DD}, {0x11633, 0x1163A},
    {0x1163D, 0x1163D}, {0x1163F, 0x11640}, {0x116AB, 0x116AB}, {0x116AD, 0x116AD},
    {0x116B0, 0x116B5}, {0x116B7, 0x116B7}, {0x1171D, 0x1171D}, {0x1171F, 0x1171F},
    {0x11722, 0x11725}, {0x11727, 0x1172B}, {0x1182F, 0x11837}, {0x11839, 0x1183A},
    {0x1193B, 0x1193C}, {0x1193E, 0x1193E}, {0x11943, 0x11943}, {0x119D4, 0x119D7},
    {0x119DA, 0x119DB}, {0x119E0, 0x119E0}, {0x11A01, 0x11A0A}, {0x11A33, 0x11A38},
    {0x11A3B, 0x11A3E}, {0x11A47, 0x11A47}, {0x11A51, 0x11A56}, {0x11A59, 0x11A5B},
    {0x11A8A, 0x11A96}, {0x11A98, 0x11A99}, {0x11B60, 0x11B60}, {0x11B62, 0x11B64},
    {0x11B66, 0x11B66}, {0x11C30, 0x11C36}, {0x11C38, 0x11C3D}, {0x11C3F, 0x11C3F},
    {0x11C92, 0x11CA7}, {0x11CAA, 0x11CB0}, {0x11CB2, 0x11CB3}, {0x11CB5, 0x11CB6},
    {0x11D31, 0x11D36}, {0x11D3A, 0x11D3A}, {0x11D3C, 0x11D3D}, {0x11D3F, 0x11D45},
    {0x11D47, 0x11D47}, {0x11D90, 0x11D91}, {0x11D95, 0x11D95}, {0x11D97, 0x11D97},
    {0x11DD9, 0x11DD9}, {0x11EF3, 0x11EF4}, {0x11F00, 0x11F01}, {0x11F36, 0x11F3A},
    {0x11F40, 0x11F40}, {0x11F42, 0x11F42}, {0x11F5A, 0x11F5A}, {0x13430, 0x13440},
    {0x13447, 0x13455}, {0x1611E, 0x16129}, {0x1612D, 0x1612F}, {0x16AF0, 0x16AF4},
    {0x16B30, 0x16B36}, {0x16B40, 0x16B43}, {0x16D40, 0x16D42}, {0x16D6B, 0x16D6C},
    {0x16F4F, 0x16F4F}, {0x16F8F, 0x16F9F}, {0x16FE0, 0x16FE1}, {0x16FE3, 0x16FE4},
    {0x16FF2, 0x16FF3}, {0x1AFF0, 0x1AFF3}, {0x1AFF5, 0x1AFFB}, {0x1AFFD, 0x1AFFE},
    {0x1BC9D, 0x1BC9E}, {0x1BCA0, 0x1BCA3}, {0x1CF00, 0x1CF2D}, {0x1CF30, 0x1CF46},
    {0x1D167, 0x1D169}, {0x1D173, 0x1D182}, {0x1D185, 0x1D18B}, {0x1D1AA, 0x1D1AD},
    {0x1D242, 0x1D244}, {0x1DA00, 0x1DA36}, {0x1DA3B, 0x1DA6C}, {0x1DA75, 0x1DA75},
    {0x1DA84, 0x1DA84}, {0x1DA9B, 0x1DA9F}, {0x1DAA1, 0x1DAAF}, {0x1E000, 0x1E006},
    {0x1E008, 0x1E018}, {0x1E01B, 0x1E021}, {0x1E023, 0x1E024}, {0x1E026, 0x1E02A},
    {0x1E030, 0x1E06D}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E13D}, {0x1E2AE, 0x1E2AE},
    {0x1E2EC, 0x1E2EF}, {0x1E4EB, 0x1E4EF}, {0x1E5EE, 0x1E5EF}, {0x1E6E3, 0x1E6E3},
    {0x1E6E6, 0x1E6E6}, {0x1E6EE, 0x1E6EF}, {0x1E6F5, 0x1E6F5}, {0x1E6FF, 0x1E6FF},
    {0x1E8D0, 0x1E8D6}, {0x1E944, 0x1E94B}, {0x1F3FB, 0x1F3FF}, {0xE0001, 0xE0001},
    {0xE0020, 0xE007F}, {0xE0100, 0xE01EF},
};

static int tok_in_ranges(const tok_range *r, size_t n, uint32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid].lo)
            hi = mid;
        else if (c > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

#define TOK_IS_CASED(c) tok_in_ranges(TOK_CASED, sizeof TOK_CASED / sizeof TOK_CASED[0], (c))
#define TOK_IS_CI(c) tok_in_ranges(TOK_CASE_IGNORABLE, sizeof TOK_CASE_IGNORABLE / sizeof TOK_CASE_IGNORABLE[0], (c))

/* SpecialCasing's Final_Sigma, as JavaScript's toLowerCase applies it: Σ at
 * s[i..i+l) becomes ς when a cased letter precedes it and none follows,
 * case-ignorable characters between them skipped (checked first, as ICU
 * does, so a character that is both is skipped). */
static int tok_final_sigma(const uint8_t *s, size_t n, size_t i, size_t l)
{
    uint32_t c;
    int before = 0;
    for (size_t j = i; j > 0;) {
        size_t k = tok_u8_prev_len(s, j);
        tok_u8_next(s + j - k, k, &c);
        j -= k;
        if (TOK_IS_CI(c))
            continue;
        before = TOK_IS_CASED(c);
        break;
    }
    if (!before)
        return 0;
    for (size_t j = i + l; j < n;) {
        j += (size_t)tok_u8_next(s + j, n - j, &c);
        if (!TOK_IS_CI(c))
            return !TOK_IS_CASED(c);
    }
    return 1;
}

static int tok_norm_unicode(tok_scratch *sc, const uint8_t *s, size_t n, tok_buf *dst, int form)
{
    if (tok_ascii(s, n))
        return tok_buf_put(dst, s, n);
    if (form != N_NFC) { /* newer characters first, by the delta table */
        int slot = form == N_NFD ? 0 : form == N_NFKD ? 1 : 2;
        size_t i = 0;
        const uint32_t *seq = NULL;
        for (; i < n; i++)
            if (s[i] >= 0xEA) {
                uint32_t c;
                tok_u8_next(s + i, n - i, &c);
                if ((seq = tok_norm_delta(c, slot)) != NULL)
                    break;
            }
        if (seq != NULL) {
            sc->nfx.len = 0;
            if (tok_buf_put(&sc->nfx, s, i) < 0)
                return -ENOMEM;
            while (i < n) {
                uint32_t c;
                int l = tok_u8_next(s + i, n - i, &c);
                seq = c >= 0xA7F1 ? tok_norm_delta(c, slot) : NULL;
                if (seq == NULL) {
                    if (tok_buf_put(&sc->nfx, s + i, (size_t)l) < 0)
                        return -ENOMEM;
                } else
                    for (int k = 0; k < 4 && seq[k]; k++) {
                        uint8_t u[4];
                        if (tok_buf_put(&sc->nfx, u, (size_t)tok_u8_put(u, seq[k])) < 0)
                            return -ENOMEM;
                    }
                i += (size_t)l;
            }
            s = sc->nfx.p;
            n = sc->nfx.len;
        }
    }
    utf8proc_option_t opt = UTF8PROC_STABLE;
    if (form == N_NFC || form == N_NFKC)
        opt |= UTF8PROC_COMPOSE;
    else
        opt |= UTF8PROC_DECOMPOSE;
    if (form == N_NFKC || form == N_NFKD)
        opt |= UTF8PROC_COMPAT;
    for (;;) {
        utf8proc_ssize_t k = utf8proc_decompose(s, (utf8proc_ssize_t)n, sc->u32,
                                                (utf8proc_ssize_t)sc->u32_cap, opt);
        if (k < 0)
            return -EINVAL; /* sanitized text always decodes */
        if ((size_t)k + 1 <= sc->u32_cap) {
            utf8proc_ssize_t m = utf8proc_reencode(sc->u32, k, opt);
            if (m < 0)
                return -EINVAL;
            return tok_buf_put(dst, sc->u32, (size_t)m);
        }
        size_t cap = sc->u32_cap ? sc->u32_cap : 256;
        while (cap < (size_t)k + 1)
            cap *= 2;
        int32_t *p = realloc(sc->u32, cap * sizeof *p);
        if (p == NULL)
            return -ENOMEM;
        sc->u32 = p;
        sc->u32_cap = cap;
    }
}

static int tok_norm_step(tok_scratch *sc, const tok_norm *nm, const uint8_t *s, size_t n, tok_buf *dst)
{
    const tok *t = sc->t;
    dst->len = 0;
    switch (nm->kind) {
    case N_NFC:
    case N_NFD:
    case N_NFKC:
    case N_NFKD:
        return tok_norm_unicode(sc, s, n, dst, nm->kind);
    case N_PREPEND:
        if (n > 0 && tok_buf_put(dst, nm->content, nm->content_len) < 0)
            return -ENOMEM;
        return tok_buf_put(dst, s, n);
    case N_STRIP: {
        size_t a = nm->left ? tok_js_trim_start(s, n) : 0;
        size_t b = nm->right ? tok_js_trim_end(s, n) : n;
        return tok_buf_put(dst, s + a, b > a ? b - a : 0);
    }
    case N_LOWER:
    case N_STRIP_ACCENTS:
        if (tok_buf_reserve(dst, n * 2 + 8) < 0)
            return -ENOMEM;
        for (size_t i = 0; i < n;) {
            uint32_t c;
            int l = tok_u8_next(s + i, n - i, &c);
            if (nm->kind == N_STRIP_ACCENTS) {
                if (!(GCM(tok_gc(t, c)) & GCM_M))
                    memcpy(dst->p + dst->len, s + i, (size_t)l), dst->len += (size_t)l;
            } else if (c == 0x130) { /* İ lowercases to i + U+0307 (SpecialCasing) */
                memcpy(dst->p + dst->len, "i\xCC\x87", 3);
                dst->len += 3;
            } else if (c == 0x3A3 && tok_final_sigma(s, n, i, (size_t)l)) {
                memcpy(dst->p + dst->len, "\xCF\x82", 2); /* ς */
                dst->len += 2;
            } else {
                uint32_t lc;
                if (c < 0x80)
                    lc = c >= 'A' && c <= 'Z' ? c + 32 : c;
                else if (c < 0x1C80 || !tok_lower_delta(c, &lc))
                    lc = (uint32_t)utf8proc_tolower((int32_t)c);
                if (tok_buf_reserve(dst, 8) < 0)
                    return -ENOMEM;
                dst->len += (size_t)tok_u8_put(dst->p + dst->len, lc);
            }
            i += (size_t)l;
        }
        return 0;
    case N_REPLACE: {
        size_t pos = 0, prev = 0, mb, me;
        for (;;) {
            int r = tok_pat_find(sc, &nm->pat, s, n, pos, &mb, &me);
            if (r < 0)
                return r;
            if (r == 0)
                break;
            if (tok_buf_put(dst, s + prev, mb - prev) < 0 ||
                tok_buf_put(dst, nm->content, nm->content_len) < 0)
                return -ENOMEM;
            prev = me;
            if (me > mb)
                pos = me;
            else {
                if (mb >= n)
                    break;
                uint32_t c;
                pos = mb + (size_t)tok_u8_next(s + mb, n - mb, &c);
            }
        }
        return tok_buf_put(dst, s + prev, n - prev);
    }
    }
    return -EINVAL;
}

/* Runs the normalizers over s[0..n); the result is in *out[0..*outn)
 * (s itself when there are none, else one of the scratch buffers). */
static int tok_normalize(tok_scratch *sc, const uint8_t *s, size_t n, const uint8_t **out, size_t *outn)
{
    const tok *t = sc->t;
    const uint8_t *cur = s;
    size_t len = n;
    for (int i = 0; i < t->n_norm; i++) {
        tok_buf *dst = &sc->nb[i & 1];
        int rc = tok_norm_step(sc, &t->norm[i], cur, len, dst);
        if (rc < 0)
            return rc;
        cur = dst->p;
        len = dst->len;
    }
    *out = cur;
    *outn = len;
    return 0;
}

/* ---- BPE model ------------------------------------------------------------------ */

static int tok_emit(tok_scratch *sc, int32_t id)
{
    const tok *t = sc->t;
    int unk = id == t->unk_id;
    if (unk && t->fuse_unk && sc->last_unk)
        return 0;
    sc->last_unk = unk;
    return tok_ids_push(sc->out, t->remap ? t->remap[id] : id);
}

static int tok_sym_reserve(tok_scratch *sc, size_t n)
{
    if (n <= sc->scap)
        return 0;
    size_t cap = sc->scap ? sc->scap : 64;
    while (cap < n)
        cap *= 2;
    int32_t **i32[] = {&sc->sid, &sc->sprev, &sc->snext, &sc->prank, &sc->pnew};
    for (size_t k = 0; k < sizeof i32 / sizeof i32[0]; k++) {
        int32_t *p = realloc(*i32[k], cap * sizeof *p);
        if (p == NULL)
            return -ENOMEM;
        *i32[k] = p;
    }
    uint32_t **u32[] = {&sc->sstart, &sc->slen};
    for (size_t k = 0; k < 2; k++) {
        uint32_t *p = realloc(*u32[k], cap * sizeof *p);
        if (p == NULL)
            return -ENOMEM;
        *u32[k] = p;
    }
    sc->scap = cap;
    return 0;
}

/* The byte-level character (GPT-2's bytes_to_unicode) of byte b, as UTF-8. */
static int tok_bytelevel_char(uint8_t b, uint8_t out[2])
{
    uint32_t c;
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))
        c = b;
    else {
        /* the others, in byte order, map to 256, 257, ... */
        uint32_t k = b <= 0x20 ? b : b <= 0xA0 ? 33u + (b - 0x7F) : 33u + 34u;
        c = 256 + k;
    }
    return tok_u8_put(out, c);
}

/* Ranks the pair (i, snext[i]) into prank[i] / pnew[i]. */
static inline void tok_rank_pair(tok_scratch *sc, int32_t i)
{
    int32_t j = sc->snext[i];
    sc->prank[i] = INT32_MAX;
    if (j < 0 || sc->sid[i] < 0 || sc->sid[j] < 0)
        return;
    const tok_merge_slot *m = tok_mmap_get(&sc->t->merges, sc->sid[i], sc->sid[j]);
    if (m != NULL) {
        sc->prank[i] = m->rank;
        sc->pnew[i] = m->id;
    }
}

static inline int tok_heap_less(const tok_heap_e *a, const tok_heap_e *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static int tok_heap_push(tok_scratch *sc, size_t *hn, tok_heap_e e)
{
    if (*hn == sc->heap_cap) {
        size_t cap = sc->heap_cap ? sc->heap_cap * 2 : 256;
        tok_heap_e *p = realloc(sc->heap, cap * sizeof *p);
        if (p == NULL)
            return -ENOMEM;
        sc->heap = p;
        sc->heap_cap = cap;
    }
    tok_heap_e *h = sc->heap;
    size_t i = (*hn)++;
    while (i > 0 && tok_heap_less(&e, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = e;
    return 0;
}

static tok_heap_e tok_heap_pop(tok_scratch *sc, size_t *hn)
{
    tok_heap_e *h = sc->heap, top = h[0], last = h[--(*hn)];
    size_t i = 0, n = *hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && tok_heap_less(&h[c + 1], &h[c]))
            c++;
        if (!tok_heap_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (n > 0)
        h[i] = last;
    return top;
}

static int tok_heap_pair(tok_scratch *sc, size_t *hn, int32_t i)
{
    int32_t j = sc->snext[i];
    if (j < 0 || sc->sid[i] < 0 || sc->sid[j] < 0)
        return 0;
    const tok_merge_slot *m = tok_mmap_get(&sc->t->merges, sc->sid[i], sc->sid[j]);
    if (m == NULL)
        return 0;
    return tok_heap_push(sc, hn, (tok_heap_e){m->rank, i, j, sc->sid[i], sc->sid[j], m->id});
}

static inline void tok_merge_at(tok_scratch *sc, int32_t i, int32_t id)
{
    int32_t j = sc->snext[i];
    sc->sid[i] = id;
    sc->slen[i] += sc->slen[j];
    sc->slen[j] = 0;
    sc->snext[i] = sc->snext[j];
    if (sc->snext[j] >= 0)
        sc->sprev[sc->snext[j]] = i;
}

/* Applies the merges to the k symbols: lowest rank first, leftmost among
 * equal ranks. */
static int tok_merge_word(tok_scratch *sc, int32_t k)
{
    for (int32_t i = 0; i < k; i++) {
        sc->sprev[i] = i - 1;
        sc->snext[i] = i + 1 < k ? i + 1 : -1;
    }
    if (k <= TOK_SMALL_WORD) {
        for (int32_t i = 0; i + 1 < k; i++)
            tok_rank_pair(sc, i);
        if (k > 0)
            sc->prank[k - 1] = INT32_MAX;
        for (;;) {
            int32_t best = -1, br = INT32_MAX;
            for (int32_t i = 0; i >= 0; i = sc->snext[i])
                if (sc->prank[i] < br)
                    br = sc->prank[i], best = i;
            if (best < 0)
                return 0;
            tok_merge_at(sc, best, sc->pnew[best]);
            tok_rank_pair(sc, best);
            if (sc->sprev[best] >= 0)
                tok_rank_pair(sc, sc->sprev[best]);
        }
    }
    size_t hn = 0;
    for (int32_t i = 0; i + 1 < k; i++)
        if (tok_heap_pair(sc, &hn, i) < 0)
            return -ENOMEM;
    while (hn > 0) {
        tok_heap_e e = tok_heap_pop(sc, &hn);
        if (sc->slen[e.pos] == 0 || sc->snext[e.pos] != e.right || sc->sid[e.pos] != e.lid ||
            sc->sid[e.right] != e.rid)
            continue;
        tok_merge_at(sc, e.pos, e.id);
        if (tok_heap_pair(sc, &hn, e.pos) < 0 ||
            (sc->sprev[e.pos] >= 0 && tok_heap_pair(sc, &hn, sc->sprev[e.pos]) < 0))
            return -ENOMEM;
    }
    return 0;
}

/* Ids of a symbol the vocabulary lacks: its UTF-8 bytes as <0xNN> tokens
 * when all exist (byte_fallback), else unk, else nothing. */
static int tok_unknown(tok_scratch *sc, const uint8_t *c, size_t l)
{
    const tok *t = sc->t;
    if (t->byte_fallback) {
        size_t k = 0;
        while (k < l && t->fallback_id[c[k]] >= 0)
            k++;
        if (k == l) {
            for (k = 0; k < l; k++)
                if (tok_ids_push(&sc->word, t->fallback_id[c[k]]) < 0)
                    return -ENOMEM;
            return 0;
        }
    }
    if (t->unk_id >= 0)
        return tok_ids_push(&sc->word, t->unk_id);
    return 0;
}

static uint32_t tok_cache_hash(const uint8_t *s, size_t n, int bl)
{
    return ((uint32_t)tok_hash(s, n) ^ (uint32_t)bl) | 1u;
}

static const tok_cache_slot *tok_cache_get(tok_scratch *sc, const uint8_t *s, size_t n, int bl, uint32_t h)
{
    if (sc->cache == NULL)
        return NULL;
    size_t i = h & (TOK_CACHE_SLOTS - 1);
    for (;;) {
        const tok_cache_slot *e = &sc->cache[i];
        if (e->hash == 0)
            return NULL;
        if (e->hash == h && e->klen == n + 1 && sc->ckeys.p[e->koff] == (uint8_t)bl &&
            memcmp(sc->ckeys.p + e->koff + 1, s, n) == 0)
            return e;
        i = (i + 1) & (TOK_CACHE_SLOTS - 1);
    }
}

static void tok_cache_put(tok_scratch *sc, const uint8_t *s, size_t n, int bl, uint32_t h)
{
    if (sc->cache == NULL && (sc->cache = calloc(TOK_CACHE_SLOTS, sizeof *sc->cache)) == NULL)
        return; /* the cache is an optimization: without memory, go on without it */
    if (sc->cache_used >= TOK_CACHE_SLOTS / 2 || sc->cvals.n + sc->word.n > TOK_CACHE_IDS) {
        memset(sc->cache, 0, TOK_CACHE_SLOTS * sizeof *sc->cache);
        sc->cache_used = 0;
        sc->ckeys.len = 0;
        sc->cvals.n = 0;
    }
    size_t koff = sc->ckeys.len, voff = sc->cvals.n;
    uint8_t flag = (uint8_t)bl;
    if (tok_buf_put(&sc->ckeys, &flag, 1) < 0 || tok_buf_put(&sc->ckeys, s, n) < 0)
        return;
    for (size_t k = 0; k < sc->word.n; k++)
        if (tok_ids_push(&sc->cvals, sc->word.p[k]) < 0)
            return;
    size_t i = h & (TOK_CACHE_SLOTS - 1);
    while (sc->cache[i].hash != 0)
        i = (i + 1) & (TOK_CACHE_SLOTS - 1);
    sc->cache[i] = (tok_cache_slot){h, (uint32_t)(n + 1), (uint32_t)koff, (uint32_t)voff, (uint32_t)sc->word.n};
    sc->cache_used++;
}

/* The model on one word s[0..n) (see tok_model). */
static int tok_model_word(tok_scratch *sc, const uint8_t *s, size_t n, int bl)
{
    const tok *t = sc->t;
    if (sc->collect != NULL) {
        if (tok_buf_put(sc->collect, s, n) < 0 || tok_buf_put(sc->collect_lens, &n, sizeof n) < 0)
            return -ENOMEM;
        return 0;
    }
    uint32_t h = 0;
    if (n <= TOK_CACHE_KEY_MAX) {
        h = tok_cache_hash(s, n, bl);
        const tok_cache_slot *e = tok_cache_get(sc, s, n, bl, h);
        if (e != NULL) {
            for (uint32_t k = 0; k < e->vn; k++)
                if (tok_emit(sc, sc->cvals.p[e->voff + k]) < 0)
                    return -ENOMEM;
            return 0;
        }
    }
    sc->word.n = 0;
    int32_t whole = -1;
    if (t->ignore_merges) {
        const uint8_t *key = s;
        size_t klen = n;
        if (bl) {
            sc->tmp.len = 0;
            if (tok_buf_reserve(&sc->tmp, 2 * n) < 0)
                return -ENOMEM;
            for (size_t i = 0; i < n; i++)
                sc->tmp.len += (size_t)tok_bytelevel_char(s[i], sc->tmp.p + sc->tmp.len);
            key = sc->tmp.p;
            klen = sc->tmp.len;
        }
        whole = tok_smap_get(&t->vocab, t->arena, key, klen);
    }
    if (whole >= 0) {
        if (tok_ids_push(&sc->word, whole) < 0)
            return -ENOMEM;
    } else {
        if (tok_sym_reserve(sc, n) < 0)
            return -ENOMEM;
        int32_t k = 0;
        for (size_t i = 0; i < n; k++) {
            size_t l = 1;
            int32_t id;
            if (bl)
                id = t->byte_id[s[i]];
            else {
                uint32_t c;
                l = (size_t)tok_u8_next(s + i, n - i, &c);
                if (t->cont_prefix == NULL && t->eow_suffix == NULL) {
                    id = c < 0x10000 ? t->cp_id[c] : tok_smap_get(&t->vocab, t->arena, s + i, l);
                } else {
                    sc->tmp.len = 0;
                    if ((k > 0 && t->cont_prefix && tok_buf_put(&sc->tmp, t->cont_prefix, t->cont_prefix_len) < 0) ||
                        tok_buf_put(&sc->tmp, s + i, l) < 0 ||
                        (i + l == n && t->eow_suffix && tok_buf_put(&sc->tmp, t->eow_suffix, t->eow_suffix_len) < 0))
                        return -ENOMEM;
                    id = tok_smap_get(&t->vocab, t->arena, sc->tmp.p, sc->tmp.len);
                }
            }
            sc->sid[k] = id;
            sc->sstart[k] = (uint32_t)i;
            sc->slen[k] = (uint32_t)l;
            i += l;
        }
        if (tok_merge_word(sc, k) < 0)
            return -ENOMEM;
        for (int32_t i = 0; i >= 0; i = sc->snext[i]) {
            int rc;
            if (sc->sid[i] >= 0)
                rc = tok_ids_push(&sc->word, sc->sid[i]);
            else if (bl) {
                uint8_t ch[2];
                int l = tok_bytelevel_char(s[sc->sstart[i]], ch);
                rc = tok_unknown(sc, ch, (size_t)l);
            } else
                rc = tok_unknown(sc, s + sc->sstart[i], sc->slen[i]);
            if (rc < 0)
                return rc;
        }
    }
    if (n <= TOK_CACHE_KEY_MAX)
        tok_cache_put(sc, s, n, bl, h);
    for (size_t k = 0; k < sc->word.n; k++)
        if (tok_emit(sc, sc->word.p[k]) < 0)
            return -ENOMEM;
    return 0;
}

#define TOK_SP "\xE2\x96\x81" /* ▁ */

/* The model on one pre-token s[0..n): bl says its bytes still have to be
 * mapped to byte-level characters. Emits its ids. */
static int tok_model(tok_scratch *sc, const uint8_t *s, size_t n, int bl)
{
    const tok *t = sc->t;
    if (n == 0)
        return 0;
    if (t->sp_words && !bl && n > TOK_CACHE_KEY_MAX / 2 && sc->collect == NULL) {
        /* cut before each "▁" that follows another character: the words
         * merge as they would inside the piece, and hit the cache */
        size_t start = 0;
        for (size_t i = 3; i + 3 <= n; i++) {
            if (s[i] != 0xE2 || memcmp(s + i, TOK_SP, 3) != 0 || memcmp(s + i - 3, TOK_SP, 3) == 0)
                continue;
            if (i - start > 0) {
                /* the previous character is not ▁ (checked bytewise: a
                 * UTF-8 character ending in E2 96 81 is ▁) */
                int rc = tok_model_word(sc, s + start, i - start, 0);
                if (rc < 0)
                    return rc;
                start = i;
            }
        }
        return tok_model_word(sc, s + start, n - start, 0);
    }
    return tok_model_word(sc, s, n, bl);
}

/* ---- pre-tokenizers ----------------------------------------------------------- */

static int tok_pre_run(tok_scratch *sc, int k, const uint8_t *s, size_t n, int first);

/* Room for a new pre-token string of up to n bytes. Strings stay where they
 * are until the next section: the arena grows by adding chunks. */
static uint8_t *tok_arena_take(tok_scratch *sc, size_t n)
{
    while (sc->cur < sc->nchunks && sc->chunk_cap[sc->cur] - sc->chunk_used[sc->cur] < n)
        sc->cur++;
    if (sc->cur == sc->nchunks) {
        size_t cap = n > (1u << 16) ? n : (1u << 16);
        uint8_t **c = realloc(sc->chunk, (sc->nchunks + 1) * sizeof *c);
        if (c == NULL)
            return NULL;
        sc->chunk = c;
        size_t *cc = realloc(sc->chunk_cap, (sc->nchunks + 1) * sizeof *cc);
        if (cc == NULL)
            return NULL;
        sc->chunk_cap = cc;
        size_t *cu = realloc(sc->chunk_used, (sc->nchunks + 1) * sizeof *cu);
        if (cu == NULL)
            return NULL;
        sc->chunk_used = cu;
        if ((sc->chunk[sc->nchunks] = malloc(cap)) == NULL)
            return NULL;
        sc->chunk_cap[sc->nchunks] = cap;
        sc->chunk_used[sc->nchunks] = 0;
        sc->nchunks++;
    }
    uint8_t *p = sc->chunk[sc->cur] + sc->chunk_used[sc->cur];
    sc->chunk_used[sc->cur] += n;
    return p;
}

/* Returns the unused tail of the last tok_arena_take. */
static void tok_arena_giveback(tok_scratch *sc, size_t unused)
{
    sc->chunk_used[sc->cur] -= unused;
}

static void tok_arena_reset(tok_scratch *sc)
{
    for (size_t i = 0; i < sc->nchunks; i++)
        sc->chunk_used[i] = 0;
    sc->cur = 0;
}

/* A piece from ByteLevel step k goes on: to the model (last step, mapped
 * there) or, mapped here, to the next step. */
static int tok_bytelevel_out(tok_scratch *sc, int k, const uint8_t *s, size_t n, int first)
{
    if (k == sc->t->n_pre - 1)
        return tok_model(sc, s, n, 1);
    uint8_t *p = tok_arena_take(sc, 2 * n);
    if (p == NULL)
        return -ENOMEM;
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)tok_bytelevel_char(s[i], p + len);
    tok_arena_giveback(sc, 2 * n - len);
    return tok_pre_run(sc, k + 1, p, len, first);
}

/* Applies a Split behavior to the spans in v (Rust tokenizers' semantics) in place. */
static void tok_behave(tok_spans *v, int behavior, int invert)
{
    if (invert)
        for (size_t i = 0; i < v->n; i++)
            v->p[i].tag = !v->p[i].tag;
    size_t o = 0;
    int prev = 0;
    switch (behavior) {
    case B_ISOLATED:
        return;
    case B_REMOVED:
        for (size_t i = 0; i < v->n; i++)
            if (!v->p[i].tag)
                v->p[o++] = v->p[i];
        break;
    case B_PREVIOUS:
        for (size_t i = 0; i < v->n; i++) {
            int m = v->p[i].tag;
            if (m && !prev && o > 0)
                v->p[o - 1].len += v->p[i].len;
            else
                v->p[o++] = v->p[i];
            prev = m;
        }
        break;
    case B_NEXT:
        /* right to left, written from the end, then moved down */
        o = v->n;
        for (size_t i = v->n; i-- > 0;) {
            int m = v->p[i].tag;
            if (m && !prev && o < v->n) {
                v->p[o].len += v->p[o].off - v->p[i].off;
                v->p[o].off = v->p[i].off;
            } else
                v->p[--o] = v->p[i];
            prev = m;
        }
        memmove(v->p, v->p + o, (v->n - o) * sizeof *v->p);
        o = v->n - o;
        break;
    case B_CONTIGUOUS:
        for (size_t i = 0; i < v->n; i++) {
            int m = v->p[i].tag;
            if (m == prev && o > 0)
                v->p[o - 1].len += v->p[i].len;
            else
                v->p[o++] = v->p[i];
            prev = m;
        }
        break;
    }
    v->n = o;
}

static int tok_pre_spans(tok_scratch *sc, int k, const uint8_t *s, int first)
{
    tok_spans *v = &sc->lvl[k];
    for (size_t i = 0; i < v->n; i++) {
        if (v->p[i].len == 0)
            continue;
        int rc = tok_pre_run(sc, k + 1, s + v->p[i].off, v->p[i].len, first);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Pre-tokenizer step k on the piece s[0..n) (n > 0), then the steps after
 * it and the model on every piece it makes. first: the piece belongs to the
 * text section that starts the input (Metaspace's prepend_scheme "first"). */
static int tok_pre_run(tok_scratch *sc, int k, const uint8_t *s, size_t n, int first)
{
    const tok *t = sc->t;
    if (n == 0)
        return 0;
    if (k == t->n_pre)
        return tok_model(sc, s, n, 0);
    const tok_pre *pr = &t->pre[k];
    tok_spans *v = &sc->lvl[k];
    int rc;
    switch (pr->kind) {
    case P_BYTELEVEL:
        if (pr->prefix_space && s[0] != ' ') {
            uint8_t *p = tok_arena_take(sc, n + 1);
            if (p == NULL)
                return -ENOMEM;
            p[0] = ' ';
            memcpy(p + 1, s, n);
            s = p;
            n++;
        }
        if (!pr->use_regex)
            return tok_bytelevel_out(sc, k, s, n, first);
        for (size_t p = 0; p < n;) {
            size_t e = tok_fast_gpt2(t, s, n, p, 1);
            if ((rc = tok_bytelevel_out(sc, k, s + p, e - p, first)) < 0)
                return rc;
            p = e;
        }
        return 0;
    case P_SPLIT:
        if (pr->pat.fast != FAST_NONE && !pr->invert && pr->behavior == B_ISOLATED) {
            /* the built-in patterns tile the text: stream the matches */
            for (size_t p = 0; p < n;) {
                size_t mb, me;
                tok_pat_find(sc, &pr->pat, s, n, p, &mb, &me);
                if ((rc = tok_pre_run(sc, k + 1, s + p, me - p, first)) < 0)
                    return rc;
                p = me;
            }
            return 0;
        }
        v->n = 0;
        if ((rc = tok_pat_spans(sc, &pr->pat, s, n, v)) < 0)
            return rc;
        tok_behave(v, pr->behavior, pr->invert);
        return tok_pre_spans(sc, k, s, first);
    case P_METASPACE: {
        int prepend = pr->scheme == PS_ALWAYS || (pr->scheme == PS_FIRST && first);
        uint8_t *p = tok_arena_take(sc, n * pr->rep_len + pr->rep_len);
        if (p == NULL)
            return -ENOMEM;
        size_t len = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') {
                memcpy(p + len, pr->rep, pr->rep_len);
                len += pr->rep_len;
            } else
                p[len++] = s[i];
        }
        if (prepend && !(len >= pr->rep_len && memcmp(p, pr->rep, pr->rep_len) == 0)) {
            memmove(p + pr->rep_len, p, len);
            memcpy(p, pr->rep, pr->rep_len);
            len += pr->rep_len;
        }
        tok_arena_giveback(sc, n * pr->rep_len + pr->rep_len - len);
        if (!pr->split)
            return tok_pre_run(sc, k + 1, p, len, first);
        v->n = 0;
        size_t prev = 0;
        for (size_t i = 0; i < len;) {
            if (i + pr->rep_len <= len && memcmp(p + i, pr->rep, pr->rep_len) == 0) {
                if ((i > prev && tok_spans_push(v, prev, i - prev, 0) < 0) ||
                    tok_spans_push(v, i, pr->rep_len, 1) < 0)
                    return -ENOMEM;
                i += pr->rep_len;
                prev = i;
            } else
                i++;
        }
        if (len > prev && tok_spans_push(v, prev, len - prev, 0) < 0)
            return -ENOMEM;
        tok_behave(v, B_NEXT, 0);
        return tok_pre_spans(sc, k, p, first);
    }
    case P_DIGITS:
    case P_WSPLIT:
        v->n = 0;
        for (size_t i = 0; i < n;) {
            uint32_t c;
            size_t j = i;
            if (pr->kind == P_DIGITS) {
                int digit = s[i] >= '0' && s[i] <= '9';
                if (digit && pr->individual)
                    j = i + 1;
                else
                    while (j < n && (s[j] >= '0' && s[j] <= '9') == digit)
                        j++;
                if (tok_spans_push(v, i, j - i, 0) < 0)
                    return -ENOMEM;
            } else {
                int l = tok_u8_next(s + i, n - i, &c);
                int ws = tok_is_ws(c, 1);
                j = i + (size_t)l;
                while (j < n) {
                    l = tok_u8_next(s + j, n - j, &c);
                    if (tok_is_ws(c, 1) != ws)
                        break;
                    j += (size_t)l;
                }
                if (!ws && tok_spans_push(v, i, j - i, 0) < 0)
                    return -ENOMEM;
            }
            i = j;
        }
        return tok_pre_spans(sc, k, s, first);
    }
    return -EINVAL;
}

/* ---- encoding ------------------------------------------------------------------------ */

/* Word characters for single_word (the regex crate's \w, as the Rust library uses). */
static int tok_word_char(const tok *t, uint32_t c)
{
    if (c < 0x80)
        return (c | 0x20) - 'a' < 26 || c - '0' < 10 || c == '_';
    if (c == 0x200C || c == 0x200D)
        return 1;
    return (GCM(tok_gc(t, c)) & (GCM_L | GCM_M | GCM(GC_ND) | GCM(GC_NL) | GCM(GC_PC))) != 0;
}

/* Splits s[0..n) at the added tokens of trie (leftmost, then longest), then
 * applies lstrip / rstrip to the text next to them. v gets text spans (tag
 * 0) and tokens (tag index + 1). */
static int tok_split_added(tok_scratch *sc, const tok_trie *tr, const uint8_t *s, size_t n, tok_spans *v)
{
    const tok *t = sc->t;
    v->n = 0;
    size_t text = 0, i = 0;
    if (tr->n > 1) {
        while (i < n) {
            if (!tr->first[s[i]]) {
                i++;
                continue;
            }
            int32_t node = 0, best = -1;
            size_t best_end = 0;
            for (size_t j = i; j < n; j++) {
                int32_t c = tr->nodes[node].child;
                while (c >= 0 && tr->nodes[c].byte != s[j])
                    c = tr->nodes[c].sibling;
                if (c < 0)
                    break;
                node = c;
                if (tr->nodes[node].token >= 0)
                    best = tr->nodes[node].token, best_end = j + 1;
            }
            if (best < 0) {
                i++;
                continue;
            }
            if (t->added[best].single_word) {
                uint32_t c;
                int ok = 1;
                if (i > 0) {
                    size_t l = tok_u8_prev_len(s, i);
                    tok_u8_next(s + i - l, l, &c);
                    ok = !tok_word_char(t, c);
                }
                if (ok && best_end < n) {
                    tok_u8_next(s + best_end, n - best_end, &c);
                    ok = !tok_word_char(t, c);
                }
                if (!ok) {
                    i = best_end;
                    continue;
                }
            }
            if ((i > text && tok_spans_push(v, text, i - text, 0) < 0) ||
                tok_spans_push(v, i, best_end - i, best + 1) < 0)
                return -ENOMEM;
            text = i = best_end;
        }
    }
    if (n > text && tok_spans_push(v, text, n - text, 0) < 0)
        return -ENOMEM;
    for (size_t k = 0; k < v->n; k++) {
        if (v->p[k].tag == 0)
            continue;
        const tok_added *a = &t->added[v->p[k].tag - 1];
        if (a->lstrip && k > 0 && v->p[k - 1].tag == 0)
            v->p[k - 1].len = (uint32_t)tok_js_trim_end(s + v->p[k - 1].off, v->p[k - 1].len);
        if (a->rstrip && k + 1 < v->n && v->p[k + 1].tag == 0) {
            size_t cut = tok_js_trim_start(s + v->p[k + 1].off, v->p[k + 1].len);
            v->p[k + 1].off += (uint32_t)cut;
            v->p[k + 1].len -= (uint32_t)cut;
        }
    }
    return 0;
}

/* A text piece that is exactly an added token's content (or normalized
 * content) is that token, as in Tokenizers.js. */
static int32_t tok_whole_added(const tok *t, const uint8_t *s, size_t n)
{
    int32_t a = tok_smap_get(&t->added_any, t->arena, s, n);
    return a >= 0 ? t->added[a].id : -1;
}

static int tok_encode_text(tok_scratch *sc, const uint8_t *s, size_t n)
{
    const tok *t = sc->t;
    int rc = tok_split_added(sc, &t->raw_trie, s, n, &sc->sect);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < sc->sect.n; i++) {
        tok_span sp = sc->sect.p[i];
        if (sp.tag) {
            if (tok_ids_push(sc->out, t->added[sp.tag - 1].id) < 0)
                return -ENOMEM;
            continue;
        }
        if (sp.len == 0)
            continue;
        int first = sp.off == 0;
        int32_t whole = tok_whole_added(t, s + sp.off, sp.len);
        if (whole >= 0) {
            if (tok_ids_push(sc->out, whole) < 0)
                return -ENOMEM;
            continue;
        }
        const uint8_t *ns;
        size_t nn;
        if ((rc = tok_normalize(sc, s + sp.off, sp.len, &ns, &nn)) < 0)
            return rc;
        if ((rc = tok_split_added(sc, &t->norm_trie, ns, nn, &sc->sub)) < 0)
            return rc;
        tok_arena_reset(sc);
        for (size_t j = 0; j < sc->sub.n; j++) {
            tok_span q = sc->sub.p[j];
            if (q.tag) {
                if (tok_ids_push(sc->out, t->added[q.tag - 1].id) < 0)
                    return -ENOMEM;
                continue;
            }
            if (q.len == 0)
                continue;
            if ((whole = tok_whole_added(t, ns + q.off, q.len)) >= 0) {
                if (tok_ids_push(sc->out, whole) < 0)
                    return -ENOMEM;
                continue;
            }
            sc->last_unk = 0;
            if ((rc = tok_pre_run(sc, 0, ns + q.off, q.len, first)) < 0)
                return rc;
        }
    }
    return 0;
}

int tok_encode_with(const tok *t, tok_scratch *sc, const char *text, size_t len, bool add_special,
                    int32_t **ids, size_t *n, size_t *cap, rt_err *err)
{
    tok_ids out = {*ids, 0, *ids ? *cap : 0};
    int rc = 0;
    sc->out = &out;
    if (t->kind == TOK_KIND_BYTES) {
        if (add_special)
            rc = tok_ids_push(&out, TOK_BYTE_BOS);
        for (size_t i = 0; i < len && rc == 0; i++)
            rc = tok_ids_push(&out, (uint8_t)text[i]);
        goto cleanup;
    }
    const uint8_t *s = (const uint8_t *)text;
    if (!tok_u8_valid(s, len)) {
        size_t m = tok_u8_sanitize(s, len, NULL);
        sc->clean.len = 0;
        if ((rc = tok_buf_reserve(&sc->clean, m + 1)) < 0)
            goto cleanup;
        tok_u8_sanitize(s, len, sc->clean.p);
        sc->clean.len = m;
        s = sc->clean.p;
        len = m;
    }
    for (size_t i = 0; add_special && i < t->n_prefix && rc == 0; i++)
        rc = tok_ids_push(&out, t->prefix_ids[i]);
    if (rc == 0)
        rc = tok_encode_text(sc, s, len);
    for (size_t i = 0; add_special && i < t->n_suffix && rc == 0; i++)
        rc = tok_ids_push(&out, t->suffix_ids[i]);
cleanup:
    *ids = out.p;
    *n = rc == 0 ? out.n : 0;
    *cap = out.cap;
    sc->out = NULL;
    if (rc == -ENOMEM)
        return err_set(err, rc, "tokenizer: out of memory encoding %zu bytes", len);
    if (rc < 0)
        return err_set(err, rc, "tokenizer: a regex of %s failed on a %zu-byte text (Oniguruma "
                       "search error)", t->path ? t->path : "the tokenizer", len);
    return 0;
}

int tok_encode(const tok *t, const char *text, size_t len, bool add_special, int32_t **ids, size_t *n,
               size_t *cap, rt_err *err)
{
    tok_scratch *sc;
    int rc = tok_scratch_init(t, &sc, err);
    if (rc < 0)
        return rc;
    rc = tok_encode_with(t, sc, text, len, add_special, ids, n, cap, err);
    tok_scratch_free(sc);
    return rc;
}

/* ---- decoding ------------------------------------------------------------------------ */

/* A list of strings: the tokens as the decoders transform them. */
typedef struct tok_strv {
    tok_buf data;
    uint32_t *off, *len; /* [n] bytes into data */
    size_t n, cap;
} tok_strv;

static int tok_strv_push(tok_strv *v, const void *s, size_t n)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        uint32_t *o = realloc(v->off, cap * sizeof *o);
        if (o == NULL)
            return -ENOMEM;
        v->off = o;
        uint32_t *l = realloc(v->len, cap * sizeof *l);
        if (l == NULL)
            return -ENOMEM;
        v->len = l;
        v->cap = cap;
    }
    v->off[v->n] = (uint32_t)v->data.len;
    v->len[v->n] = (uint32_t)n;
    if (tok_buf_put(&v->data, s, n) < 0)
        return -ENOMEM;
    v->n++;
    return 0;
}

/* Appends bytes to the last string of v. */
static int tok_strv_cat(tok_strv *v, const void *s, size_t n)
{
    if (tok_buf_put(&v->data, s, n) < 0)
        return -ENOMEM;
    v->len[v->n - 1] += (uint32_t)n;
    return 0;
}

static void tok_strv_free(tok_strv *v)
{
    free(v->data.p);
    free(v->off);
    free(v->len);
}

/* The byte a byte-level character stands for, or -1. */
static int tok_byte_of_char(uint32_t c)
{
    if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))
        return (int)c;
    if (c < 256 || c > 256 + 67)
        return -1;
    uint32_t k = c - 256;
    return k <= 32 ? (int)k : k < 67 ? (int)(0x7F + k - 33) : 0xAD;
}

static int tok_hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/* Appends the lossy (WHATWG) UTF-8 decode of b[0..n) to v as a new string. */
static int tok_strv_push_lossy(tok_strv *v, const uint8_t *b, size_t n)
{
    size_t m = tok_u8_sanitize(b, n, NULL);
    if (tok_strv_push(v, "", 0) < 0 || tok_buf_reserve(&v->data, m + 1) < 0)
        return -ENOMEM;
    tok_u8_sanitize(b, n, v->data.p + v->data.len);
    v->data.len += m;
    v->len[v->n - 1] = (uint32_t)m;
    return 0;
}

/* One decoder step: in -> out (out empty on entry). */
static int tok_dec_step(tok_scratch *sc, const tok_dec *d, const tok_strv *in, tok_strv *out, tok_buf *bytes)
{
    const tok *t = sc->t;
    int rc = 0;
    switch (d->kind) {
    case D_BYTELEVEL:
        bytes->len = 0;
        for (size_t i = 0; i <= in->n && rc == 0; i++) {
            const uint8_t *s = i < in->n ? in->data.p + in->off[i] : NULL;
            size_t n = i < in->n ? in->len[i] : 0;
            int added = i < in->n && tok_smap_get(&t->added_content, t->arena, s, n) >= 0;
            if (i == in->n || added) {
                if (bytes->len > 0)
                    rc = tok_strv_push_lossy(out, bytes->p, bytes->len);
                bytes->len = 0;
                if (added && rc == 0)
                    rc = tok_strv_push(out, s, n);
                continue;
            }
            size_t mark = bytes->len;
            for (size_t k = 0; k < n && rc == 0;) {
                uint32_t c;
                int l = tok_u8_next(s + k, n - k, &c);
                int b = tok_byte_of_char(c);
                if (b < 0) { /* not byte-level text: the token's own bytes */
                    bytes->len = mark;
                    rc = tok_buf_put(bytes, s, n);
                    break;
                }
                uint8_t byte = (uint8_t)b;
                rc = tok_buf_put(bytes, &byte, 1);
                k += (size_t)l;
            }
        }
        return rc;
    case D_METASPACE:
        for (size_t i = 0; i < in->n && rc == 0; i++) {
            const uint8_t *s = in->data.p + in->off[i];
            size_t n = in->len[i];
            rc = tok_strv_push(out, "", 0);
            for (size_t k = 0; k < n && rc == 0;) {
                if (k + d->rep_len <= n && memcmp(s + k, d->rep, d->rep_len) == 0) {
                    rc = tok_strv_cat(out, " ", 1);
                    k += d->rep_len;
                } else
                    rc = tok_strv_cat(out, s + k++, 1);
            }
            if (rc == 0 && i == 0 && d->strip_first && out->len[out->n - 1] > 0 &&
                out->data.p[out->off[out->n - 1]] == ' ') {
                out->off[out->n - 1]++;
                out->len[out->n - 1]--;
            }
        }
        return rc;
    case D_REPLACE:
    case D_BPE:
        for (size_t i = 0; i < in->n && rc == 0; i++) {
            const uint8_t *s = in->data.p + in->off[i];
            size_t n = in->len[i], pos = 0, prev = 0, mb, me;
            const char *with = d->kind == D_REPLACE ? d->content : (i + 1 == in->n ? "" : " ");
            size_t with_len = d->kind == D_REPLACE ? d->content_len : strlen(with);
            tok_pat lit = {.lit = d->content, .lit_len = d->content_len};
            const tok_pat *pat = d->kind == D_REPLACE ? &d->pat : &lit;
            rc = tok_strv_push(out, "", 0);
            while (rc == 0) {
                int r = pat->lit && pat->lit_len == 0 ? 0 : tok_pat_find(sc, pat, s, n, pos, &mb, &me);
                if (r <= 0) {
                    rc = r;
                    break;
                }
                if ((rc = tok_strv_cat(out, s + prev, mb - prev)) < 0 ||
                    (rc = tok_strv_cat(out, with, with_len)) < 0)
                    break;
                prev = me;
                if (me > mb)
                    pos = me;
                else {
                    if (mb >= n)
                        break;
                    uint32_t c;
                    pos = mb + (size_t)tok_u8_next(s + mb, n - mb, &c);
                }
            }
            if (rc == 0)
                rc = tok_strv_cat(out, s + prev, n - prev);
        }
        return rc;
    case D_BYTEFALLBACK:
        bytes->len = 0;
        for (size_t i = 0; i <= in->n && rc == 0; i++) {
            const uint8_t *s = i < in->n ? in->data.p + in->off[i] : NULL;
            size_t n = i < in->n ? in->len[i] : 0;
            int byte = -1;
            if (n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>') {
                int hi = tok_hexval(s[3]), lo = tok_hexval(s[4]);
                if (hi >= 0 && lo >= 0)
                    byte = hi * 16 + lo;
            }
            if (byte >= 0) {
                uint8_t b = (uint8_t)byte;
                rc = tok_buf_put(bytes, &b, 1);
                continue;
            }
            if (bytes->len > 0)
                rc = tok_strv_push_lossy(out, bytes->p, bytes->len);
            bytes->len = 0;
            if (i < in->n && rc == 0)
                rc = tok_strv_push(out, s, n);
        }
        return rc;
    case D_FUSE:
        rc = tok_strv_push(out, "", 0);
        for (size_t i = 0; i < in->n && rc == 0; i++)
            rc = tok_strv_cat(out, in->data.p + in->off[i], in->len[i]);
        return rc;
    case D_STRIP: {
        uint8_t cb[4];
        size_t cl = (size_t)tok_u8_put(cb, d->strip_cp);
        for (size_t i = 0; i < in->n && rc == 0; i++) {
            const uint8_t *s = in->data.p + in->off[i];
            size_t n = in->len[i], a = 0, b = n;
            for (int k = 0; k < d->start && a + cl <= n && memcmp(s + a, cb, cl) == 0; k++)
                a += cl;
            for (int k = 0; k < d->stop && b >= cl && memcmp(s + b - cl, cb, cl) == 0; k++)
                b -= cl;
            rc = tok_strv_push(out, s + a, b > a ? b - a : 0);
        }
        return rc;
    }
    }
    return -EINVAL;
}

int tok_decode(const tok *t, const int32_t *ids, size_t n, bool skip_special, char **out, size_t *len,
               rt_err *err)
{
    tok_buf res = {0}, bytes = {0};
    tok_strv v[2];
    memset(v, 0, sizeof v);
    tok_scratch *sc = NULL;
    int rc = 0;
    *out = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_ids ||
            (t->kind == TOK_KIND_BPE && !(t->id_flags[ids[i]] & TOKF_HAS))) {
            rc = err_set(err, -EINVAL, "tokenizer: id %d (position %zu) is not a token of %s (ids 0..%d)",
                         ids[i], i, t->kind == TOK_KIND_BYTES ? "the byte tokenizer" : t->path,
                         t->n_ids - 1);
            goto cleanup;
        }
    for (size_t i = 0; t->kind == TOK_KIND_BYTES && i < n && rc == 0; i++) {
        if (ids[i] < 256) {
            uint8_t b = (uint8_t)ids[i];
            rc = tok_buf_put(&res, &b, 1);
        } else if (!skip_special)
            rc = tok_buf_put(&res, TOK_BYTE_NAMES[ids[i] - 256], strlen(TOK_BYTE_NAMES[ids[i] - 256]));
    }
    if (t->kind == TOK_KIND_BPE && (rc = tok_scratch_init(t, &sc, err)) < 0)
        goto cleanup;
    for (size_t i = 0; t->kind == TOK_KIND_BPE && i < n && rc == 0; i++) {
        if (skip_special && (t->id_flags[ids[i]] & TOKF_SPECIAL))
            continue;
        rc = tok_strv_push(&v[0], t->arena + t->id_off[ids[i]], t->id_len[ids[i]]);
    }
    int cur = 0;
    for (int k = 0; k < t->n_dec && rc == 0; k++) {
        v[!cur].n = 0;
        v[!cur].data.len = 0;
        rc = tok_dec_step(sc, &t->dec[k], &v[cur], &v[!cur], &bytes);
        cur = !cur;
    }
    for (size_t i = 0; i < v[cur].n && rc == 0; i++) {
        if (i > 0 && !t->has_decoder)
            rc = tok_buf_put(&res, " ", 1);
        if (rc == 0)
            rc = tok_buf_put(&res, v[cur].data.p + v[cur].off[i], v[cur].len[i]);
    }
    if (rc == 0 && t->kind == TOK_KIND_BPE && t->has_decoder && t->eow_suffix != NULL) {
        /* Tokenizers.js: the model's end_of_word_suffix becomes a space */
        tok_buf tmp = {0};
        const uint8_t *s = res.p;
        size_t m = res.len, prev = 0;
        for (size_t i = 0; i + t->eow_suffix_len <= m && rc == 0;) {
            if (memcmp(s + i, t->eow_suffix, t->eow_suffix_len) == 0) {
                if ((rc = tok_buf_put(&tmp, s + prev, i - prev)) == 0)
                    rc = tok_buf_put(&tmp, " ", 1);
                i += t->eow_suffix_len;
                prev = i;
            } else
                i++;
        }
        if (rc == 0)
            rc = tok_buf_put(&tmp, s + prev, m - prev);
        size_t a = 0, b = tmp.len;
        if (skip_special && rc == 0) {
            a = tok_js_trim_start(tmp.p, tmp.len);
            b = a + tok_js_trim_end(tmp.p + a, tmp.len - a);
        }
        res.len = 0;
        if (rc == 0)
            rc = tok_buf_put(&res, tmp.p + a, b - a);
        free(tmp.p);
    }
    if (rc == 0)
        rc = tok_buf_put(&res, "", 0); /* NUL terminator */
    if (rc < 0) {
        rc = err_set(err, rc, rc == -ENOMEM ? "tokenizer: out of memory decoding %zu ids"
                                            : "tokenizer: a decoder regex failed on %zu ids", n);
        goto cleanup;
    }
    res.p[res.len] = '\0';
    *out = (char *)res.p;
    *len = res.len;
    res.p = NULL;
cleanup:
    free(res.p);
    free(bytes.p);
    tok_strv_free(&v[0]);
    tok_strv_free(&v[1]);
    tok_scratch_free(sc);
    return rc;
}

/* ---- loading: model, added tokens, tables ---------------------------------------- */

static int tok_build_unicode(tok *t)
{
    t->uc_stage1 = malloc(0x1100 * sizeof *t->uc_stage1);
    size_t cap = 64, nb = 0;
    uint8_t *st2 = malloc(cap * 256);
    uint32_t *hashes = malloc(cap * sizeof *hashes);
    int rc = -ENOMEM;
    if (t->uc_stage1 == NULL || st2 == NULL || hashes == NULL)
        goto cleanup;
    size_t r = 0;
    uint8_t blk[256];
    for (uint32_t b = 0; b < 0x1100; b++) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t cp = b * 256 + i;
            while (r + 1 < TOK_GC_NRUNS && (TOK_GC_RUNS[r + 1] >> 5) <= cp)
                r++;
            blk[i] = (uint8_t)(TOK_GC_RUNS[r] & 31);
        }
        uint32_t h = (uint32_t)tok_hash(blk, 256);
        size_t k = 0;
        while (k < nb && !(hashes[k] == h && memcmp(st2 + k * 256, blk, 256) == 0))
            k++;
        if (k == nb) {
            if (nb == cap) {
                cap *= 2;
                uint8_t *p = realloc(st2, cap * 256);
                if (p == NULL)
                    goto cleanup;
                st2 = p;
                uint32_t *q = realloc(hashes, cap * sizeof *q);
                if (q == NULL)
                    goto cleanup;
                hashes = q;
            }
            memcpy(st2 + nb * 256, blk, 256);
            hashes[nb++] = h;
        }
        t->uc_stage1[b] = (uint16_t)k;
    }
    t->uc_stage2 = st2;
    st2 = NULL;
    rc = 0;
cleanup:
    free(st2);
    free(hashes);
    return rc;
}

static int tok_trie_add(tok_trie *tr, const uint8_t *s, size_t n, int32_t token)
{
    if (tr->n == 0) {
        tr->cap = 64;
        if ((tr->nodes = malloc(tr->cap * sizeof *tr->nodes)) == NULL)
            return -ENOMEM;
        tr->nodes[0] = (tok_trie_node){-1, -1, -1, 0};
        tr->n = 1;
    }
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = tr->nodes[node].child;
        while (c >= 0 && tr->nodes[c].byte != s[i])
            c = tr->nodes[c].sibling;
        if (c < 0) {
            if (tr->n == tr->cap) {
                tok_trie_node *p = realloc(tr->nodes, tr->cap * 2 * sizeof *p);
                if (p == NULL)
                    return -ENOMEM;
                tr->nodes = p;
                tr->cap *= 2;
            }
            c = (int32_t)tr->n++;
            tr->nodes[c] = (tok_trie_node){-1, tr->nodes[node].child, -1, s[i]};
            tr->nodes[node].child = c;
        }
        node = c;
    }
    tr->nodes[node].token = token;
    tr->first[s[0]] = 1;
    return 0;
}

static int tok_load_vocab(tok_ld *ld, const json_t *model, const json_t *added)
{
    tok *t = ld->t;
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab))
        return tok_jbad(ld, "model.vocab", vocab, "an object {token: id}");
    if (!json_is_array(added) && added != NULL && !json_is_null(added))
        return tok_jbad(ld, "added_tokens", added, "an array");
    int64_t max_id = -1;
    const char *key;
    size_t klen;
    json_t *val;
    json_object_keylen_foreach((json_t *)vocab, key, klen, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= INT32_MAX) {
            char p[640];
            snprintf(p, sizeof p, "model.vocab[\"%.500s\"]", key);
            return tok_jbad(ld, p, val, "an id in [0, 2^31-1)");
        }
        if (json_integer_value(val) > max_id)
            max_id = json_integer_value(val);
    }
    size_t na = json_array_size(added);
    if (na > 0 && (t->added = calloc(na, sizeof *t->added)) == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < na; i++) {
        char p[64];
        snprintf(p, sizeof p, "added_tokens[%zu]", i);
        json_t *a = json_array_get(added, i);
        if (!json_is_object(a))
            return tok_jbad(ld, p, a, "an object");
        tok_added *ad = &t->added[i];
        int64_t id;
        const char *content;
        size_t len;
        int rc;
        if ((rc = tok_jint(ld, a, p, "id", -1, 0, INT32_MAX - 1, &id)) < 0 ||
            (rc = tok_jstr(ld, a, p, "content", 1, &content, &len)) < 0 ||
            (rc = tok_jbool(ld, a, p, "single_word", 0, &ad->single_word)) < 0 ||
            (rc = tok_jbool(ld, a, p, "lstrip", 0, &ad->lstrip)) < 0 ||
            (rc = tok_jbool(ld, a, p, "rstrip", 0, &ad->rstrip)) < 0 ||
            (rc = tok_jbool(ld, a, p, "special", 0, &ad->special)) < 0 ||
            (rc = tok_jbool(ld, a, p, "normalized", !ad->special, &ad->normalized)) < 0)
            return rc;
        if (id < 0)
            return tok_jbad(ld, "added_tokens[].id", NULL, "an id");
        if (len == 0)
            return err_set(ld->err, -EINVAL, "%s: %s.content is empty, expected the token's text", ld->file, p);
        ad->id = (int32_t)id;
        if ((rc = tok_arena_put(t, content, len, &ad->off)) < 0)
            return rc;
        ad->len = len;
        t->n_added = (int)i + 1;
        if (id > max_id)
            max_id = id;
    }
    t->n_ids = (int32_t)(max_id + 1);
    size_t n = (size_t)t->n_ids;
    t->id_off = calloc(n ? n : 1, sizeof *t->id_off);
    t->id_len = malloc((n ? n : 1) * sizeof *t->id_len);
    t->id_flags = calloc(n ? n : 1, 1);
    if (t->id_off == NULL || t->id_len == NULL || t->id_flags == NULL)
        return -ENOMEM;
    if (tok_smap_init(&t->vocab, json_object_size(vocab)) < 0 ||
        tok_smap_init(&t->added_content, na) < 0 || tok_smap_init(&t->added_any, 2 * na) < 0)
        return -ENOMEM;
    json_object_keylen_foreach((json_t *)vocab, key, klen, val) {
        int32_t id = (int32_t)json_integer_value(val);
        uint64_t off;
        if (tok_arena_put(t, key, klen, &off) < 0)
            return -ENOMEM;
        tok_smap_set(&t->vocab, t->arena, off, klen, id);
        t->id_off[id] = off;
        t->id_len[id] = (uint32_t)klen;
        t->id_flags[id] |= TOKF_HAS;
    }
    for (int i = 0; i < t->n_added; i++) {
        tok_added *ad = &t->added[i];
        tok_smap_set(&t->added_content, t->arena, ad->off, ad->len, i);
        t->id_off[ad->id] = ad->off;
        t->id_len[ad->id] = (uint32_t)ad->len;
        t->id_flags[ad->id] |= TOKF_HAS | TOKF_ADDED | (ad->special ? TOKF_SPECIAL : 0);
    }
    return 0;
}

/* "a b" (one space) or ["a", "b"] at merges[i] into a and b. */
static int tok_merge_parts(tok_ld *ld, const json_t *m, size_t i, const char **a, size_t *al, const char **b,
                           size_t *bl)
{
    char p[64];
    snprintf(p, sizeof p, "model.merges[%zu]", i);
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t n = json_string_length(m);
        const char *sp = memchr(s, ' ', n);
        if (sp == NULL || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1)) != NULL)
            return err_set(ld->err, -EINVAL, "%s: %s is \"%s\", expected two tokens separated by one space",
                           ld->file, p, s);
        *a = s;
        *al = (size_t)(sp - s);
        *b = sp + 1;
        *bl = (size_t)(s + n - sp - 1);
        return 0;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *al = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        *bl = json_string_length(json_array_get(m, 1));
        return 0;
    }
    return tok_jbad(ld, p, m, "\"a b\" or [\"a\", \"b\"]");
}

static int tok_load_merges(tok_ld *ld, const json_t *model)
{
    tok *t = ld->t;
    json_t *merges = json_object_get(model, "merges");
    if (merges == NULL || json_is_null(merges))
        return 0;
    if (!json_is_array(merges))
        return tok_jbad(ld, "model.merges", merges, "an array");
    size_t n = json_array_size(merges), cap = 16;
    while (cap < n * 2)
        cap *= 2;
    t->merges.slots = malloc(cap * sizeof *t->merges.slots);
    if (t->merges.slots == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++)
        t->merges.slots[i].key = UINT64_MAX;
    t->merges.mask = cap - 1;
    tok_buf cat = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        if ((rc = tok_merge_parts(ld, json_array_get(merges, i), i, &a, &al, &b, &bl)) < 0)
            break;
        int32_t ia = tok_smap_get(&t->vocab, t->arena, a, al), ib = tok_smap_get(&t->vocab, t->arena, b, bl);
        size_t skip = t->cont_prefix && bl >= t->cont_prefix_len &&
                              memcmp(b, t->cont_prefix, t->cont_prefix_len) == 0
                          ? t->cont_prefix_len
                          : 0;
        cat.len = 0;
        if (tok_buf_put(&cat, a, al) < 0 || tok_buf_put(&cat, b + skip, bl - skip) < 0) {
            rc = -ENOMEM;
            break;
        }
        int32_t inew = tok_smap_get(&t->vocab, t->arena, cat.p, cat.len);
        const char *missing = ia < 0 ? a : ib < 0 ? b : inew < 0 ? (const char *)cat.p : NULL;
        if (missing != NULL) {
            int ml = (int)(ia < 0 ? al : ib < 0 ? bl : cat.len);
            rc = err_set(ld->err, -EINVAL,
                         "%s: model.merges[%zu]: \"%.*s\" is not in model.vocab (a merge may only name "
                         "tokens of the vocabulary)", ld->file, i, ml, missing);
            break;
        }
        uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
        size_t k = tok_mmap_index(key, t->merges.mask);
        while (t->merges.slots[k].key != UINT64_MAX && t->merges.slots[k].key != key)
            k = (k + 1) & t->merges.mask;
        /* a pair listed twice keeps its last rank, as both reference implementations do */
        t->merges.slots[k] = (tok_merge_slot){key, (int32_t)i, inew};
    }
    free(cat.p);
    return rc;
}

static int tok_load_model(tok_ld *ld, const json_t *root)
{
    tok *t = ld->t;
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model))
        return tok_jbad(ld, "model", model, "an object");
    const char *type, *s;
    size_t len;
    int rc;
    if ((rc = tok_jstr(ld, model, "model", "type", 0, &type, &len)) < 0)
        return rc;
    if (type == NULL && json_object_get(model, "merges") == NULL)
        return err_set(ld->err, -EINVAL, "%s: model has no type and no merges: only BPE models are supported",
                       ld->file);
    if (type != NULL && strcmp(type, "BPE") != 0)
        return err_set(ld->err, -EINVAL, "%s: model.type \"%s\" is not supported (only BPE)", ld->file, type);
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout != NULL && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0))
        return err_set(ld->err, -EINVAL,
                       "%s: model.dropout is %s%g: BPE dropout is not supported (it makes encoding random), "
                       "expected null", ld->file, json_is_number(dropout) ? "" : "a JSON ",
                       json_is_number(dropout) ? json_number_value(dropout) : 0.0);
    if ((rc = tok_load_vocab(ld, model, json_object_get(root, "added_tokens"))) < 0)
        return rc;
    if ((rc = tok_jbool(ld, model, "model", "fuse_unk", 0, &t->fuse_unk)) < 0 ||
        (rc = tok_jbool(ld, model, "model", "byte_fallback", 0, &t->byte_fallback)) < 0 ||
        (rc = tok_jbool(ld, model, "model", "ignore_merges", 0, &t->ignore_merges)) < 0)
        return rc;
    const char *keys[2] = {"continuing_subword_prefix", "end_of_word_suffix"};
    char **dst[2] = {&t->cont_prefix, &t->eow_suffix};
    size_t *dlen[2] = {&t->cont_prefix_len, &t->eow_suffix_len};
    for (int k = 0; k < 2; k++) {
        if ((rc = tok_jstr(ld, model, "model", keys[k], 0, &s, &len)) < 0)
            return rc;
        if (s != NULL && len > 0) {
            if ((*dst[k] = malloc(len + 1)) == NULL)
                return -ENOMEM;
            memcpy(*dst[k], s, len + 1);
            *dlen[k] = len;
        }
    }
    t->unk_id = -1;
    if ((rc = tok_jstr(ld, model, "model", "unk_token", 0, &s, &len)) < 0)
        return rc;
    if (s != NULL && (t->unk_id = tok_smap_get(&t->vocab, t->arena, s, len)) < 0)
        return err_set(ld->err, -EINVAL, "%s: model.unk_token \"%s\" is not in model.vocab", ld->file, s);
    return tok_load_merges(ld, model);
}

/* Normalized contents of the normalized added tokens, the two tries and
 * Tokenizers.js's content -> token map. */
static int tok_load_added_index(tok_ld *ld)
{
    tok *t = ld->t;
    tok_scratch *sc = NULL;
    int rc = 0;
    if (t->n_norm > 0 && (rc = tok_scratch_init(t, &sc, ld->err)) < 0)
        return rc;
    for (int i = 0; i < t->n_added && rc == 0; i++) {
        tok_added *ad = &t->added[i];
        tok_smap_set(&t->added_any, t->arena, ad->off, ad->len, i);
        if (!ad->normalized || t->n_norm == 0) {
            rc = tok_trie_add(&t->raw_trie, (const uint8_t *)t->arena + ad->off, ad->len, i);
            continue;
        }
        const uint8_t *ns = NULL;
        size_t nn = 0;
        char *copy = malloc(ad->len);
        if (copy == NULL) {
            rc = -ENOMEM;
            break;
        }
        memcpy(copy, t->arena + ad->off, ad->len); /* the arena may move while we add to it */
        rc = tok_normalize(sc, (const uint8_t *)copy, ad->len, &ns, &nn);
        free(copy);
        if (rc == 0 && nn == 0)
            rc = err_set(ld->err, -EINVAL, "%s: added_tokens[%d] (\"%s\") normalizes to nothing", ld->file,
                         i, t->arena + ad->off);
        if (rc == 0)
            rc = tok_arena_put(t, ns, nn, &ad->noff);
        ad->nlen = nn;
        if (rc == 0)
            rc = tok_trie_add(&t->norm_trie, (const uint8_t *)t->arena + ad->noff, nn, i);
        if (rc == 0)
            tok_smap_set(&t->added_any, t->arena, ad->noff, nn, i);
    }
    tok_scratch_free(sc);
    if (rc == -EINVAL)
        return rc;
    return rc < 0 ? -ENOMEM : 0;
}

static int tok_load_tables(tok *t)
{
    if ((t->cp_id = malloc(0x10000 * sizeof *t->cp_id)) == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < 0x10000; i++)
        t->cp_id[i] = -1;
    for (size_t i = 0; i <= t->vocab.mask; i++) {
        const tok_smap_slot *sl = &t->vocab.slots[i];
        if (sl->hash == 0 || sl->len > 3)
            continue;
        uint32_t c;
        const uint8_t *s = (const uint8_t *)t->arena + sl->off;
        if (tok_u8_next(s, sl->len, &c) == (int)sl->len && c < 0x10000)
            t->cp_id[c] = sl->val;
    }
    for (size_t i = 0; i <= t->vocab.mask; i++) {
        const tok_smap_slot *sl = &t->vocab.slots[i];
        if (sl->hash == 0)
            continue;
        int32_t a = tok_smap_get(&t->added_any, t->arena, t->arena + sl->off, sl->len);
        if (a < 0 || t->added[a].id == sl->val)
            continue;
        if (t->remap == NULL) {
            if ((t->remap = malloc((size_t)t->n_ids * sizeof *t->remap)) == NULL)
                return -ENOMEM;
            for (int32_t k = 0; k < t->n_ids; k++)
                t->remap[k] = k;
        }
        t->remap[sl->val] = t->added[a].id;
    }
    t->sp_words = !t->ignore_merges && t->cont_prefix == NULL && t->eow_suffix == NULL;
    for (size_t i = 0; i <= t->vocab.mask && t->sp_words; i++) {
        const tok_smap_slot *sl = &t->vocab.slots[i];
        const uint8_t *p = (const uint8_t *)t->arena + sl->off;
        for (size_t k = 1; sl->hash != 0 && k + 3 <= sl->len && t->sp_words; k++)
            if (memcmp(p + k, TOK_SP, 3) == 0 && !(k >= 3 && memcmp(p + k - 3, TOK_SP, 3) == 0))
                t->sp_words = 0;
    }
    for (int b = 0; b < 256; b++) {
        uint8_t ch[2];
        char hex[8];
        int l = tok_bytelevel_char((uint8_t)b, ch);
        t->byte_id[b] = tok_smap_get(&t->vocab, t->arena, ch, (size_t)l);
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        t->fallback_id[b] = tok_smap_get(&t->vocab, t->arena, hex, 6);
    }
    return 0;
}

/* BOS / EOS: what the post-processor puts before / after the text, else the
 * first of the conventional names that is a token. */
static void tok_load_bos_eos(tok *t)
{
    static const char *const BOS[] = {"<|begin_of_text|>", "<s>", "<|startoftext|>", "<bos>"};
    static const char *const EOS[] = {"</s>", "<|endoftext|>", "<|end_of_text|>", "<|im_end|>", "<|eot_id|>", "<eos>"};
    t->bos = t->n_prefix > 0 ? t->prefix_ids[0] : -1;
    t->eos = t->n_suffix > 0 ? t->suffix_ids[t->n_suffix - 1] : -1;
    for (size_t i = 0; t->bos < 0 && i < sizeof BOS / sizeof BOS[0]; i++)
        t->bos = tok_lookup(t, BOS[i], strlen(BOS[i]));
    for (size_t i = 0; t->eos < 0 && i < sizeof EOS / sizeof EOS[0]; i++)
        t->eos = tok_lookup(t, EOS[i], strlen(EOS[i]));
}

/* Oniguruma's one-time set-up, which is not thread-safe itself. */
static pthread_once_t tok_onig_once = PTHREAD_ONCE_INIT;

static void tok_onig_init(void)
{
    OnigEncoding enc = ONIG_ENCODING_UTF8;
    onig_initialize(&enc, 1);
}

static int tok_read_file(const char *path, char **out, size_t *len, rt_err *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
    tok_buf b = {0};
    int rc = 0;
    for (;;) {
        if (tok_buf_reserve(&b, 1 << 20) < 0) {
            rc = err_set(err, -ENOMEM, "%s: out of memory reading it", path);
            break;
        }
        size_t k = fread(b.p + b.len, 1, b.cap - b.len, f);
        b.len += k;
        if (k == 0) {
            if (ferror(f))
                rc = err_set(err, -EIO, "%s: read error", path);
            break;
        }
    }
    fclose(f);
    if (rc < 0) {
        free(b.p);
        return rc;
    }
    *out = (char *)b.p;
    *len = b.len;
    return 0;
}

int tok_open(const char *path, tok **out, rt_err *err)
{
    *out = NULL;
    tok *t = calloc(1, sizeof *t);
    if (t == NULL)
        return err_set(err, -ENOMEM, "tokenizer: out of memory");
    int rc = 0;
    char *text = NULL;
    json_t *root = NULL;
    if (path == NULL) {
        t->kind = TOK_KIND_BYTES;
        t->n_ids = 259;
        t->bos = TOK_BYTE_BOS;
        t->eos = TOK_BYTE_EOS;
        snprintf(t->desc, sizeof t->desc, "byte tokenizer, 259 ids (built-in)");
        *out = t;
        return 0;
    }
    t->kind = TOK_KIND_BPE;
    struct stat st;
    if (stat(path, &st) != 0) {
        rc = err_set(err, -errno, "%s: %s", path, strerror(errno));
        goto cleanup;
    }
    if (S_ISDIR(st.st_mode)) {
        size_t l = strlen(path);
        if ((t->path = malloc(l + 16)) == NULL) {
            rc = err_set(err, -ENOMEM, "tokenizer: out of memory");
            goto cleanup;
        }
        snprintf(t->path, l + 16, "%s/tokenizer.json", path);
    } else if ((t->path = strdup(path)) == NULL) {
        rc = err_set(err, -ENOMEM, "tokenizer: out of memory");
        goto cleanup;
    }
    size_t len = 0;
    if ((rc = tok_read_file(t->path, &text, &len, err)) < 0)
        goto cleanup;
    json_error_t jerr;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (root == NULL) {
        rc = err_set(err, -EINVAL, "%s: not valid JSON: %s (line %d, column %d)", t->path, jerr.text,
                     jerr.line, jerr.column);
        goto cleanup;
    }
    tok_ld ld = {t, t->path, err};
    if (!json_is_object(root)) {
        rc = tok_jbad(&ld, "the top level", root, "an object (a tokenizer.json)");
        goto cleanup;
    }
    pthread_once(&tok_onig_once, tok_onig_init);
    if ((rc = tok_build_unicode(t)) < 0 || (rc = tok_load_model(&ld, root)) < 0 ||
        (rc = tok_load_normalizer(&ld, json_object_get(root, "normalizer"), "normalizer")) < 0 ||
        (rc = tok_load_added_index(&ld)) < 0 ||
        (rc = tok_load_pre(&ld, json_object_get(root, "pre_tokenizer"), "pre_tokenizer")) < 0 ||
        (rc = tok_load_post(&ld, json_object_get(root, "post_processor"), "post_processor", &t->prefix_ids,
                            &t->n_prefix, &t->suffix_ids, &t->n_suffix)) < 0 ||
        (rc = tok_load_decoder(&ld, json_object_get(root, "decoder"), "decoder")) < 0 ||
        (rc = tok_load_tables(t)) < 0)
        goto cleanup;
    tok_load_bos_eos(t);
    int bytelevel = 0;
    for (int i = 0; i < t->n_pre; i++)
        bytelevel |= t->pre[i].kind == P_BYTELEVEL;
    snprintf(t->desc, sizeof t->desc, "%s, %d ids (%.250s)",
             bytelevel ? "byte-level BPE" : t->byte_fallback ? "BPE with byte fallback" : "BPE", t->n_ids,
             t->path);
cleanup:
    if (rc == -ENOMEM && (err == NULL || err->msg[0] == '\0' || strstr(err->msg, "memory") == NULL))
        err_set(err, rc, "%s: out of memory loading it", t->path ? t->path : path);
    json_decref(root);
    free(text);
    if (rc < 0) {
        tok_close(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tok_close(tok *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < t->n_norm; i++) {
        tok_pat_free(&t->norm[i].pat);
        free(t->norm[i].content);
    }
    for (int i = 0; i < t->n_pre; i++)
        tok_pat_free(&t->pre[i].pat);
    for (int i = 0; i < t->n_dec; i++) {
        tok_pat_free(&t->dec[i].pat);
        free(t->dec[i].content);
    }
    free(t->path);
    free(t->arena);
    free(t->id_off);
    free(t->id_len);
    free(t->id_flags);
    free(t->vocab.slots);
    free(t->added_content.slots);
    free(t->added_any.slots);
    free(t->added);
    free(t->raw_trie.nodes);
    free(t->norm_trie.nodes);
    free(t->merges.slots);
    free(t->cont_prefix);
    free(t->eow_suffix);
    free(t->cp_id);
    free(t->remap);
    free(t->prefix_ids);
    free(t->suffix_ids);
    free(t->uc_stage1);
    free(t->uc_stage2);
    free(t);
}

int32_t tok_vocab_size(const tok *t) { return t->n_ids; }
int32_t tok_bos(const tok *t) { return t->bos; }
int32_t tok_eos(const tok *t) { return t->eos; }
const char *tok_describe(const tok *t) { return t->desc; }

int32_t tok_id(const tok *t, const char *text)
{
    if (t->kind == TOK_KIND_BYTES) {
        for (int i = 0; i < 3; i++)
            if (strcmp(text, TOK_BYTE_NAMES[i]) == 0)
                return 256 + i;
        return strlen(text) == 1 ? (uint8_t)text[0] : -1;
    }
    return tok_lookup(t, text, strlen(text));
}

int tok_pretokenize(const tok *t, const char *text, size_t len, char **out, size_t *out_len,
                    size_t **piece_lens, size_t *n, rt_err *err)
{
    tok_scratch *sc = NULL;
    tok_buf pieces = {0}, lens = {0};
    tok_ids ids = {0};
    int rc;
    *out = NULL;
    *piece_lens = NULL;
    *out_len = *n = 0;
    if (t->kind == TOK_KIND_BYTES) {
        rc = tok_buf_put(&pieces, text, len);
        if (rc == 0 && len > 0)
            rc = tok_buf_put(&lens, &len, sizeof len);
        goto cleanup;
    }
    if ((rc = tok_scratch_init(t, &sc, err)) < 0)
        return rc;
    sc->collect = &pieces;
    sc->collect_lens = &lens;
    sc->out = &ids;
    const uint8_t *s = (const uint8_t *)text;
    if (!tok_u8_valid(s, len)) {
        size_t m = tok_u8_sanitize(s, len, NULL);
        if ((rc = tok_buf_reserve(&sc->clean, m + 1)) < 0)
            goto cleanup;
        tok_u8_sanitize(s, len, sc->clean.p);
        s = sc->clean.p;
        len = m;
    }
    rc = tok_encode_text(sc, s, len);
cleanup:
    if (rc == 0)
        rc = tok_buf_put(&pieces, "", 0);
    tok_scratch_free(sc);
    free(ids.p);
    if (rc < 0) {
        free(pieces.p);
        free(lens.p);
        return err_set(err, rc, "tokenizer: pre-tokenizing %zu bytes failed (%s)", len, strerror(-rc));
    }
    pieces.p[pieces.len] = '\0';
    *out = (char *)pieces.p;
    *out_len = pieces.len;
    *piece_lens = (size_t *)lens.p;
    *n = lens.len / sizeof(size_t);
    return 0;
}

/* ---- Unicode general categories ---------------------------------------------------- */

/* Runs of code points with one general category: (first code point << 5) |
 * GC_* index, ascending; a run lasts until the next one starts. Generated
 * from Node 20.20 (ICU 78.2, Unicode 17.0) by testing every code point
 * against /^\p{gc=XX}$/u for each of the 30 categories (surrogates: Cs,
 * unmatched: Cn) and keeping the points where the category changes. */
static const uint32_t TOK_GC_RUNS[TOK_GC_NRUNS] = {
    0x00000019, 0x00000416, 0x00000431, 0x00000493, 0x000004B1, 0x0000050D, 0x0000052E, 0x00000551,
    0x00000572, 0x00000591, 0x000005AC, 0x000005D1, 0x00000608, 0x00000751, 0x00000792, 0x000007F1,
    0x00000820, 0x00000B6D, 0x00000B91, 0x00000BAE, 0x00000BD4, 0x00000BEB, 0x00000C14, 0x00000C21,
    0x00000F6D, 0x00000F92, 0x00000FAE, 0x00000FD2, 0x00000FF9, 0x00001416, 0x00001431, 0x00001453,
    0x000014D5, 0x000014F1, 0x00001514, 0x00001535, 0x00001544, 0x0000156F, 0x00001592, 0x000015BA,
    0x000015D5, 0x000015F4, 0x00001615, 0x00001632, 0x0000164A, 0x00001694, 0x000016A1, 0x000016D1,
    0x00001714, 0x0000172A, 0x00001744, 0x00001770, 0x0000178A, 0x000017F1, 0x00001800, 0x00001AF2,
    0x00001B00, 0x00001BE1, 0x00001EF2, 0x00001F01, 0x00002000, 0x00002021, 0x00002040, 0x00002061,
    0x00002080, 0x000020A1, 0x000020C0, 0x000020E1, 0x00002100, 0x00002121, 0x00002140, 0x00002161,
    0x00002180, 0x000021A1, 0x000021C0, 0x000021E1, 0x00002200, 0x00002221, 0x00002240, 0x00002261,
    0x00002280, 0x000022A1, 0x000022C0, 0x000022E1, 0x00002300, 0x00002321, 0x00002340, 0x00002361,
    0x00002380, 0x000023A1, 0x000023C0, 0x000023E1, 0x00002400, 0x00002421, 0x00002440, 0x00002461,
    0x00002480, 0x000024A1, 0x000024C0, 0x000024E1, 0x00002500, 0x00002521, 0x00002540, 0x00002561,
    0x00002580, 0x000025A1, 0x000025C0, 0x000025E1, 0x00002600, 0x00002621, 0x00002640, 0x00002661,
    0x00002680, 0x000026A1, 0x000026C0, 0x000026E1, 0x00002720, 0x00002741, 0x00002760, 0x00002781,
    0x000027A0, 0x000027C1, 0x000027E0, 0x00002801, 0x00002820, 0x00002841, 0x00002860, 0x00002881,
    0x000028A0, 0x000028C1, 0x000028E0, 0x00002901, 0x00002940, 0x00002961, 0x00002980, 0x000029A1,
    0x000029C0, 0x000029E1, 0x00002A00, 0x00002A21, 0x00002A40, 0x00002A61, 0x00002A80, 0x00002AA1,
    0x00002AC0, 0x00002AE1, 0x00002B00, 0x00002B21, 0x00002B40, 0x00002B61, 0x00002B80, 0x00002BA1,
    0x00002BC0, 0x00002BE1, 0x00002C00, 0x00002C21, 0x00002C40, 0x00002C61, 0x00002C80, 0x00002CA1,
    0x00002CC0, 0x00002CE1, 0x00002D00, 0x00002D21, 0x00002D40, 0x00002D61, 0x00002D80, 0x00002DA1,
    0x00002DC0, 0x00002DE1, 0x00002E00, 0x00002E21, 0x00002E40, 0x00002E61, 0x00002E80, 0x00002EA1,
    0x00002EC0, 0x00002EE1, 0x00002F00, 0x00002F41, 0x00002F60, 0x00002F81, 0x00002FA0, 0x00002FC1,
    0x00003020, 0x00003061, 0x00003080, 0x000030A1, 0x000030C0, 0x00003101, 0x00003120, 0x00003181,
    0x000031C0, 0x00003241, 0x00003260, 0x000032A1, 0x000032C0, 0x00003321, 0x00003380, 0x000033C1,
    0x000033E0, 0x00003421, 0x00003440, 0x00003461, 0x00003480, 0x000034A1, 0x000034C0, 0x00003501,
    0x00003520, 0x00003541, 0x00003580, 0x000035A1, 0x000035C0, 0x00003601, 0x00003620, 0x00003681,
    0x000036A0, 0x000036C1, 0x000036E0, 0x00003721, 0x00003764, 0x00003780, 0x000037A1, 0x00003804,
    0x00003880, 0x000038A2, 0x000038C1, 0x000038E0, 0x00003902, 0x00003921, 0x00003940, 0x00003962,
    0x00003981, 0x000039A0, 0x000039C1, 0x000039E0, 0x00003A01, 0x00003A20, 0x00003A41, 0x00003A60,
    0x00003A81, 0x00003AA0, 0x00003AC1, 0x00003AE0, 0x00003B01, 0x00003B20, 0x00003B41, 0x00003B60,
    0x00003B81, 0x00003BC0, 0x00003BE1, 0x00003C00, 0x00003C21, 0x00003C40, 0x00003C61, 0x00003C80,
    0x00003CA1, 0x00003CC0, 0x00003CE1, 0x00003D00, 0x00003D21, 0x00003D40, 0x00003D61, 0x00003D80,
    0x00003DA1, 0x00003DC0, 0x00003DE1, 0x00003E20, 0x00003E42, 0x00003E61, 0x00003E80, 0x00003EA1,
    0x00003EC0, 0x00003F21, 0x00003F40, 0x00003F61, 0x00003F80, 0x00003FA1, 0x00003FC0, 0x00003FE1,
    0x00004000, 0x00004021, 0x00004040, 0x00004061, 0x00004080, 0x000040A1, 0x000040C0, 0x000040E1,
    0x00004100, 0x00004121, 0x00004140, 0x00004161, 0x00004180, 0x000041A1, 0x000041C0, 0x000041E1,
    0x00004200, 0x00004221, 0x00004240, 0x00004261, 0x00004280, 0x000042A1, 0x000042C0, 0x000042E1,
    0x00004300, 0x00004321, 0x00004340, 0x00004361, 0x00004380, 0x000043A1, 0x000043C0, 0x000043E1,
    0x00004400, 0x00004421, 0x00004440, 0x00004461, 0x00004480, 0x000044A1, 0x000044C0, 0x000044E1,
    0x00004500, 0x00004521, 0x00004540, 0x00004561, 0x00004580, 0x000045A1, 0x000045C0, 0x000045E1,
    0x00004600, 0x00004621, 0x00004640, 0x00004661, 0x00004740, 0x00004781, 0x000047A0, 0x000047E1,
    0x00004820, 0x00004841, 0x00004860, 0x000048E1, 0x00004900, 0x00004921, 0x00004940, 0x00004961,
    0x00004980, 0x000049A1, 0x000049C0, 0x000049E1, 0x00005284, 0x000052C1, 0x00005603, 0x00005854,
    0x000058C3, 0x00005A54, 0x00005C03, 0x00005CB4, 0x00005D83, 0x00005DB4, 0x00005DC3, 0x00005DF4,
    0x00006005, 0x00006E00, 0x00006E21, 0x00006E40, 0x00006E61, 0x00006E83, 0x00006EB4, 0x00006EC0,
    0x00006EE1, 0x00006F1D, 0x00006F43, 0x00006F61, 0x00006FD1, 0x00006FE0, 0x0000701D, 0x00007094,
    0x000070C0, 0x000070F1, 0x00007100, 0x0000717D, 0x00007180, 0x000071BD, 0x000071C0, 0x00007201,
    0x00007220, 0x0000745D, 0x00007460, 0x00007581, 0x000079E0, 0x00007A01, 0x00007A40, 0x00007AA1,
    0x00007B00, 0x00007B21, 0x00007B40, 0x00007B61, 0x00007B80, 0x00007BA1, 0x00007BC0, 0x00007BE1,
    0x00007C00, 0x00007C21, 0x00007C40, 0x00007C61, 0x00007C80, 0x00007CA1, 0x00007CC0, 0x00007CE1,
    0x00007D00, 0x00007D21, 0x00007D40, 0x00007D61, 0x00007D80, 0x00007DA1, 0x00007DC0, 0x00007DE1,
    0x00007E80, 0x00007EA1, 0x00007ED2, 0x00007EE0, 0x00007F01, 0x00007F20, 0x00007F61, 0x00007FA0,
    0x00008601, 0x00008C00, 0x00008C21, 0x00008C40, 0x00008C61, 0x00008C80, 0x00008CA1, 0x00008CC0,
    0x00008CE1, 0x00008D00, 0x00008D21, 0x00008D40, 0x00008D61, 0x00008D80, 0x00008DA1, 0x00008DC0,
    0x00008DE1, 0x00008E00, 0x00008E21, 0x00008E40, 0x00008E61, 0x00008E80, 0x00008EA1, 0x00008EC0,
    0x00008EE1, 0x00008F00, 0x00008F21, 0x00008F40, 0x00008F61, 0x00008F80, 0x00008FA1, 0x00008FC0,
    0x00008FE1, 0x00009000, 0x00009021, 0x00009055, 0x00009065, 0x00009107, 0x00009140, 0x00009161,
    0x00009180, 0x000091A1, 0x000091C0, 0x000091E1, 0x00009200, 0x00009221, 0x00009240, 0x00009261,
    0x00009280, 0x000092A1, 0x000092C0, 0x000092E1, 0x00009300, 0x00009321, 0x00009340, 0x00009361,
    0x00009380, 0x000093A1, 0x000093C0, 0x000093E1, 0x00009400, 0x00009421, 0x00009440, 0x00009461,
    0x00009480, 0x000094A1, 0x000094C0, 0x000094E1, 0x00009500, 0x00009521, 0x00009540, 0x00009561,
    0x00009580, 0x000095A1, 0x000095C0, 0x000095E1, 0x00009600, 0x00009621, 0x00009640, 0x00009661,
    0x00009680, 0x000096A1, 0x000096C0, 0x000096E1, 0x00009700, 0x00009721, 0x00009740, 0x00009761,
    0x00009780, 0x000097A1, 0x000097C0, 0x000097E1, 0x00009800, 0x00009841, 0x00009860, 0x00009881,
    0x000098A0, 0x000098C1, 0x000098E0, 0x00009901, 0x00009920, 0x00009941, 0x00009960, 0x00009981,
    0x000099A0, 0x000099C1, 0x00009A00, 0x00009A21, 0x00009A40, 0x00009A61, 0x00009A80, 0x00009AA1,
    0x00009AC0, 0x00009AE1, 0x00009B00, 0x00009B21, 0x00009B40, 0x00009B61, 0x00009B80, 0x00009BA1,
    0x00009BC0, 0x00009BE1, 0x00009C00, 0x00009C21, 0x00009C40, 0x00009C61, 0x00009C80, 0x00009CA1,
    0x00009CC0, 0x00009CE1, 0x00009D00, 0x00009D21, 0x00009D40, 0x00009D61, 0x00009D80, 0x00009DA1,
    0x00009DC0, 0x00009DE1, 0x00009E00, 0x00009E21, 0x00009E40, 0x00009E61, 0x00009E80, 0x00009EA1,
    0x00009EC0, 0x00009EE1, 0x00009F00, 0x00009F21, 0x00009F40, 0x00009F61, 0x00009F80, 0x00009FA1,
    0x00009FC0, 0x00009FE1, 0x0000A000, 0x0000A021, 0x0000A040, 0x0000A061, 0x0000A080, 0x0000A0A1,
    0x0000A0C0, 0x0000A0E1, 0x0000A100, 0x0000A121, 0x0000A140, 0x0000A161, 0x0000A180, 0x0000A1A1,
    0x0000A1C0, 0x0000A1E1, 0x0000A200, 0x0000A221, 0x0000A240, 0x0000A261, 0x0000A280, 0x0000A2A1,
    0x0000A2C0, 0x0000A2E1, 0x0000A300, 0x0000A321, 0x0000A340, 0x0000A361, 0x0000A380, 0x0000A3A1,
    0x0000A3C0, 0x0000A3E1, 0x0000A400, 0x0000A421, 0x0000A440, 0x0000A461, 0x0000A480, 0x0000A4A1,
    0x0000A4C0, 0x0000A4E1, 0x0000A500, 0x0000A521, 0x0000A540, 0x0000A561, 0x0000A580, 0x0000A5A1,
    0x0000A5C0, 0x0000A5E1, 0x0000A61D, 0x0000A620, 0x0000AAFD, 0x0000AB23, 0x0000AB51, 0x0000AC01,
    0x0000B131, 0x0000B14C, 0x0000B17D, 0x0000B1B5, 0x0000B1F3, 0x0000B21D, 0x0000B225, 0x0000B7CC,
    0x0000B7E5, 0x0000B811, 0x0000B825, 0x0000B871, 0x0000B885, 0x0000B8D1, 0x0000B8E5, 0x0000B91D,
    0x0000BA04, 0x0000BD7D, 0x0000BDE4, 0x0000BE71, 0x0000BEBD, 0x0000C01A, 0x0000C0D2, 0x0000C131,
    0x0000C173, 0x0000C191, 0x0000C1D5, 0x0000C205, 0x0000C371, 0x0000C39A, 0x0000C3B1, 0x0000C404,
    0x0000C803, 0x0000C824, 0x0000C965, 0x0000CC08, 0x0000CD51, 0x0000CDC4, 0x0000CE05, 0x0000CE24,
    0x0000DA91, 0x0000DAA4, 0x0000DAC5, 0x0000DBBA, 0x0000DBD5, 0x0000DBE5, 0x0000DCA3, 0x0000DCE5,
    0x0000DD35, 0x0000DD45, 0x0000DDC4, 0x0000DE08, 0x0000DF44, 0x0000DFB5, 0x0000DFE4, 0x0000E011,
    0x0000E1DD, 0x0000E1FA, 0x0000E204, 0x0000E225, 0x0000E244, 0x0000E605, 0x0000E97D, 0x0000E9A4,
    0x0000F4C5, 0x0000F624, 0x0000F65D, 0x0000F808, 0x0000F944, 0x0000FD65, 0x0000FE83, 0x0000FED5,
    0x0000FEF1, 0x0000FF43, 0x0000FF7D, 0x0000FFA5, 0x0000FFD3, 0x00010004, 0x000102C5, 0x00010343,
    0x00010365, 0x00010483, 0x000104A5, 0x00010503, 0x00010525, 0x000105DD, 0x00010611, 0x000107FD,
    0x00010804, 0x00010B25, 0x00010B9D, 0x00010BD1, 0x00010BFD, 0x00010C04, 0x00010D7D, 0x00010E04,
    0x00011114, 0x00011124, 0x0001121A, 0x0001125D, 0x000112E5, 0x00011404, 0x00011923, 0x00011945,
    0x00011C5A, 0x00011C65, 0x00012066, 0x00012084, 0x00012745, 0x00012766, 0x00012785, 0x000127A4,
    0x000127C6, 0x00012825, 0x00012926, 0x000129A5, 0x000129C6, 0x00012A04, 0x00012A25, 0x00012B04,
    0x00012C45, 0x00012C91, 0x00012CC8, 0x00012E11, 0x00012E23, 0x00012E44, 0x00013025, 0x00013046,
    0x0001309D, 0x000130A4, 0x000131BD, 0x000131E4, 0x0001323D, 0x00013264, 0x0001353D, 0x00013544,
    0x0001363D, 0x00013644, 0x0001367D, 0x000136C4, 0x0001375D, 0x00013785, 0x000137A4, 0x000137C6,
    0x00013825, 0x000138BD, 0x000138E6, 0x0001393D, 0x00013966, 0x000139A5, 0x000139C4, 0x000139FD,
    0x00013AE6, 0x00013B1D, 0x00013B84, 0x00013BDD, 0x00013BE4, 0x00013C45, 0x00013C9D, 0x00013CC8,
    0x00013E04, 0x00013E53, 0x00013E8A, 0x00013F55, 0x00013F73, 0x00013F84, 0x00013FB1, 0x00013FC5,
    0x00013FFD, 0x00014025, 0x00014066, 0x0001409D, 0x000140A4, 0x0001417D, 0x000141E4, 0x0001423D,
    0x00014264, 0x0001453D, 0x00014544, 0x0001463D, 0x00014644, 0x0001469D, 0x000146A4, 0x000146FD,
    0x00014704, 0x0001475D, 0x00014785, 0x000147BD, 0x000147C6, 0x00014825, 0x0001487D, 0x000148E5,
    0x0001493D, 0x00014965, 0x000149DD, 0x00014A25, 0x00014A5D, 0x00014B24, 0x00014BBD, 0x00014BC4,
    0x00014BFD, 0x00014CC8, 0x00014E05, 0x00014E44, 0x00014EA5, 0x00014ED1, 0x00014EFD, 0x00015025,
    0x00015066, 0x0001509D, 0x000150A4, 0x000151DD, 0x000151E4, 0x0001525D, 0x00015264, 0x0001553D,
    0x00015544, 0x0001563D, 0x00015644, 0x0001569D, 0x000156A4, 0x0001575D, 0x00015785, 0x000157A4,
    0x000157C6, 0x00015825, 0x000158DD, 0x000158E5, 0x00015926, 0x0001595D, 0x00015966, 0x000159A5,
    0x000159DD, 0x00015A04, 0x00015A3D, 0x00015C04, 0x00015C45, 0x00015C9D, 0x00015CC8, 0x00015E11,
    0x00015E33, 0x00015E5D, 0x00015F24, 0x00015F45, 0x0001601D, 0x00016025, 0x00016046, 0x0001609D,
    0x000160A4, 0x000161BD, 0x000161E4, 0x0001623D, 0x00016264, 0x0001653D, 0x00016544, 0x0001663D,
    0x00016644, 0x0001669D, 0x000166A4, 0x0001675D, 0x00016785, 0x000167A4, 0x000167C6, 0x000167E5,
    0x00016806, 0x00016825, 0x000168BD, 0x000168E6, 0x0001693D, 0x00016966, 0x000169A5, 0x000169DD,
    0x00016AA5, 0x00016AE6, 0x00016B1D, 0x00016B84, 0x00016BDD, 0x00016BE4, 0x00016C45, 0x00016C9D,
    0x00016CC8, 0x00016E15, 0x00016E24, 0x00016E4A, 0x00016F1D, 0x00017045, 0x00017064, 0x0001709D,
    0x000170A4, 0x0001717D, 0x000171C4, 0x0001723D, 0x00017244, 0x000172DD, 0x00017324, 0x0001737D,
    0x00017384, 0x000173BD, 0x000173C4, 0x0001741D, 0x00017464, 0x000174BD, 0x00017504, 0x0001757D,
    0x000175C4, 0x0001775D, 0x000177C6, 0x00017805, 0x00017826, 0x0001787D, 0x000178C6, 0x0001793D,
    0x00017946, 0x000179A5, 0x000179DD, 0x00017A04, 0x00017A3D, 0x00017AE6, 0x00017B1D, 0x00017CC8,
    0x00017E0A, 0x00017E75, 0x00017F33, 0x00017F55, 0x00017F7D, 0x00018005, 0x00018026, 0x00018085,
    0x000180A4, 0x000181BD, 0x000181C4, 0x0001823D, 0x00018244, 0x0001853D, 0x00018544, 0x0001875D,
    0x00018785, 0x000187A4, 0x000187C5, 0x00018826, 0x000188BD, 0x000188C5, 0x0001893D, 0x00018945,
    0x000189DD, 0x00018AA5, 0x00018AFD, 0x00018B04, 0x00018B7D, 0x00018B84, 0x00018BDD, 0x00018C04,
    0x00018C45, 0x00018C9D, 0x00018CC8, 0x00018E1D, 0x00018EF1, 0x00018F0A, 0x00018FF5, 0x00019004,
    0x00019025, 0x00019046, 0x00019091, 0x000190A4, 0x000191BD, 0x000191C4, 0x0001923D, 0x00019244,
    0x0001953D, 0x00019544, 0x0001969D, 0x000196A4, 0x0001975D, 0x00019785, 0x000197A4, 0x000197C6,
    0x000197E5, 0x00019806, 0x000198BD, 0x000198C5, 0x000198E6, 0x0001993D, 0x00019946, 0x00019985,
    0x000199DD, 0x00019AA6, 0x00019AFD, 0x00019B84, 0x00019BFD, 0x00019C04, 0x00019C45, 0x00019C9D,
    0x00019CC8, 0x00019E1D, 0x00019E24, 0x00019E66, 0x00019E9D, 0x0001A005, 0x0001A046, 0x0001A084,
    0x0001A1BD, 0x0001A1C4, 0x0001A23D, 0x0001A244, 0x0001A765, 0x0001A7A4, 0x0001A7C6, 0x0001A825,
    0x0001A8BD, 0x0001A8C6, 0x0001A93D, 0x0001A946, 0x0001A9A5, 0x0001A9C4, 0x0001A9F5, 0x0001AA1D,
    0x0001AA84, 0x0001AAE6, 0x0001AB0A, 0x0001ABE4, 0x0001AC45, 0x0001AC9D, 0x0001ACC8, 0x0001AE0A,
    0x0001AF35, 0x0001AF44, 0x0001B01D, 0x0001B025, 0x0001B046, 0x0001B09D, 0x0001B0A4, 0x0001B2FD,
    0x0001B344, 0x0001B65D, 0x0001B664, 0x0001B79D, 0x0001B7A4, 0x0001B7DD, 0x0001B804, 0x0001B8FD,
    0x0001B945, 0x0001B97D, 0x0001B9E6, 0x0001BA45, 0x0001BABD, 0x0001BAC5, 0x0001BAFD, 0x0001BB06,
    0x0001BC1D, 0x0001BCC8, 0x0001BE1D, 0x0001BE46, 0x0001BE91, 0x0001BEBD, 0x0001C024, 0x0001C625,
    0x0001C644, 0x0001C685, 0x0001C77D, 0x0001C7F3, 0x0001C804, 0x0001C8C3, 0x0001C8E5, 0x0001C9F1,
    0x0001CA08, 0x0001CB51, 0x0001CB9D, 0x0001D024, 0x0001D07D, 0x0001D084, 0x0001D0BD, 0x0001D0C4,
    0x0001D17D, 0x0001D184, 0x0001D49D, 0x0001D4A4, 0x0001D4DD, 0x0001D4E4, 0x0001D625, 0x0001D644,
    0x0001D685, 0x0001D7A4, 0x0001D7DD, 0x0001D804, 0x0001D8BD, 0x0001D8C3, 0x0001D8FD, 0x0001D905,
    0x0001D9FD, 0x0001DA08, 0x0001DB5D, 0x0001DB84, 0x0001DC1D, 0x0001E004, 0x0001E035, 0x0001E091,
    0x0001E275, 0x0001E291, 0x0001E2B5, 0x0001E305, 0x0001E355, 0x0001E408, 0x0001E54A, 0x0001E695,
    0x0001E6A5, 0x0001E6D5, 0x0001E6E5, 0x0001E715, 0x0001E725, 0x0001E74D, 0x0001E76E, 0x0001E78D,
    0x0001E7AE, 0x0001E7C6, 0x0001E804, 0x0001E91D, 0x0001E924, 0x0001EDBD, 0x0001EE25, 0x0001EFE6,
    0x0001F005, 0x0001F0B1, 0x0001F0C5, 0x0001F104, 0x0001F1A5, 0x0001F31D, 0x0001F325, 0x0001F7BD,
    0x0001F7D5, 0x0001F8C5, 0x0001F8F5, 0x0001F9BD, 0x0001F9D5, 0x0001FA11, 0x0001FAB5, 0x0001FB31,
    0x0001FB7D, 0x00020004, 0x00020566, 0x000205A5, 0x00020626, 0x00020645, 0x00020706, 0x00020725,
    0x00020766, 0x000207A5, 0x000207E4, 0x00020808, 0x00020951, 0x00020A04, 0x00020AC6, 0x00020B05,
    0x00020B44, 0x00020BC5, 0x00020C24, 0x00020C46, 0x00020CA4, 0x00020CE6, 0x00020DC4, 0x00020E25,
    0x00020EA4, 0x00021045, 0x00021066, 0x000210A5, 0x000210E6, 0x000211A5, 0x000211C4, 0x000211E6,
    0x00021208, 0x00021346, 0x000213A5, 0x000213D5, 0x00021400, 0x000218DD, 0x000218E0, 0x0002191D,
    0x000219A0, 0x000219DD, 0x00021A01, 0x00021F71, 0x00021F83, 0x00021FA1, 0x00022004, 0x0002493D,
    0x00024944, 0x000249DD, 0x00024A04, 0x00024AFD, 0x00024B04, 0x00024B3D, 0x00024B44, 0x00024BDD,
    0x00024C04, 0x0002513D, 0x00025144, 0x000251DD, 0x00025204, 0x0002563D, 0x00025644, 0x000256DD,
    0x00025704, 0x000257FD, 0x00025804, 0x0002583D, 0x00025844, 0x000258DD, 0x00025904, 0x00025AFD,
    0x00025B04, 0x0002623D, 0x00026244, 0x000262DD, 0x00026304, 0x00026B7D, 0x00026BA5, 0x00026C11,
    0x00026D2A, 0x00026FBD, 0x00027004, 0x00027215, 0x0002735D, 0x00027400, 0x00027EDD, 0x00027F01,
    0x00027FDD, 0x0002800C, 0x00028024, 0x0002CDB5, 0x0002CDD1, 0x0002CDE4, 0x0002D016, 0x0002D024,
    0x0002D36D, 0x0002D38E, 0x0002D3BD, 0x0002D404, 0x0002DD71, 0x0002DDC9, 0x0002DE24, 0x0002DF3D,
    0x0002E004, 0x0002E245, 0x0002E2A6, 0x0002E2DD, 0x0002E3E4, 0x0002E645, 0x0002E686, 0x0002E6B1,
    0x0002E6FD, 0x0002E804, 0x0002EA45, 0x0002EA9D, 0x0002EC04, 0x0002EDBD, 0x0002EDC4, 0x0002EE3D,
    0x0002EE45, 0x0002EE9D, 0x0002F004, 0x0002F685, 0x0002F6C6, 0x0002F6E5, 0x0002F7C6, 0x0002F8C5,
    0x0002F8E6, 0x0002F925, 0x0002FA91, 0x0002FAE3, 0x0002FB11, 0x0002FB73, 0x0002FB84, 0x0002FBA5,
    0x0002FBDD, 0x0002FC08, 0x0002FD5D, 0x0002FE0A, 0x0002FF5D, 0x00030011, 0x000300CC, 0x000300F1,
    0x00030165, 0x000301DA, 0x000301E5, 0x00030208, 0x0003035D, 0x00030404, 0x00030863, 0x00030884,
    0x00030F3D, 0x00031004, 0x000310A5, 0x000310E4, 0x00031525, 0x00031544, 0x0003157D, 0x00031604,
    0x00031EDD, 0x00032004, 0x000323FD, 0x00032405, 0x00032466, 0x000324E5, 0x00032526, 0x0003259D,
    0x00032606, 0x00032645, 0x00032666, 0x00032725, 0x0003279D, 0x00032815, 0x0003283D, 0x00032891,
    0x000328C8, 0x00032A04, 0x00032DDD, 0x00032E04, 0x00032EBD, 0x00033004, 0x0003359D, 0x00033604,
    0x0003395D, 0x00033A08, 0x00033B4A, 0x00033B7D, 0x00033BD5, 0x00034004, 0x000342E5, 0x00034326,
    0x00034365, 0x0003439D, 0x000343D1, 0x00034404, 0x00034AA6, 0x00034AC5, 0x00034AE6, 0x00034B05,
    0x00034BFD, 0x00034C05, 0x00034C26, 0x00034C45, 0x00034C66, 0x00034CA5, 0x00034DA6, 0x00034E65,
    0x00034FBD, 0x00034FE5, 0x00035008, 0x0003515D, 0x00035208, 0x0003535D, 0x00035411, 0x000354E3,
    0x00035511, 0x000355DD, 0x00035605, 0x000357C7, 0x000357E5, 0x00035BDD, 0x00035C05, 0x00035D9D,
    0x00036005, 0x00036086, 0x000360A4, 0x00036685, 0x000366A6, 0x000366C5, 0x00036766, 0x00036785,
    0x000367A6, 0x00036845, 0x00036866, 0x000368A4, 0x000369BD, 0x000369D1, 0x00036A08, 0x00036B51,
    0x00036C35, 0x00036D65, 0x00036E95, 0x00036FB1, 0x00037005, 0x00037046, 0x00037064, 0x00037426,
    0x00037445, 0x000374C6, 0x00037505, 0x00037546, 0x00037565, 0x000375C4, 0x00037608, 0x00037744,
    0x00037CC5, 0x00037CE6, 0x00037D05, 0x00037D46, 0x00037DA5, 0x00037DC6, 0x00037DE5, 0x00037E46,
    0x00037E9D, 0x00037F91, 0x00038004, 0x00038486, 0x00038585, 0x00038686, 0x000386C5, 0x0003871D,
    0x00038771, 0x00038808, 0x0003895D, 0x000389A4, 0x00038A08, 0x00038B44, 0x00038F03, 0x00038FD1,
    0x00039001, 0x00039120, 0x00039141, 0x0003917D, 0x00039200, 0x0003977D, 0x000397A0, 0x00039811,
    0x0003991D, 0x00039A05, 0x00039A71, 0x00039A85, 0x00039C26, 0x00039C45, 0x00039D24, 0x00039DA5,
    0x00039DC4, 0x00039E85, 0x00039EA4, 0x00039EE6, 0x00039F05, 0x00039F44, 0x00039F7D, 0x0003A001,
    0x0003A583, 0x0003AD61, 0x0003AF03, 0x0003AF21, 0x0003B363, 0x0003B805, 0x0003C000, 0x0003C021,
    0x0003C040, 0x0003C061, 0x0003C080, 0x0003C0A1, 0x0003C0C0, 0x0003C0E1, 0x0003C100, 0x0003C121,
    0x0003C140, 0x0003C161, 0x0003C180, 0x0003C1A1, 0x0003C1C0, 0x0003C1E1, 0x0003C200, 0x0003C221,
    0x0003C240, 0x0003C261, 0x0003C280, 0x0003C2A1, 0x0003C2C0, 0x0003C2E1, 0x0003C300, 0x0003C321,
    0x0003C340, 0x0003C361, 0x0003C380, 0x0003C3A1, 0x0003C3C0, 0x0003C3E1, 0x0003C400, 0x0003C421,
    0x0003C440, 0x0003C461, 0x0003C480, 0x0003C4A1, 0x0003C4C0, 0x0003C4E1, 0x0003C500, 0x0003C521,
    0x0003C540, 0x0003C561, 0x0003C580, 0x0003C5A1, 0x0003C5C0, 0x0003C5E1, 0x0003C600, 0x0003C621,
    0x0003C640, 0x0003C661, 0x0003C680, 0x0003C6A1, 0x0003C6C0, 0x0003C6E1, 0x0003C700, 0x0003C721,
    0x0003C740, 0x0003C761, 0x0003C780, 0x0003C7A1, 0x0003C7C0, 0x0003C7E1, 0x0003C800, 0x0003C821,
    0x0003C840, 0x0003C861, 0x0003C880, 0x0003C8A1, 0x0003C8C0, 0x0003C8E1, 0x0003C900, 0x0003C921,
    0x0003C940, 0x0003C961, 0x0003C980, 0x0003C9A1, 0x0003C9C0, 0x0003C9E1, 0x0003CA00, 0x0003CA21,
    0x0003CA40, 0x0003CA61, 0x0003CA80, 0x0003CAA1, 0x0003CAC0, 0x0003CAE1, 0x0003CB00, 0x0003CB21,
    0x0003CB40, 0x0003CB61, 0x0003CB80, 0x0003CBA1, 0x0003CBC0, 0x0003CBE1, 0x0003CC00, 0x0003CC21,
    0x0003CC40, 0x0003CC61, 0x0003CC80, 0x0003CCA1, 0x0003CCC0, 0x0003CCE1, 0x0003CD00, 0x0003CD21,
    0x0003CD40, 0x0003CD61, 0x0003CD80, 0x0003CDA1, 0x0003CDC0, 0x0003CDE1, 0x0003CE00, 0x0003CE21,
    0x0003CE40, 0x0003CE61, 0x0003CE80, 0x0003CEA1, 0x0003CEC0, 0x0003CEE1, 0x0003CF00, 0x0003CF21,
    0x0003CF40, 0x0003CF61, 0x0003CF80, 0x0003CFA1, 0x0003CFC0, 0x0003CFE1, 0x0003D000, 0x0003D021,
    0x0003D040, 0x0003D061, 0x0003D080, 0x0003D0A1, 0x0003D0C0, 0x0003D0E1, 0x0003D100, 0x0003D121,
    0x0003D140, 0x0003D161, 0x0003D180, 0x0003D1A1, 0x0003D1C0, 0x0003D1E1, 0x0003D200, 0x0003D221,
    0x0003D240, 0x0003D261, 0x0003D280, 0x0003D2A1, 0x0003D3C0, 0x0003D3E1, 0x0003D400, 0x0003D421,
    0x0003D440, 0x0003D461, 0x0003D480, 0x0003D4A1, 0x0003D4C0, 0x0003D4E1, 0x0003D500, 0x0003D521,
    0x0003D540, 0x0003D561, 0x0003D580, 0x0003D5A1, 0x0003D5C0, 0x0003D5E1, 0x0003D600, 0x0003D621,
    0x0003D640, 0x0003D661, 0x0003D680, 0x0003D6A1, 0x0003D6C0, 0x0003D6E1, 0x0003D700, 0x0003D721,
    0x0003D740, 0x0003D761, 0x0003D780, 0x0003D7A1, 0x0003D7C0, 0x0003D7E1, 0x0003D800, 0x0003D821,
    0x0003D840, 0x0003D861, 0x0003D880, 0x0003D8A1, 0x0003D8C0, 0x0003D8E1, 0x0003D900, 0x0003D921,
    0x0003D940, 0x0003D961, 0x0003D980, 0x0003D9A1, 0x0003D9C0, 0x0003D9E1, 0x0003DA00, 0x0003DA21,
    0x0003DA40, 0x0003DA61, 0x0003DA80, 0x0003DAA1, 0x0003DAC0, 0x0003DAE1, 0x0003DB00, 0x0003DB21,
    0x0003DB40, 0x0003DB61, 0x0003DB80, 0x0003DBA1, 0x0003DBC0, 0x0003DBE1, 0x0003DC00, 0x0003DC21,
    0x0003DC40, 0x0003DC61, 0x0003DC80, 0x0003DCA1, 0x0003DCC0, 0x0003DCE1, 0x0003DD00, 0x0003DD21,
    0x0003DD40, 0x0003DD61, 0x0003DD80, 0x0003DDA1, 0x0003DDC0, 0x0003DDE1, 0x0003DE00, 0x0003DE21,
    0x0003DE40, 0x0003DE61, 0x0003DE80, 0x0003DEA1, 0x0003DEC0, 0x0003DEE1, 0x0003DF00, 0x0003DF21,
    0x0003DF40, 0x0003DF61, 0x0003DF80, 0x0003DFA1, 0x0003DFC0, 0x0003DFE1, 0x0003E100, 0x0003E201,
    0x0003E2DD, 0x0003E300, 0x0003E3DD, 0x0003E401, 0x0003E500, 0x0003E601, 0x0003E700, 0x0003E801,
    0x0003E8DD, 0x0003E900, 0x0003E9DD, 0x0003EA01, 0x0003EB1D, 0x0003EB20, 0x0003EB5D, 0x0003EB60,
    0x0003EB9D, 0x0003EBA0, 0x0003EBDD, 0x0003EBE0, 0x0003EC01, 0x0003ED00, 0x0003EE01, 0x0003EFDD,
    0x0003F001, 0x0003F102, 0x0003F201, 0x0003F302, 0x0003F401, 0x0003F502, 0x0003F601, 0x0003F6BD,
    0x0003F6C1, 0x0003F700, 0x0003F782, 0x0003F7B4, 0x0003F7C1, 0x0003F7F4, 0x0003F841, 0x0003F8BD,
    0x0003F8C1, 0x0003F900, 0x0003F982, 0x0003F9B4, 0x0003FA01, 0x0003FA9D, 0x0003FAC1, 0x0003FB00,
    0x0003FB9D, 0x0003FBB4, 0x0003FC01, 0x0003FD00, 0x0003FDB4, 0x0003FE1D, 0x0003FE41, 0x0003FEBD,
    0x0003FEC1, 0x0003FF00, 0x0003FF82, 0x0003FFB4, 0x0003FFFD, 0x00040016, 0x0004017A, 0x0004020C,
    0x000402D1, 0x0004030F, 0x00040330, 0x0004034D, 0x0004036F, 0x000403B0, 0x000403CD, 0x000403EF,
    0x00040411, 0x00040517, 0x00040538, 0x0004055A, 0x000405F6, 0x00040611, 0x0004072F, 0x00040750,
    0x00040771, 0x000407EB, 0x00040831, 0x00040892, 0x000408AD, 0x000408CE, 0x000408F1, 0x00040A52,
    0x00040A71, 0x00040A8B, 0x00040AB1, 0x00040BF6, 0x00040C1A, 0x00040CBD, 0x00040CDA, 0x00040E0A,
    0x00040E23, 0x00040E5D, 0x00040E8A, 0x00040F52, 0x00040FAD, 0x00040FCE, 0x00040FE3, 0x0004100A,
    0x00041152, 0x000411AD, 0x000411CE, 0x000411FD, 0x00041203, 0x000413BD, 0x00041413, 0x0004185D,
    0x00041A05, 0x00041BA7, 0x00041C25, 0x00041C47, 0x00041CA5, 0x00041E3D, 0x00042015, 0x00042040,
    0x00042075, 0x000420E0, 0x00042115, 0x00042141, 0x00042160, 0x000421C1, 0x00042200, 0x00042261,
    0x00042295, 0x000422A0, 0x000422D5, 0x00042312, 0x00042320, 0x000423D5, 0x00042480, 0x000424B5,
    0x000424C0, 0x000424F5, 0x00042500, 0x00042535, 0x00042540, 0x000425D5, 0x000425E1, 0x00042600,
    0x00042681, 0x000426A4, 0x00042721, 0x00042755, 0x00042781, 0x000427C0, 0x00042812, 0x000428A0,
    0x000428C1, 0x00042955, 0x00042972, 0x00042995, 0x000429C1, 0x000429F5, 0x00042A0A, 0x00042C09,
    0x00043060, 0x00043081, 0x000430A9, 0x0004312A, 0x00043155, 0x0004319D, 0x00043212, 0x000432B5,
    0x00043352, 0x00043395, 0x00043412, 0x00043435, 0x00043472, 0x00043495, 0x000434D2, 0x000434F5,
    0x000435D2, 0x000435F5, 0x000439D2, 0x00043A15, 0x00043A52, 0x00043A75, 0x00043A92, 0x00043AB5,
    0x00043E92, 0x00046015, 0x0004610D, 0x0004612E, 0x0004614D, 0x0004616E, 0x00046195, 0x00046412,
    0x00046455, 0x0004652D, 0x0004654E, 0x00046575, 0x00046F92, 0x00046FB5, 0x00047372, 0x00047695,
    0x00047B92, 0x00047C55, 0x0004855D, 0x00048815, 0x0004897D, 0x00048C0A, 0x00049395, 0x00049D4A,
    0x0004A015, 0x0004B6F2, 0x0004B715, 0x0004B832, 0x0004B855, 0x0004BF12, 0x0004C015, 0x0004CDF2,
    0x0004CE15, 0x0004ED0D, 0x0004ED2E, 0x0004ED4D, 0x0004ED6E, 0x0004ED8D, 0x0004EDAE, 0x0004EDCD,
    0x0004EDEE, 0x0004EE0D, 0x0004EE2E, 0x0004EE4D, 0x0004EE6E, 0x0004EE8D, 0x0004EEAE, 0x0004EECA,
    0x0004F295, 0x0004F812, 0x0004F8AD, 0x0004F8CE, 0x0004F8F2, 0x0004FCCD, 0x0004FCEE, 0x0004FD0D,
    0x0004FD2E, 0x0004FD4D, 0x0004FD6E, 0x0004FD8D, 0x0004FDAE, 0x0004FDCD, 0x0004FDEE, 0x0004FE12,
    0x00050015, 0x00052012, 0x0005306D, 0x0005308E, 0x000530AD, 0x000530CE, 0x000530ED, 0x0005310E,
    0x0005312D, 0x0005314E, 0x0005316D, 0x0005318E, 0x000531AD, 0x000531CE, 0x000531ED, 0x0005320E,
    0x0005322D, 0x0005324E, 0x0005326D, 0x0005328E, 0x000532AD, 0x000532CE, 0x000532ED, 0x0005330E,
    0x00053332, 0x00053B0D, 0x00053B2E, 0x00053B4D, 0x00053B6E, 0x00053B92, 0x00053F8D, 0x00053FAE,
    0x00053FD2, 0x00056015, 0x00056612, 0x000568B5, 0x000568F2, 0x000569B5, 0x00056E9D, 0x00056ED5,
    0x00058000, 0x00058601, 0x00058C00, 0x00058C21, 0x00058C40, 0x00058CA1, 0x00058CE0, 0x00058D01,
    0x00058D20, 0x00058D41, 0x00058D60, 0x00058D81, 0x00058DA0, 0x00058E21, 0x00058E40, 0x00058E61,
    0x00058EA0, 0x00058EC1, 0x00058F83, 0x00058FC0, 0x00059021, 0x00059040, 0x00059061, 0x00059080,
    0x000590A1, 0x000590C0, 0x000590E1, 0x00059100, 0x00059121, 0x00059140, 0x00059161, 0x00059180,
    0x000591A1, 0x000591C0, 0x000591E1, 0x00059200, 0x00059221, 0x00059240, 0x00059261, 0x00059280,
    0x000592A1, 0x000592C0, 0x000592E1, 0x00059300, 0x00059321, 0x00059340, 0x00059361, 0x00059380,
    0x000593A1, 0x000593C0, 0x000593E1, 0x00059400, 0x00059421, 0x00059440, 0x00059461, 0x00059480,
    0x000594A1, 0x000594C0, 0x000594E1, 0x00059500, 0x00059521, 0x00059540, 0x00059561, 0x00059580,
    0x000595A1, 0x000595C0, 0x000595E1, 0x00059600, 0x00059621, 0x00059640, 0x00059661, 0x00059680,
    0x000596A1, 0x000596C0, 0x000596E1, 0x00059700, 0x00059721, 0x00059740, 0x00059761, 0x00059780,
    0x000597A1, 0x000597C0, 0x000597E1, 0x00059800, 0x00059821, 0x00059840, 0x00059861, 0x00059880,
    0x000598A1, 0x000598C0, 0x000598E1, 0x00059900, 0x00059921, 0x00059940, 0x00059961, 0x00059980,
    0x000599A1, 0x000599C0, 0x000599E1, 0x00059A00, 0x00059A21, 0x00059A40, 0x00059A61, 0x00059A80,
    0x00059AA1, 0x00059AC0, 0x00059AE1, 0x00059B00, 0x00059B21, 0x00059B40, 0x00059B61, 0x00059B80,
    0x00059BA1, 0x00059BC0, 0x00059BE1, 0x00059C00, 0x00059C21, 0x00059C40, 0x00059C61, 0x00059CB5,
    0x00059D60, 0x00059D81, 0x00059DA0, 0x00059DC1, 0x00059DE5, 0x00059E40, 0x00059E61, 0x00059E9D,
    0x00059F31, 0x00059FAA, 0x00059FD1, 0x0005A001, 0x0005A4DD, 0x0005A4E1, 0x0005A51D, 0x0005A5A1,
    0x0005A5DD, 0x0005A604, 0x0005AD1D, 0x0005ADE3, 0x0005AE11, 0x0005AE3D, 0x0005AFE5, 0x0005B004,
    0x0005B2FD, 0x0005B404, 0x0005B4FD, 0x0005B504, 0x0005B5FD, 0x0005B604, 0x0005B6FD, 0x0005B704,
    0x0005B7FD, 0x0005B804, 0x0005B8FD, 0x0005B904, 0x0005B9FD, 0x0005BA04, 0x0005BAFD, 0x0005BB04,
    0x0005BBFD, 0x0005BC05, 0x0005C011, 0x0005C04F, 0x0005C070, 0x0005C08F, 0x0005C0B0, 0x0005C0D1,
    0x0005C12F, 0x0005C150, 0x0005C171, 0x0005C18F, 0x0005C1B0, 0x0005C1D1, 0x0005C2EC, 0x0005C311,
    0x0005C34C, 0x0005C371, 0x0005C38F, 0x0005C3B0, 0x0005C3D1, 0x0005C40F, 0x0005C430, 0x0005C44D,
    0x0005C46E, 0x0005C48D, 0x0005C4AE, 0x0005C4CD, 0x0005C4EE, 0x0005C50D, 0x0005C52E, 0x0005C551,
    0x0005C5E3, 0x0005C611, 0x0005C74C, 0x0005C791, 0x0005C80C, 0x0005C831, 0x0005C84D, 0x0005C871,
    0x0005CA15, 0x0005CA51, 0x0005CAAD, 0x0005CACE, 0x0005CAED, 0x0005CB0E, 0x0005CB2D, 0x0005CB4E,
    0x0005CB6D, 0x0005CB8E, 0x0005CBAC, 0x0005CBDD, 0x0005D015, 0x0005D35D, 0x0005D375, 0x0005DE9D,
    0x0005E015, 0x0005FADD, 0x0005FE15, 0x00060016, 0x00060031, 0x00060095, 0x000600A3, 0x000600C4,
    0x000600E9, 0x0006010D, 0x0006012E, 0x0006014D, 0x0006016E, 0x0006018D, 0x000601AE, 0x000601CD,
    0x000601EE, 0x0006020D, 0x0006022E, 0x00060255, 0x0006028D, 0x000602AE, 0x000602CD, 0x000602EE,
    0x0006030D, 0x0006032E, 0x0006034D, 0x0006036E, 0x0006038C, 0x000603AD, 0x000603CE, 0x00060415,
    0x00060429, 0x00060545, 0x000605C6, 0x0006060C, 0x00060623, 0x000606D5, 0x00060709, 0x00060763,
    0x00060784, 0x000607B1, 0x000607D5, 0x0006081D, 0x00060824, 0x000612FD, 0x00061325, 0x00061374,
    0x000613A3, 0x000613E4, 0x0006140C, 0x00061424, 0x00061F71, 0x00061F83, 0x00061FE4, 0x0006201D,
    0x000620A4, 0x0006261D, 0x00062624, 0x000631FD, 0x00063215, 0x0006324A, 0x000632D5, 0x00063404,
    0x00063815, 0x00063CDD, 0x00063DF5, 0x00063E04, 0x00064015, 0x000643FD, 0x0006440A, 0x00064555,
    0x0006490A, 0x00064A15, 0x00064A2A, 0x00064C15, 0x0006500A, 0x00065155, 0x0006562A, 0x00065815,
    0x00068004, 0x0009B815, 0x0009C004, 0x001402A3, 0x001402C4, 0x001491BD, 0x00149215, 0x001498FD,
    0x00149A04, 0x00149F03, 0x00149FD1, 0x0014A004, 0x0014C183, 0x0014C1B1, 0x0014C204, 0x0014C408,
    0x0014C544, 0x0014C59D, 0x0014C800, 0x0014C821, 0x0014C840, 0x0014C861, 0x0014C880, 0x0014C8A1,
    0x0014C8C0, 0x0014C8E1, 0x0014C900, 0x0014C921, 0x0014C940, 0x0014C961, 0x0014C980, 0x0014C9A1,
    0x0014C9C0, 0x0014C9E1, 0x0014CA00, 0x0014CA21, 0x0014CA40, 0x0014CA61, 0x0014CA80, 0x0014CAA1,
    0x0014CAC0, 0x0014CAE1, 0x0014CB00, 0x0014CB21, 0x0014CB40, 0x0014CB61, 0x0014CB80, 0x0014CBA1,
    0x0014CBC0, 0x0014CBE1, 0x0014CC00, 0x0014CC21, 0x0014CC40, 0x0014CC61, 0x0014CC80, 0x0014CCA1,
    0x0014CCC0, 0x0014CCE1, 0x0014CD00, 0x0014CD21, 0x0014CD40, 0x0014CD61, 0x0014CD80, 0x0014CDA1,
    0x0014CDC4, 0x0014CDE5, 0x0014CE07, 0x0014CE71, 0x0014CE85, 0x0014CFD1, 0x0014CFE3, 0x0014D000,
    0x0014D021, 0x0014D040, 0x0014D061, 0x0014D080, 0x0014D0A1, 0x0014D0C0, 0x0014D0E1, 0x0014D100,
    0x0014D121, 0x0014D140, 0x0014D161, 0x0014D180, 0x0014D1A1, 0x0014D1C0, 0x0014D1E1, 0x0014D200,
    0x0014D221, 0x0014D240, 0x0014D261, 0x0014D280, 0x0014D2A1, 0x0014D2C0, 0x0014D2E1, 0x0014D300,
    0x0014D321, 0x0014D340, 0x0014D361, 0x0014D383, 0x0014D3C5, 0x0014D404, 0x0014DCC9, 0x0014DE05,
    0x0014DE51, 0x0014DF1D, 0x0014E014, 0x0014E2E3, 0x0014E414, 0x0014E440, 0x0014E461, 0x0014E480,
    0x0014E4A1, 0x0014E4C0, 0x0014E4E1, 0x0014E500, 0x0014E521, 0x0014E540, 0x0014E561, 0x0014E580,
    0x0014E5A1, 0x0014E5C0, 0x0014E5E1, 0x0014E640, 0x0014E661, 0x0014E680, 0x0014E6A1, 0x0014E6C0,
    0x0014E6E1, 0x0014E700, 0x0014E721, 0x0014E740, 0x0014E761, 0x0014E780, 0x0014E7A1, 0x0014E7C0,
    0x0014E7E1, 0x0014E800, 0x0014E821, 0x0014E840, 0x0014E861, 0x0014E880, 0x0014E8A1, 0x0014E8C0,
    0x0014E8E1, 0x0014E900, 0x0014E921, 0x0014E940, 0x0014E961, 0x0014E980, 0x0014E9A1, 0x0014E9C0,
    0x0014E9E1, 0x0014EA00, 0x0014EA21, 0x0014EA40, 0x0014EA61, 0x0014EA80, 0x0014EAA1, 0x0014EAC0,
    0x0014EAE1, 0x0014EB00, 0x0014EB21, 0x0014EB40, 0x0014EB61, 0x0014EB80, 0x0014EBA1, 0x0014EBC0,
    0x0014EBE1, 0x0014EC00, 0x0014EC21, 0x0014EC40, 0x0014EC61, 0x0014EC80, 0x0014ECA1, 0x0014ECC0,
    0x0014ECE1, 0x0014ED00, 0x0014ED21, 0x0014ED40, 0x0014ED61, 0x0014ED80, 0x0014EDA1, 0x0014EDC0,
    0x0014EDE1, 0x0014EE03, 0x0014EE21, 0x0014EF20, 0x0014EF41, 0x0014EF60, 0x0014EF81, 0x0014EFA0,
    0x0014EFE1, 0x0014F000, 0x0014F021, 0x0014F040, 0x0014F061, 0x0014F080, 0x0014F0A1, 0x0014F0C0,
    0x0014F0E1, 0x0014F103, 0x0014F134, 0x0014F160, 0x0014F181, 0x0014F1A0, 0x0014F1C1, 0x0014F1E4,
    0x0014F200, 0x0014F221, 0x0014F240, 0x0014F261, 0x0014F2C0, 0x0014F2E1, 0x0014F300, 0x0014F321,
    0x0014F340, 0x0014F361, 0x0014F380, 0x0014F3A1, 0x0014F3C0, 0x0014F3E1, 0x0014F400, 0x0014F421,
    0x0014F440, 0x0014F461, 0x0014F480, 0x0014F4A1, 0x0014F4C0, 0x0014F4E1, 0x0014F500, 0x0014F521,
    0x0014F540, 0x0014F5E1, 0x0014F600, 0x0014F6A1, 0x0014F6C0, 0x0014F6E1, 0x0014F700, 0x0014F721,
    0x0014F740, 0x0014F761, 0x0014F780, 0x0014F7A1, 0x0014F7C0, 0x0014F7E1, 0x0014F800, 0x0014F821,
    0x0014F840, 0x0014F861, 0x0014F880, 0x0014F901, 0x0014F920, 0x0014F941, 0x0014F960, 0x0014F9A1,
    0x0014F9C0, 0x0014F9E1, 0x0014FA00, 0x0014FA21, 0x0014FA40, 0x0014FA61, 0x0014FA80, 0x0014FAA1,
    0x0014FAC0, 0x0014FAE1, 0x0014FB00, 0x0014FB21, 0x0014FB40, 0x0014FB61, 0x0014FB80, 0x0014FBBD,
    0x0014FE23, 0x0014FEA0, 0x0014FEC1, 0x0014FEE4, 0x0014FF03, 0x0014FF41, 0x0014FF64, 0x00150045,
    0x00150064, 0x001500C5, 0x001500E4, 0x00150165, 0x00150184, 0x00150466, 0x001504A5, 0x001504E6,
    0x00150515, 0x00150585, 0x001505BD, 0x0015060A, 0x001506D5, 0x00150713, 0x00150735, 0x0015075D,
    0x00150804, 0x00150E91, 0x00150F1D, 0x00151006, 0x00151044, 0x00151686, 0x00151885, 0x001518DD,
    0x001519D1, 0x00151A08, 0x00151B5D, 0x00151C05, 0x00151E44, 0x00151F11, 0x00151F64, 0x00151F91,
    0x00151FA4, 0x00151FE5, 0x00152008, 0x00152144, 0x001524C5, 0x001525D1, 0x00152604, 0x001528E5,
    0x00152A46, 0x00152A9D, 0x00152BF1, 0x00152C04, 0x00152FBD, 0x00153005, 0x00153066, 0x00153084,
    0x00153665, 0x00153686, 0x001536C5, 0x00153746, 0x00153785, 0x001537C6, 0x00153831, 0x001539DD,
    0x001539E3, 0x00153A08, 0x00153B5D, 0x00153BD1, 0x00153C04, 0x00153CA5, 0x00153CC3, 0x00153CE4,
    0x00153E08, 0x00153F44, 0x00153FFD, 0x00154004, 0x00154525, 0x001545E6, 0x00154625, 0x00154666,
    0x001546A5, 0x001546FD, 0x00154804, 0x00154865, 0x00154884, 0x00154985, 0x001549A6, 0x001549DD,
    0x00154A08, 0x00154B5D, 0x00154B91, 0x00154C04, 0x00154E03, 0x00154E24, 0x00154EF5, 0x00154F44,
    0x00154F66, 0x00154F85, 0x00154FA6, 0x00154FC4, 0x00155605, 0x00155624, 0x00155645, 0x001556A4,
    0x001556E5, 0x00155724, 0x001557C5, 0x00155804, 0x00155825, 0x00155844, 0x0015587D, 0x00155B64,
    0x00155BA3, 0x00155BD1, 0x00155C04, 0x00155D66, 0x00155D85, 0x00155DC6, 0x00155E11, 0x00155E44,
    0x00155E63, 0x00155EA6, 0x00155EC5, 0x00155EFD, 0x00156024, 0x001560FD, 0x00156124, 0x001561FD,
    0x00156224, 0x001562FD, 0x00156404, 0x001564FD, 0x00156504, 0x001565FD, 0x00156601, 0x00156B74,
    0x00156B83, 0x00156C01, 0x00156D23, 0x00156D54, 0x00156D9D, 0x00156E01, 0x00157804, 0x00157C66,
    0x00157CA5, 0x00157CC6, 0x00157D05, 0x00157D26, 0x00157D71, 0x00157D86, 0x00157DA5, 0x00157DDD,
    0x00157E08, 0x00157F5D, 0x00158004, 0x001AF49D, 0x001AF604, 0x001AF8FD, 0x001AF964, 0x001AFF9D,
    0x001B001B, 0x001C001C, 0x001F2004, 0x001F4DDD, 0x001F4E04, 0x001F5B5D, 0x001F6001, 0x001F60FD,
    0x001F6261, 0x001F631D, 0x001F63A4, 0x001F63C5, 0x001F63E4, 0x001F6532, 0x001F6544, 0x001F66FD,
    0x001F6704, 0x001F67BD, 0x001F67C4, 0x001F67FD, 0x001F6804, 0x001F685D, 0x001F6864, 0x001F68BD,
    0x001F68C4, 0x001F7654, 0x001F7875, 0x001F7A64, 0x001FA7CE, 0x001FA7ED, 0x001FA815, 0x001FAA04,
    0x001FB215, 0x001FB244, 0x001FB915, 0x001FBA1D, 0x001FBE04, 0x001FBF93, 0x001FBFB5, 0x001FC005,
    0x001FC211, 0x001FC2ED, 0x001FC30E, 0x001FC331, 0x001FC35D, 0x001FC405, 0x001FC611, 0x001FC62C,
    0x001FC66B, 0x001FC6AD, 0x001FC6CE, 0x001FC6ED, 0x001FC70E, 0x001FC72D, 0x001FC74E, 0x001FC76D,
    0x001FC78E, 0x001FC7AD, 0x001FC7CE, 0x001FC7ED, 0x001FC80E, 0x001FC82D, 0x001FC84E, 0x001FC86D,
    0x001FC88E, 0x001FC8B1, 0x001FC8ED, 0x001FC90E, 0x001FC931, 0x001FC9AB, 0x001FCA11, 0x001FCA7D,
    0x001FCA91, 0x001FCB0C, 0x001FCB2D, 0x001FCB4E, 0x001FCB6D, 0x001FCB8E, 0x001FCBAD, 0x001FCBCE,
    0x001FCBF1, 0x001FCC52, 0x001FCC6C, 0x001FCC92, 0x001FCCFD, 0x001FCD11, 0x001FCD33, 0x001FCD51,
    0x001FCD9D, 0x001FCE04, 0x001FCEBD, 0x001FCEC4, 0x001FDFBD, 0x001FDFFA, 0x001FE01D, 0x001FE031,
    0x001FE093, 0x001FE0B1, 0x001FE10D, 0x001FE12E, 0x001FE151, 0x001FE172, 0x001FE191, 0x001FE1AC,
    0x001FE1D1, 0x001FE208, 0x001FE351, 0x001FE392, 0x001FE3F1, 0x001FE420, 0x001FE76D, 0x001FE791,
    0x001FE7AE, 0x001FE7D4, 0x001FE7EB, 0x001FE814, 0x001FE821, 0x001FEB6D, 0x001FEB92, 0x001FEBAE,
    0x001FEBD2, 0x001FEBED, 0x001FEC0E, 0x001FEC31, 0x001FEC4D, 0x001FEC6E, 0x001FEC91, 0x001FECC4,
    0x001FEE03, 0x001FEE24, 0x001FF3C3, 0x001FF404, 0x001FF7FD, 0x001FF844, 0x001FF91D, 0x001FF944,
    0x001FFA1D, 0x001FFA44, 0x001FFB1D, 0x001FFB44, 0x001FFBBD, 0x001FFC13, 0x001FFC52, 0x001FFC74,
    0x001FFC95, 0x001FFCB3, 0x001FFCFD, 0x001FFD15, 0x001FFD32, 0x001FFDB5, 0x001FFDFD, 0x001FFF3A,
    0x001FFF95, 0x001FFFDD, 0x00200004, 0x0020019D, 0x002001A4, 0x002004FD, 0x00200504, 0x0020077D,
    0x00200784, 0x002007DD, 0x002007E4, 0x002009DD, 0x00200A04, 0x00200BDD, 0x00201004, 0x00201F7D,
    0x00202011, 0x0020207D, 0x002020EA, 0x0020269D, 0x002026F5, 0x00202809, 0x00202EAA, 0x00202F35,
    0x0020314A, 0x00203195, 0x002031FD, 0x00203215, 0x002033BD, 0x00203415, 0x0020343D, 0x00203A15,
    0x00203FA5, 0x00203FDD, 0x00205004, 0x002053BD, 0x00205404, 0x00205A3D, 0x00205C05, 0x00205C2A,
    0x00205F9D, 0x00206004, 0x0020640A, 0x0020649D, 0x002065A4, 0x00206829, 0x00206844, 0x00206949,
    0x0020697D, 0x00206A04, 0x00206EC5, 0x00206F7D, 0x00207004, 0x002073DD, 0x002073F1, 0x00207404,
    0x0020789D, 0x00207904, 0x00207A11, 0x00207A29, 0x00207ADD, 0x00208000, 0x00208501, 0x00208A04,
    0x002093DD, 0x00209408, 0x0020955D, 0x00209600, 0x00209A9D, 0x00209B01, 0x00209F9D, 0x0020A004,
    0x0020A51D, 0x0020A604, 0x0020AC9D, 0x0020ADF1, 0x0020AE00, 0x0020AF7D, 0x0020AF80, 0x0020B17D,
    0x0020B180, 0x0020B27D, 0x0020B280, 0x0020B2DD, 0x0020B2E1, 0x0020B45D, 0x0020B461, 0x0020B65D,
    0x0020B661, 0x0020B75D, 0x0020B761, 0x0020B7BD, 0x0020B804, 0x0020BE9D, 0x0020C004, 0x0020E6FD,
    0x0020E804, 0x0020EADD, 0x0020EC04, 0x0020ED1D, 0x0020F003, 0x0020F0DD, 0x0020F0E3, 0x0020F63D,
    0x0020F643, 0x0020F77D, 0x00210004, 0x002100DD, 0x00210104, 0x0021013D, 0x00210144, 0x002106DD,
    0x002106E4, 0x0021073D, 0x00210784, 0x002107BD, 0x002107E4, 0x00210ADD, 0x00210AF1, 0x00210B0A,
    0x00210C04, 0x00210EF5, 0x00210F2A, 0x00211004, 0x002113FD, 0x002114EA, 0x0021161D, 0x00211C04,
    0x00211E7D, 0x00211E84, 0x00211EDD, 0x00211F6A, 0x00212004, 0x002122CA, 0x0021239D, 0x002123F1,
    0x00212404, 0x0021275D, 0x002127F1, 0x00212804, 0x00212B5D, 0x00213004, 0x0021371D, 0x0021378A,
    0x002137C4, 0x0021380A, 0x00213A1D, 0x00213A4A, 0x00214004, 0x00214025, 0x0021409D, 0x002140A5,
    0x002140FD, 0x00214185, 0x00214204, 0x0021429D, 0x002142A4, 0x0021431D, 0x00214324, 0x002146DD,
    0x00214705, 0x0021477D, 0x002147E5, 0x0021480A, 0x0021493D, 0x00214A11, 0x00214B3D, 0x00214C04,
    0x00214FAA, 0x00214FF1, 0x00215004, 0x002153AA, 0x0021541D, 0x00215804, 0x00215915, 0x00215924,
    0x00215CA5, 0x00215CFD, 0x00215D6A, 0x00215E11, 0x00215EFD, 0x00216004, 0x002166DD, 0x00216731,
    0x00216804, 0x00216ADD, 0x00216B0A, 0x00216C04, 0x00216E7D, 0x00216F0A, 0x00217004, 0x0021725D,
    0x00217331, 0x002173BD, 0x0021752A, 0x0021761D, 0x00218004, 0x0021893D, 0x00219000, 0x0021967D,
    0x00219801, 0x00219E7D, 0x00219F4A, 0x0021A004, 0x0021A485, 0x0021A51D, 0x0021A608, 0x0021A75D,
    0x0021A808, 0x0021A944, 0x0021A9C3, 0x0021A9E4, 0x0021AA00, 0x0021ACDD, 0x0021AD25, 0x0021ADCC,
    0x0021ADE3, 0x0021AE01, 0x0021B0DD, 0x0021B1D2, 0x0021B21D, 0x0021CC0A, 0x0021CFFD, 0x0021D004,
    0x0021D55D, 0x0021D565, 0x0021D5AC, 0x0021D5DD, 0x0021D604, 0x0021D65D, 0x0021D844, 0x0021D8A3,
    0x0021D8C4, 0x0021D91D, 0x0021DA11, 0x0021DA35, 0x0021DB3D, 0x0021DF45, 0x0021E004, 0x0021E3AA,
    0x0021E4E4, 0x0021E51D, 0x0021E604, 0x0021E8C5, 0x0021EA2A, 0x0021EAB1, 0x0021EB5D, 0x0021EE04,
    0x0021F045, 0x0021F0D1, 0x0021F15D, 0x0021F604, 0x0021F8AA, 0x0021F99D, 0x0021FC04, 0x0021FEFD,
    0x00220006, 0x00220025, 0x00220046, 0x00220064, 0x00220705, 0x002208F1, 0x002209DD, 0x00220A4A,
    0x00220CC8, 0x00220E05, 0x00220E24, 0x00220E65, 0x00220EA4, 0x00220EDD, 0x00220FE5, 0x00221046,
    0x00221064, 0x00221606, 0x00221665, 0x002216E6, 0x00221725, 0x00221771, 0x002217BA, 0x002217D1,
    0x00221845, 0x0022187D, 0x002219BA, 0x002219DD, 0x00221A04, 0x00221D3D, 0x00221E08, 0x00221F5D,
    0x00222005, 0x00222064, 0x002224E5, 0x00222586, 0x002225A5, 0x002226BD, 0x002226C8, 0x00222811,
    0x00222884, 0x002228A6, 0x002228E4, 0x0022291D, 0x00222A04, 0x00222E65, 0x00222E91, 0x00222EC4,
    0x00222EFD, 0x00223005, 0x00223046, 0x00223064, 0x00223666, 0x002236C5, 0x002237E6, 0x00223824,
    0x002238B1, 0x00223925, 0x002239B1, 0x002239C6, 0x002239E5, 0x00223A08, 0x00223B44, 0x00223B71,
    0x00223B84, 0x00223BB1, 0x00223C1D, 0x00223C2A, 0x00223EBD, 0x00224004, 0x0022425D, 0x00224264,
    0x00224586, 0x002245E5, 0x00224646, 0x00224685, 0x002246A6, 0x002246C5, 0x00224711, 0x002247C5,
    0x002247E4, 0x00224825, 0x0022485D, 0x00225004, 0x002250FD, 0x00225104, 0x0022513D, 0x00225144,
    0x002251DD, 0x002251E4, 0x002253DD, 0x002253E4, 0x00225531, 0x0022555D, 0x00225604, 0x00225BE5,
    0x00225C06, 0x00225C65, 0x00225D7D, 0x00225E08, 0x00225F5D, 0x00226005, 0x00226046, 0x0022609D,
    0x002260A4, 0x002261BD, 0x002261E4, 0x0022623D, 0x00226264, 0x0022653D, 0x00226544, 0x0022663D,
    0x00226644, 0x0022669D, 0x002266A4, 0x0022675D, 0x00226765, 0x002267A4, 0x002267C6, 0x00226805,
    0x00226826, 0x002268BD, 0x002268E6, 0x0022693D, 0x00226966, 0x002269DD, 0x00226A04, 0x00226A3D,
    0x00226AE6, 0x00226B1D, 0x00226BA4, 0x00226C46, 0x00226C9D, 0x00226CC5, 0x00226DBD, 0x00226E05,
    0x00226EBD, 0x00227004, 0x0022715D, 0x00227164, 0x0022719D, 0x002271C4, 0x002271FD, 0x00227204,
    0x002276DD, 0x002276E4, 0x00227706, 0x00227765, 0x0022783D, 0x00227846, 0x0022787D, 0x002278A6,
    0x002278DD, 0x002278E6, 0x0022797D, 0x00227986, 0x002279C5, 0x002279E6, 0x00227A05, 0x00227A24,
    0x00227A45, 0x00227A64, 0x00227A91, 0x00227ADD, 0x00227AF1, 0x00227B3D, 0x00227C25, 0x00227C7D,
    0x00228004, 0x002286A6, 0x00228705, 0x00228806, 0x00228845, 0x002288A6, 0x002288C5, 0x002288E4,
    0x00228971, 0x00228A08, 0x00228B51, 0x00228B9D, 0x00228BB1, 0x00228BC5, 0x00228BE4, 0x00228C5D,
    0x00229004, 0x00229606, 0x00229665, 0x00229726, 0x00229745, 0x00229766, 0x002297E5, 0x00229826,
    0x00229845, 0x00229884, 0x002298D1, 0x002298E4, 0x0022991D, 0x00229A08, 0x00229B5D, 0x0022B004,
    0x0022B5E6, 0x0022B645, 0x0022B6DD, 0x0022B706, 0x0022B785, 0x0022B7C6, 0x0022B7E5, 0x0022B831,
    0x0022BB04, 0x0022BB85, 0x0022BBDD, 0x0022C004, 0x0022C606, 0x0022C665, 0x0022C766, 0x0022C7A5,
    0x0022C7C6, 0x0022C7E5, 0x0022C831, 0x0022C884, 0x0022C8BD, 0x0022CA08, 0x0022CB5D, 0x0022CC11,
    0x0022CDBD, 0x0022D004, 0x0022D565, 0x0022D586, 0x0022D5A5, 0x0022D5C6, 0x0022D605, 0x0022D6C6,
    0x0022D6E5, 0x0022D704, 0x0022D731, 0x0022D75D, 0x0022D808, 0x0022D95D, 0x0022DA08, 0x0022DC9D,
    0x0022E004, 0x0022E37D, 0x0022E3A5, 0x0022E3C6, 0x0022E3E5, 0x0022E406, 0x0022E445, 0x0022E4C6,
    0x0022E4E5, 0x0022E59D, 0x0022E608, 0x0022E74A, 0x0022E791, 0x0022E7F5, 0x0022E804, 0x0022E8FD,
    0x00230004, 0x00230586, 0x002305E5, 0x00230706, 0x00230725, 0x00230771, 0x0023079D, 0x00231400,
    0x00231801, 0x00231C08, 0x00231D4A, 0x00231E7D, 0x00231FE4, 0x002320FD, 0x00232124, 0x0023215D,
    0x00232184, 0x0023229D, 0x002322A4, 0x002322FD, 0x00232304, 0x00232606, 0x002326DD, 0x002326E6,
    0x0023273D, 0x00232765, 0x002327A6, 0x002327C5, 0x002327E4, 0x00232806, 0x00232824, 0x00232846,
    0x00232865, 0x00232891, 0x002328FD, 0x00232A08, 0x00232B5D, 0x00233404, 0x0023351D, 0x00233544,
    0x00233A26, 0x00233A85, 0x00233B1D, 0x00233B45, 0x00233B86, 0x00233C05, 0x00233C24, 0x00233C51,
    0x00233C64, 0x00233C86, 0x00233CBD, 0x00234004, 0x00234025, 0x00234164, 0x00234665, 0x00234726,
    0x00234744, 0x00234765, 0x002347F1, 0x002348E5, 0x0023491D, 0x00234A04, 0x00234A25, 0x00234AE6,
    0x00234B25, 0x00234B84, 0x00235145, 0x002352E6, 0x00235305, 0x00235351, 0x002353A4, 0x002353D1,
    0x0023547D, 0x00235604, 0x00235F3D, 0x00236011, 0x0023615D, 0x00236C05, 0x00236C26, 0x00236C45,
    0x00236CA6, 0x00236CC5, 0x00236CE6, 0x00236D1D, 0x00237804, 0x00237C31, 0x00237C5D, 0x00237E08,
    0x00237F5D, 0x00238004, 0x0023813D, 0x00238144, 0x002385E6, 0x00238605, 0x002386FD, 0x00238705,
    0x002387C6, 0x002387E5, 0x00238804, 0x00238831, 0x002388DD, 0x00238A08, 0x00238B4A, 0x00238DBD,
    0x00238E11, 0x00238E44, 0x0023921D, 0x00239245, 0x0023951D, 0x00239526, 0x00239545, 0x00239626,
    0x00239645, 0x00239686, 0x002396A5, 0x002396FD, 0x0023A004, 0x0023A0FD, 0x0023A104, 0x0023A15D,
    0x0023A164, 0x0023A625, 0x0023A6FD, 0x0023A745, 0x0023A77D, 0x0023A785, 0x0023A7DD, 0x0023A7E5,
    0x0023A8C4, 0x0023A8E5, 0x0023A91D, 0x0023AA08, 0x0023AB5D, 0x0023AC04, 0x0023ACDD, 0x0023ACE4,
    0x0023AD3D, 0x0023AD44, 0x0023B146, 0x0023B1FD, 0x0023B205, 0x0023B25D, 0x0023B266, 0x0023B2A5,
    0x0023B2C6, 0x0023B2E5, 0x0023B304, 0x0023B33D, 0x0023B408, 0x0023B55D, 0x0023B604, 0x0023BB23,
    0x0023BB44, 0x0023BB9D, 0x0023BC08, 0x0023BD5D, 0x0023DC04, 0x0023DE65, 0x0023DEA6, 0x0023DEF1,
    0x0023DF3D, 0x0023E005, 0x0023E044, 0x0023E066, 0x0023E084, 0x0023E23D, 0x0023E244, 0x0023E686,
    0x0023E6C5, 0x0023E77D, 0x0023E7C6, 0x0023E805, 0x0023E826, 0x0023E845, 0x0023E871, 0x0023EA08,
    0x0023EB45, 0x0023EB7D, 0x0023F604, 0x0023F63D, 0x0023F80A, 0x0023FAB5, 0x0023FBB3, 0x0023FC35,
    0x0023FE5D, 0x0023FFF1, 0x00240004, 0x0024735D, 0x00248009, 0x00248DFD, 0x00248E11, 0x00248EBD,
    0x00249004, 0x0024A89D, 0x0025F204, 0x0025FE31, 0x0025FE7D, 0x00260004, 0x0026861A, 0x00268805,
    0x00268824, 0x002688E5, 0x00268ADD, 0x00268C04, 0x00287F7D, 0x00288004, 0x0028C8FD, 0x002C2004,
    0x002C23C5, 0x002C2546, 0x002C25A5, 0x002C2608, 0x002C275D, 0x002D0004, 0x002D473D, 0x002D4804,
    0x002D4BFD, 0x002D4C08, 0x002D4D5D, 0x002D4DD1, 0x002D4E04, 0x002D57FD, 0x002D5808, 0x002D595D,
    0x002D5A04, 0x002D5DDD, 0x002D5E05, 0x002D5EB1, 0x002D5EDD, 0x002D6004, 0x002D6605, 0x002D66F1,
    0x002D6795, 0x002D6803, 0x002D6891, 0x002D68B5, 0x002D68DD, 0x002D6A08, 0x002D6B5D, 0x002D6B6A,
    0x002D6C5D, 0x002D6C64, 0x002D6F1D, 0x002D6FA4, 0x002D721D, 0x002DA803, 0x002DA864, 0x002DAD63,
    0x002DADB1, 0x002DAE08, 0x002DAF5D, 0x002DC800, 0x002DCC01, 0x002DD00A, 0x002DD2F1, 0x002DD37D,
    0x002DD400, 0x002DD73D, 0x002DD761, 0x002DDA9D, 0x002DE004, 0x002DE97D, 0x002DE9E5, 0x002DEA04,
    0x002DEA26, 0x002DF11D, 0x002DF1E5, 0x002DF263, 0x002DF41D, 0x002DFC03, 0x002DFC51, 0x002DFC63,
    0x002DFC85, 0x002DFCBD, 0x002DFE06, 0x002DFE43, 0x002DFE89, 0x002DFEFD, 0x002E0004, 0x00319ADD,
    0x00319FE4, 0x0031A3FD, 0x0031B004, 0x0031BE7D, 0x0035FE03, 0x0035FE9D, 0x0035FEA3, 0x0035FF9D,
    0x0035FFA3, 0x0035FFFD, 0x00360004, 0x0036247D, 0x00362644, 0x0036267D, 0x00362A04, 0x00362A7D,
    0x00362AA4, 0x00362ADD, 0x00362C84, 0x00362D1D, 0x00362E04, 0x00365F9D, 0x00378004, 0x00378D7D,
    0x00378E04, 0x00378FBD, 0x00379004, 0x0037913D, 0x00379204, 0x0037935D, 0x00379395, 0x003793A5,
    0x003793F1, 0x0037941A, 0x0037949D, 0x00398015, 0x00399E08, 0x00399F55, 0x00399FBD, 0x0039A015,
    0x0039D69D, 0x0039D755, 0x0039DA3D, 0x0039DC15, 0x0039DE12, 0x0039DE3D, 0x0039E005, 0x0039E5DD,
    0x0039E605, 0x0039E8FD, 0x0039EA15, 0x0039F89D, 0x003A0015, 0x003A1EDD, 0x003A2015, 0x003A24FD,
    0x003A2535, 0x003A2CA6, 0x003A2CE5, 0x003A2D55, 0x003A2DA6, 0x003A2E7A, 0x003A2F65, 0x003A3075,
    0x003A30A5, 0x003A3195, 0x003A3545, 0x003A35D5, 0x003A3D7D, 0x003A4015, 0x003A4845, 0x003A48B5,
    0x003A48DD, 0x003A580A, 0x003A5A9D, 0x003A5C0A, 0x003A5E9D, 0x003A6015, 0x003A6AFD, 0x003A6C0A,
    0x003A6F3D, 0x003A8000, 0x003A8341, 0x003A8680, 0x003A89C1, 0x003A8ABD, 0x003A8AC1, 0x003A8D00,
    0x003A9041, 0x003A9380, 0x003A93BD, 0x003A93C0, 0x003A941D, 0x003A9440, 0x003A947D, 0x003A94A0,
    0x003A94FD, 0x003A9520, 0x003A95BD, 0x003A95C0, 0x003A96C1, 0x003A975D, 0x003A9761, 0x003A979D,
    0x003A97A1, 0x003A989D, 0x003A98A1, 0x003A9A00, 0x003A9D41, 0x003AA080, 0x003AA0DD, 0x003AA0E0,
    0x003AA17D, 0x003AA1A0, 0x003AA2BD, 0x003AA2C0, 0x003AA3BD, 0x003AA3C1, 0x003AA700, 0x003AA75D,
    0x003AA760, 0x003AA7FD, 0x003AA800, 0x003AA8BD, 0x003AA8C0, 0x003AA8FD, 0x003AA940, 0x003AAA3D,
    0x003AAA41, 0x003AAD80, 0x003AB0C1, 0x003AB400, 0x003AB741, 0x003ABA80, 0x003ABDC1, 0x003AC100,
    0x003AC441, 0x003AC780, 0x003ACAC1, 0x003ACE00, 0x003AD141, 0x003AD4DD, 0x003AD500, 0x003AD832,
    0x003AD841, 0x003ADB72, 0x003ADB81, 0x003ADC40, 0x003ADF72, 0x003ADF81, 0x003AE2B2, 0x003AE2C1,
    0x003AE380, 0x003AE6B2, 0x003AE6C1, 0x003AE9F2, 0x003AEA01, 0x003AEAC0, 0x003AEDF2, 0x003AEE01,
    0x003AF132, 0x003AF141, 0x003AF200, 0x003AF532, 0x003AF541, 0x003AF872, 0x003AF881, 0x003AF940,
    0x003AF961, 0x003AF99D, 0x003AF9C8, 0x003B0015, 0x003B4005, 0x003B46F5, 0x003B4765, 0x003B4DB5,
    0x003B4EA5, 0x003B4ED5, 0x003B5085, 0x003B50B5, 0x003B50F1, 0x003B519D, 0x003B5365, 0x003B541D,
    0x003B5425, 0x003B561D, 0x003BE001, 0x003BE144, 0x003BE161, 0x003BE3FD, 0x003BE4A1, 0x003BE57D,
    0x003C0005, 0x003C00FD, 0x003C0105, 0x003C033D, 0x003C0365, 0x003C045D, 0x003C0465, 0x003C04BD,
    0x003C04C5, 0x003C057D, 0x003C0603, 0x003C0DDD, 0x003C11E5, 0x003C121D, 0x003C2004, 0x003C25BD,
    0x003C2605, 0x003C26E3, 0x003C27DD, 0x003C2808, 0x003C295D, 0x003C29C4, 0x003C29F5, 0x003C2A1D,
    0x003C5204, 0x003C55C5, 0x003C55FD, 0x003C5804, 0x003C5D85, 0x003C5E08, 0x003C5F5D, 0x003C5FF3,
    0x003C601D, 0x003C9A04, 0x003C9D63, 0x003C9D85, 0x003C9E08, 0x003C9F5D, 0x003CBA04, 0x003CBDC5,
    0x003CBE04, 0x003CBE28, 0x003CBF7D, 0x003CBFF1, 0x003CC01D, 0x003CD804, 0x003CDBFD, 0x003CDC04,
    0x003CDC65, 0x003CDC84, 0x003CDCC5, 0x003CDCE4, 0x003CDDC5, 0x003CDE04, 0x003CDEA5, 0x003CDEDD,
    0x003CDFC4, 0x003CDFE3, 0x003CE01D, 0x003CFC04, 0x003CFCFD, 0x003CFD04, 0x003CFD9D, 0x003CFDA4,
    0x003CFDFD, 0x003CFE04, 0x003CFFFD, 0x003D0004, 0x003D18BD, 0x003D18EA, 0x003D1A05, 0x003D1AFD,
    0x003D2000, 0x003D2441, 0x003D2885, 0x003D2963, 0x003D299D, 0x003D2A08, 0x003D2B5D, 0x003D2BD1,
    0x003D2C1D, 0x003D8E2A, 0x003D9595, 0x003D95AA, 0x003D9613, 0x003D962A, 0x003D96BD, 0x003DA02A,
    0x003DA5D5, 0x003DA5EA, 0x003DA7DD, 0x003DC004, 0x003DC09D, 0x003DC0A4, 0x003DC41D, 0x003DC424,
    0x003DC47D, 0x003DC484, 0x003DC4BD, 0x003DC4E4, 0x003DC51D, 0x003DC524, 0x003DC67D, 0x003DC684,
    0x003DC71D, 0x003DC724, 0x003DC75D, 0x003DC764, 0x003DC79D, 0x003DC844, 0x003DC87D, 0x003DC8E4,
    0x003DC91D, 0x003DC924, 0x003DC95D, 0x003DC964, 0x003DC99D, 0x003DC9A4, 0x003DCA1D, 0x003DCA24,
    0x003DCA7D, 0x003DCA84, 0x003DCABD, 0x003DCAE4, 0x003DCB1D, 0x003DCB24, 0x003DCB5D, 0x003DCB64,
    0x003DCB9D, 0x003DCBA4, 0x003DCBDD, 0x003DCBE4, 0x003DCC1D, 0x003DCC24, 0x003DCC7D, 0x003DCC84,
    0x003DCCBD, 0x003DCCE4, 0x003DCD7D, 0x003DCD84, 0x003DCE7D, 0x003DCE84, 0x003DCF1D, 0x003DCF24,
    0x003DCFBD, 0x003DCFC4, 0x003DCFFD, 0x003DD004, 0x003DD15D, 0x003DD164, 0x003DD39D, 0x003DD424,
    0x003DD49D, 0x003DD4A4, 0x003DD55D, 0x003DD564, 0x003DD79D, 0x003DDE12, 0x003DDE5D, 0x003E0015,
    0x003E059D, 0x003E0615, 0x003E129D, 0x003E1415, 0x003E15FD, 0x003E1635, 0x003E181D, 0x003E1835,
    0x003E1A1D, 0x003E1A35, 0x003E1EDD, 0x003E200A, 0x003E21B5, 0x003E35DD, 0x003E3CD5, 0x003E407D,
    0x003E4215, 0x003E479D, 0x003E4815, 0x003E493D, 0x003E4A15, 0x003E4A5D, 0x003E4C15, 0x003E4CDD,
    0x003E6015, 0x003E7F74, 0x003E8015, 0x003EDB3D, 0x003EDB95, 0x003EDDBD, 0x003EDE15, 0x003EDFBD,
    0x003EE015, 0x003EFB5D, 0x003EFC15, 0x003EFD9D, 0x003EFE15, 0x003EFE3D, 0x003F0015, 0x003F019D,
    0x003F0215, 0x003F091D, 0x003F0A15, 0x003F0B5D, 0x003F0C15, 0x003F111D, 0x003F1215, 0x003F15DD,
    0x003F1615, 0x003F179D, 0x003F1815, 0x003F185D, 0x003F1A12, 0x003F1B3D, 0x003F2015, 0x003F4B1D,
    0x003F4C15, 0x003F4DDD, 0x003F4E15, 0x003F4FBD, 0x003F5015, 0x003F517D, 0x003F51D5, 0x003F58FD,
    0x003F5915, 0x003F593D, 0x003F59B5, 0x003F5BBD, 0x003F5BF5, 0x003F5D7D, 0x003F5DF5, 0x003F5F3D,
    0x003F6015, 0x003F727D, 0x003F7295, 0x003F7E08, 0x003F7F55, 0x003F7F7D, 0x00400004, 0x0054DC1D,
    0x0054E004, 0x005703DD, 0x00570404, 0x0059D5DD, 0x0059D604, 0x005D7C3D, 0x005D7E04, 0x005DCBDD,
    0x005F0004, 0x005F43DD, 0x00600004, 0x0062697D, 0x00626A04, 0x00668F5D, 0x01C0003A, 0x01C0005D,
    0x01C0041A, 0x01C0101D, 0x01C02005, 0x01C03E1D, 0x01E0001C, 0x01FFFFDD, 0x0200001C, 0x021FFFDD,
};
_Static_assert(sizeof TOK_GC_RUNS / sizeof TOK_GC_RUNS[0] == TOK_GC_NRUNS, "TOK_GC_NRUNS is the table's length");
