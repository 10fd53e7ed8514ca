/*
 * test_tokenizer: the tokenizer module on small tokenizer.json files built
 * here (one feature each, expected ids worked out by hand from the file),
 * the built-in splitters against Oniguruma running the same patterns on
 * random text, round trips over Unicode and invalid UTF-8, one test per kind
 * of file we refuse (each checks the message names the JSON path and the
 * type at fault), and `ramtrain tokenize` itself for the line format and
 * exit codes. Agreement with Hugging Face's own implementations on real
 * tokenizer files is test_tokenizer_js's subject.
 *
 * Files live in a mkdtemp directory that the group teardown removes (kept
 * when a test failed, for a look).
 */
#define _GNU_SOURCE /* nftw, mkdtemp */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "services/dataloader/tokenizer.h"

static char g_dir[] = "/tmp/rt_test_tok_XXXXXX";
static int g_failed;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    return mkdtemp(g_dir) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_failed) {
        fprintf(stderr, "test_tokenizer: keeping %s\n", g_dir);
        return 0;
    }
    return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* cmocka has no per-test failure hook: every test sets this first and
 * clears it last, so a test that stopped half-way leaves it set. */
#define BEGIN() (g_failed++)
#define END() (g_failed--)

static const char *tpath(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", g_dir, name);
    return buf;
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* ---- building tokenizer.json ------------------------------------------------------- */

/* GPT-2's byte -> character map, written out independently of the module. */
static void bl_char(int b, char out[3])
{
    int c;
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
        c = b;
    else {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE))
                n++;
        c = 256 + n;
    }
    if (c < 0x80) {
        out[0] = (char)c;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        out[2] = 0;
    }
}

/* Byte-level vocabulary: the character of byte b has id b. */
static json_t *bl_vocab(void)
{
    json_t *v = json_object();
    for (int b = 0; b < 256; b++) {
        char c[3];
        bl_char(b, c);
        json_object_set_new(v, c, json_integer(b));
    }
    return v;
}

/* Vocabulary of the UTF-8 characters of chars, ids in order from first. */
static json_t *char_vocab(const char *chars, int first)
{
    json_t *v = json_object();
    for (const unsigned char *p = (const unsigned char *)chars; *p;) {
        int l = *p < 0x80 ? 1 : *p < 0xE0 ? 2 : *p < 0xF0 ? 3 : 4;
        char c[5] = {0};
        memcpy(c, p, (size_t)l);
        json_object_set_new(v, c, json_integer(first++));
        p += l;
    }
    return v;
}

static void vset(json_t *vocab, const char *text, int id)
{
    json_object_set_new(vocab, text, json_integer(id));
}

/* A tokenizer.json with a BPE model over vocab and merges (both stolen). */
static json_t *tj_new(json_t *vocab, json_t *merges)
{
    return json_pack("{s:s, s:n, s:n, s:[], s:n, s:n, s:n, s:n, s:{s:s, s:n, s:n, s:o, s:o}}", "version",
                     "1.0", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer",
                     "post_processor", "decoder", "model", "type", "BPE", "dropout", "unk_token", "vocab",
                     vocab, "merges", merges ? merges : json_array());
}

static json_t *bytelevel(int prefix, int regex)
{
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", prefix, "trim_offsets",
                     1, "use_regex", regex);
}

static void model_set(json_t *tj, const char *key, json_t *v)
{
    json_object_set_new(json_object_get(tj, "model"), key, v);
}

static void add_token(json_t *tj, int id, const char *content, int special, int normalized, int lstrip,
                      int rstrip, int single_word)
{
    json_array_append_new(json_object_get(tj, "added_tokens"),
                          json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", content,
                                    "special", special, "normalized", normalized, "lstrip", lstrip, "rstrip",
                                    rstrip, "single_word", single_word));
}

static int g_nfile;

/* Writes tj (stolen) to a new file; returns its path in buf. */
static const char *tj_write(json_t *tj, char *buf, size_t len)
{
    char name[64];
    snprintf(name, sizeof name, "tok%d.json", g_nfile++);
    char *s = json_dumps(tj, JSON_COMPACT);
    assert_non_null(s);
    write_bytes(tpath(buf, len, name), s, strlen(s));
    free(s);
    json_decref(tj);
    return buf;
}

static tok *tj_open(json_t *tj)
{
    char path[PATH_MAX];
    tok *t = NULL;
    rt_err err = {{0}};
    int rc = tok_open(tj_write(tj, path, sizeof path), &t, &err);
    if (rc != 0)
        fprintf(stderr, "tok_open: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(t);
    return t;
}

/* tok_open on tj must fail with a message holding every one of the
 * NULL-terminated fragments. */
static void tj_refused(json_t *tj, ...)
{
    char path[PATH_MAX];
    tok *t = NULL;
    rt_err err = {{0}};
    tj_write(tj, path, sizeof path);
    int rc = tok_open(path, &t, &err);
    assert_true(rc < 0);
    assert_null(t);
    va_list ap;
    va_start(ap, tj);
    for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;) {
        if (strstr(err.msg, frag) == NULL)
            fprintf(stderr, "message \"%s\" lacks \"%s\"\n", err.msg, frag);
        assert_non_null(strstr(err.msg, frag));
    }
    va_end(ap);
    assert_non_null(strstr(err.msg, path)); /* names the file */
}

/* ---- encoding helpers ------------------------------------------------------------ */

/* The ids of text[len] as "1 2 3". */
static char *enc_n(const tok *t, const char *text, size_t len, bool special)
{
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    rt_err err = {{0}};
    assert_int_equal(tok_encode(t, text, len, special, &ids, &n, &cap, &err), 0);
    char *s = malloc(n * 12 + 1);
    assert_non_null(s);
    s[0] = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += (size_t)sprintf(s + o, "%s%d", i ? " " : "", ids[i]);
    free(ids);
    return s;
}

#define assert_enc(t, text, special, expect) assert_enc_n(t, text, strlen(text), special, expect)

static void assert_enc_n(const tok *t, const char *text, size_t len, bool special, const char *expect)
{
    char *got = enc_n(t, text, len, special);
    if (strcmp(got, expect) != 0)
        fprintf(stderr, "encode(\"%.*s\"): got \"%s\", expected \"%s\"\n", (int)len, text, got, expect);
    assert_string_equal(got, expect);
    free(got);
}

/* The pre-tokens of text joined with '|'. */
static void assert_pieces(const tok *t, const char *text, const char *expect)
{
    char *out;
    size_t out_len, *lens, n;
    rt_err err = {{0}};
    assert_int_equal(tok_pretokenize(t, text, strlen(text), &out, &out_len, &lens, &n, &err), 0);
    char *joined = malloc(out_len + n + 1);
    assert_non_null(joined);
    size_t o = 0, p = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            joined[o++] = '|';
        memcpy(joined + o, out + p, lens[i]);
        o += lens[i];
        p += lens[i];
    }
    joined[o] = 0;
    assert_int_equal(p, out_len);
    if (strcmp(joined, expect) != 0)
        fprintf(stderr, "pre-tokens of \"%s\": got \"%s\", expected \"%s\"\n", text, joined, expect);
    assert_string_equal(joined, expect);
    free(joined);
    free(out);
    free(lens);
}

/* Decodes "1 2 3". */
static char *dec_str(const tok *t, const char *ids_text, bool skip, size_t *len)
{
    int32_t ids[256];
    size_t n = 0;
    for (char *p = (char *)ids_text; *p;) {
        ids[n++] = (int32_t)strtol(p, &p, 10);
        while (*p == ' ')
            p++;
    }
    char *out;
    size_t l;
    rt_err err = {{0}};
    assert_int_equal(tok_decode(t, ids, n, skip, &out, &l, &err), 0);
    assert_int_equal(strlen(out), l); /* no NUL inside in these tests */
    if (len)
        *len = l;
    return out;
}

static void assert_dec(const tok *t, const char *ids, bool skip, const char *expect)
{
    char *got = dec_str(t, ids, skip, NULL);
    if (strcmp(got, expect) != 0)
        fprintf(stderr, "decode(%s): got \"%s\", expected \"%s\"\n", ids, got, expect);
    assert_string_equal(got, expect);
    free(got);
}

/* decode(encode(text)) must be want (want_len bytes). */
static void assert_roundtrip(const tok *t, const char *text, size_t len, const char *want, size_t want_len)
{
    int32_t *ids = NULL;
    size_t n = 0, cap = 0, l;
    char *out;
    rt_err err = {{0}};
    assert_int_equal(tok_encode(t, text, len, false, &ids, &n, &cap, &err), 0);
    assert_int_equal(tok_decode(t, ids, n, false, &out, &l, &err), 0);
    if (l != want_len || memcmp(out, want, l) != 0)
        fprintf(stderr, "round trip of \"%.*s\" gave \"%.*s\"\n", (int)len, text, (int)l, out);
    assert_int_equal(l, want_len);
    assert_memory_equal(out, want, l);
    free(out);
    free(ids);
}

/* ---- tokenizers used by several tests --------------------------------------------------- */

/* Byte-level vocabulary plus "he" 256, "ll" 257, "hell" 258, "hello" 259,
 * "Ġw" 260, "or" 261, "Ġwor" 262, "Ġworl" 263, "Ġworld" 264. */
static json_t *hello_tj(int pair_merges)
{
    json_t *v = bl_vocab();
    const char *toks[] = {"he", "ll", "hell", "hello", "\xC4\xA0w", "or", "\xC4\xA0wor", "\xC4\xA0worl",
                          "\xC4\xA0world"};
    for (int i = 0; i < 9; i++)
        vset(v, toks[i], 256 + i);
    const char *m[][2] = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"\xC4\xA0", "w"}, {"o", "r"},
                          {"\xC4\xA0w", "or"}, {"\xC4\xA0wor", "l"}, {"\xC4\xA0worl", "d"}};
    json_t *merges = json_array();
    for (int i = 0; i < 9; i++) {
        if (pair_merges)
            json_array_append_new(merges, json_pack("[s, s]", m[i][0], m[i][1]));
        else {
            char s[32];
            snprintf(s, sizeof s, "%s %s", m[i][0], m[i][1]);
            json_array_append_new(merges, json_string(s));
        }
    }
    json_t *tj = tj_new(v, merges);
    json_object_set_new(tj, "pre_tokenizer", bytelevel(0, 1));
    json_object_set_new(tj, "decoder", json_pack("{s:s}", "type", "ByteLevel"));
    return tj;
}

/* Characters a..z (0..25), ' ' 26, '▁' 27, '.' 28, '!' 29, <unk> 30; no merges. */
static json_t *chars_tj(void)
{
    json_t *v = char_vocab("abcdefghijklmnopqrstuvwxyz \xE2\x96\x81.!", 0);
    vset(v, "<unk>", 30);
    return tj_new(v, NULL);
}

/* ---- tests: the built-in byte tokenizer ----------------------------------------------------- */

static void test_byte_tokenizer(void **state)
{
    (void)state;
    BEGIN();
    tok *t;
    rt_err err = {{0}};
    assert_int_equal(tok_open(NULL, &t, &err), 0);
    assert_int_equal(tok_vocab_size(t), 259);
    assert_int_equal(tok_bos(t), 256);
    assert_int_equal(tok_eos(t), 257);
    assert_int_equal(tok_id(t, "<|pad|>"), 258);
    assert_int_equal(tok_id(t, "<|eos|>"), 257);
    assert_int_equal(tok_id(t, "a"), 97);
    assert_int_equal(tok_id(t, "ab"), -1);
    assert_enc_n(t, "ab\xff\0", 4, false, "97 98 255 0"); /* bytes as they are, no U+FFFD */
    assert_enc(t, "ab", true, "256 97 98");                /* BOS only */
    assert_enc(t, "", true, "256");
    assert_dec(t, "256 104 105 257 258", false, "<|bos|>hi<|eos|><|pad|>");
    assert_dec(t, "256 104 105 257", true, "hi");
    int32_t bad = 259;
    char *out;
    size_t len;
    assert_true(tok_decode(t, &bad, 1, false, &out, &len, &err) < 0);
    assert_non_null(strstr(err.msg, "259"));
    assert_non_null(strstr(tok_describe(t), "byte"));
    tok_close(t);
    END();
}

/* ---- tests: BPE ------------------------------------------------------------------------ */

static void test_merges_both_forms(void **state)
{
    (void)state;
    BEGIN();
    tok *a = tj_open(hello_tj(0)), *b = tj_open(hello_tj(1));
    const char *texts[] = {"hello world", "hello", " world", "hellohello worlds", "held"};
    const char *want[] = {"259 264", "259", "264", "259 259 264 115", "256 108 100"};
    for (int i = 0; i < 5; i++) {
        assert_enc(a, texts[i], false, want[i]);
        assert_enc(b, texts[i], false, want[i]);
    }
    assert_int_equal(tok_vocab_size(a), 265);
    assert_int_equal(tok_id(a, "hello"), 259);
    assert_int_equal(tok_id(a, "\xC4\xA0world"), 264);
    assert_int_equal(tok_bos(a), -1);
    assert_int_equal(tok_eos(a), -1);
    assert_non_null(strstr(tok_describe(a), "byte-level BPE, 265 ids"));
    tok_close(a);
    tok_close(b);
    END();
}

/* The lowest rank merges first; equal candidates merge leftmost first. */
static void test_merge_order(void **state)
{
    (void)state;
    BEGIN();
    for (int order = 0; order < 2; order++) {
        json_t *v = char_vocab("abc", 0);
        vset(v, "ab", 3);
        vset(v, "bc", 4);
        json_t *m = order ? json_pack("[s, s]", "b c", "a b") : json_pack("[s, s]", "a b", "b c");
        tok *t = tj_open(tj_new(v, m));
        assert_enc(t, "abc", false, order ? "0 4" : "3 2");
        tok_close(t);
    }
    /* "aaa" with a+a: the left pair first, then nothing to merge */
    json_t *v = char_vocab("a", 0);
    vset(v, "aa", 1);
    tok *t = tj_open(tj_new(v, json_pack("[s]", "a a")));
    assert_enc(t, "aaa", false, "1 0");
    assert_enc(t, "aaaa", false, "1 1");
    /* a long word (the heap path): pairs from the left, the odd one out last */
    char word[402], want[404];
    memset(word, 'a', 401);
    word[401] = 0;
    for (int i = 0; i < 200; i++) {
        want[2 * i] = '1';
        want[2 * i + 1] = ' ';
    }
    memcpy(want + 400, "0", 2);
    char *got = enc_n(t, word, 401, false);
    assert_string_equal(got, want);
    free(got);
    tok_close(t);
    END();
}

static void test_ignore_merges(void **state)
{
    (void)state;
    BEGIN();
    for (int ignore = 0; ignore < 2; ignore++) {
        json_t *tj = hello_tj(0);
        vset(json_object_get(json_object_get(tj, "model"), "vocab"), "hel", 300);
        model_set(tj, "ignore_merges", json_boolean(ignore));
        tok *t = tj_open(tj);
        /* "hel" is a token no merge makes: only ignore_merges finds it */
        assert_enc(t, "hel", false, ignore ? "300" : "256 108");
        assert_enc(t, "hello", false, "259");
        tok_close(t);
    }
    END();
}

static void test_bytelevel_pretokenizer(void **state)
{
    (void)state;
    BEGIN();
    tok *t = tj_open(hello_tj(0));
    assert_pieces(t, "Hello world's 123 ...  x\n", "Hello| world|'s| 123| ...| | x|\n");
    assert_pieces(t, "don't  \t x", "don|'t|  \t| x"); /* the run but its last space */
    assert_pieces(t, "a\xEF\xBB\xBFz", "a|\xEF\xBB\xBF|z"); /* JavaScript's \s: U+FEFF is a space */
    assert_pieces(t, "a\xC2\x85\xC2\x85z", "a|\xC2\x85\xC2\x85|z"); /* and U+0085 is not */
    tok_close(t);
    json_t *tj = hello_tj(0);
    json_object_set_new(tj, "pre_tokenizer", bytelevel(1, 0));
    t = tj_open(tj);
    assert_pieces(t, "Hello world", " Hello world");
    assert_enc(t, "hello", false, "32 259"); /* " hello": Ġ (32) h e l l o, no merge for Ġh */
    tok_close(t);
    END();
}

/* Random text over an alphabet of the characters the patterns care about. */
static size_t random_text(unsigned *seed, char *out, size_t max)
{
    static const char *const A[] = {"a", "Z", "q", "'", "s", "S", "t", "re", "VE", "ll", "d", "m", " ", "  ", "\t",
                                    "\r", "\n", "\r\n", "1", "23", "4567", "\xC2\xA0", "\xE3\x80\x80", "\xC2\x85",
                                    "\xEF\xBB\xBF", "\xE2\x80\xA8", ".", ",", "!", "?", "-", "_", "\xC3\xA9",
                                    "\xCC\x81", "\xE6\x97\xA5", "\xF0\x9F\x98\x80", "\xE2\x80\x8D", "\xD9\xA3",
                                    "\xE2\x85\xAB", "\xC2\xBD", "\xC5\xBF", "\xF0\x91\xBC\x80", "\xE1\xB2\x89",
                                    "\xCE\xA3", "\xD7\x90", "\x0b", "\x0c", "\xE2\x80\x8B", "$", "\xE2\x82\xAC"};
    size_t n = 0, k = (size_t)(rand_r(seed) % 40);
    for (size_t i = 0; i < k; i++) {
        const char *p = A[rand_r(seed) % (sizeof A / sizeof A[0])];
        size_t l = strlen(p);
        if (n + l >= max)
            break;
        memcpy(out + n, p, l);
        n += l;
    }
    return n;
}

static tok *split_tok(const char *regex)
{
    json_t *tj = tj_new(bl_vocab(), NULL);
    json_object_set_new(tj, "pre_tokenizer",
                        json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex", regex,
                                  "behavior", "Isolated", "invert", 0));
    return tj_open(tj);
}

/* The hand-written splitters (GPT-2, Llama-3 / cl100k, Qwen2, ByteLevel's
 * own) against Oniguruma on the same pattern made unrecognizable by an
 * outer group. */
static void test_fast_splitters_vs_oniguruma(void **state)
{
    (void)state;
    BEGIN();
    static const char *const PATS[] = {
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    };
    /* ByteLevel's built-in regex with JavaScript's \s spelled out */
#define JSWS "\\t\\n\\x{B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"
    static const char BL_JS[] = "(?:'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" JSWS "\\p{L}\\p{N}]+|[" JSWS
                                "]+(?![^" JSWS "])|[" JSWS "]+)";
    for (size_t p = 0; p <= sizeof PATS / sizeof PATS[0]; p++) {
        tok *fast, *slow;
        if (p < sizeof PATS / sizeof PATS[0]) {
            char wrapped[512];
            snprintf(wrapped, sizeof wrapped, "(?:%s)", PATS[p]);
            fast = split_tok(PATS[p]);
            slow = split_tok(wrapped);
        } else {
            json_t *tj = tj_new(bl_vocab(), NULL);
            json_object_set_new(tj, "pre_tokenizer", bytelevel(0, 1));
            fast = tj_open(tj);
            slow = split_tok(BL_JS);
        }
        unsigned seed = 1234 + (unsigned)p;
        for (int iter = 0; iter < 3000; iter++) {
            char text[512];
            size_t n = random_text(&seed, text, sizeof text);
            char *a, *b;
            size_t al, bl, *la, *lb, na, nb;
            rt_err err = {{0}};
            assert_int_equal(tok_pretokenize(fast, text, n, &a, &al, &la, &na, &err), 0);
            assert_int_equal(tok_pretokenize(slow, text, n, &b, &bl, &lb, &nb, &err), 0);
            if (na != nb || (na > 0 && memcmp(la, lb, na * sizeof *la) != 0))
                fprintf(stderr, "pattern %zu splits \"%.*s\" differently\n", p, (int)n, text);
            assert_int_equal(na, nb);
            assert_int_equal(al, bl);
            if (na > 0) {
                assert_memory_equal(la, lb, na * sizeof *la);
                assert_memory_equal(a, b, al);
            }
            free(a);
            free(b);
            free(la);
            free(lb);
        }
        tok_close(fast);
        tok_close(slow);
    }
    END();
}

static tok *split_string_tok(const char *behavior, int invert)
{
    json_t *tj = chars_tj();
    json_object_set_new(tj, "pre_tokenizer",
                        json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "String", "-",
                                  "behavior", behavior, "invert", invert));
    return tj_open(tj);
}

static void test_split_behaviors(void **state)
{
    (void)state;
    BEGIN();
    static const struct {
        const char *behavior;
        int invert;
        const char *want;
    } C[] = {
        {"Removed", 0, "the|final|countdown"},
        {"Isolated", 0, "the|-|final|-|-|countdown"},
        {"MergedWithPrevious", 0, "the-|final-|-|countdown"},
        {"MergedWithNext", 0, "the|-final|-|-countdown"},
        {"Contiguous", 0, "the|-|final|--|countdown"},
        {"Removed", 1, "-|-|-"},
        {"Isolated", 1, "the|-|final|-|-|countdown"},
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        tok *t = split_string_tok(C[i].behavior, C[i].invert);
        assert_pieces(t, "the-final--countdown", C[i].want);
        tok_close(t);
    }
    /* a Regex pattern, Removed: the spaces go */
    json_t *tj = chars_tj();
    json_object_set_new(tj, "pre_tokenizer",
                        json_pack("{s:s, s:{s:s}, s:s}", "type", "Split", "pattern", "Regex", "\\s+", "behavior",
                                  "Removed"));
    tok *t = tj_open(tj);
    assert_pieces(t, "ab  cd e", "ab|cd|e");
    assert_enc(t, "ab  cd", false, "0 1 2 3");
    tok_close(t);
    END();
}

static void test_digits_and_whitespace_split(void **state)
{
    (void)state;
    BEGIN();
    for (int individual = 0; individual < 2; individual++) {
        json_t *tj = chars_tj();
        json_object_set_new(tj, "pre_tokenizer",
                            json_pack("{s:s, s:b}", "type", "Digits", "individual_digits", individual));
        tok *t = tj_open(tj);
        assert_pieces(t, "ab123c4", individual ? "ab|1|2|3|c|4" : "ab|123|c|4");
        tok_close(t);
    }
    json_t *tj = chars_tj();
    json_object_set_new(tj, "pre_tokenizer", json_pack("{s:s}", "type", "WhitespaceSplit"));
    tok *t = tj_open(tj);
    assert_pieces(t, "  ab \t c\xE3\x80\x80" "d ", "ab|c|d");
    tok_close(t);
    END();
}

static tok *metaspace_tok(const char *scheme, int split)
{
    json_t *tj = chars_tj();
    add_token(tj, 31, "<s>", 1, 0, 0, 0, 0);
    json_object_set_new(tj, "pre_tokenizer",
                        json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement", "\xE2\x96\x81",
                                  "prepend_scheme", scheme, "split", split));
    json_object_set_new(tj, "decoder",
                        json_pack("{s:s, s:s, s:s}", "type", "Metaspace", "replacement", "\xE2\x96\x81",
                                  "prepend_scheme", scheme));
    return tj_open(tj);
}

static void test_metaspace(void **state)
{
    (void)state;
    BEGIN();
    tok *t = metaspace_tok("first", 0);
    assert_pieces(t, "hi  yo", "\xE2\x96\x81hi\xE2\x96\x81\xE2\x96\x81yo");
    assert_pieces(t, "<s>hi yo", "hi\xE2\x96\x81yo"); /* "first": only the text that starts the input */
    assert_pieces(t, "\xE2\x96\x81hi", "\xE2\x96\x81hi"); /* already there */
    assert_enc(t, "<s>hi a", false, "31 7 8 27 0");
    assert_enc(t, "hi", false, "27 7 8");
    assert_dec(t, "27 7 8 27 0", false, "hi a"); /* the first token's leading space goes */
    tok_close(t);
    t = metaspace_tok("always", 1);
    assert_pieces(t, "<s>hi  yo", "\xE2\x96\x81hi|\xE2\x96\x81|\xE2\x96\x81yo");
    tok_close(t);
    t = metaspace_tok("never", 0);
    assert_pieces(t, "hi yo", "hi\xE2\x96\x81yo");
    assert_dec(t, "27 7 8", false, " hi"); /* "never": the decoder keeps it */
    tok_close(t);
    END();
}

/* Llama-2's layout: normalizer Prepend + Replace, byte_fallback, fuse_unk,
 * decoder Replace + ByteFallback + Fuse + Strip. */
static json_t *sp_tj(int byte_fallback)
{
    json_t *v = char_vocab("abcdefghijklmnopqrstuvwxyz\xE2\x96\x81", 3); /* a = 3 ... z = 28, ▁ = 29 */
    vset(v, "<unk>", 0);
    vset(v, "<s>", 1);
    vset(v, "</s>", 2);
    for (int b = 0; b < 256; b++) {
        if (b == 0xAC)
            continue; /* one byte has no token: what needs it falls back to <unk> */
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        vset(v, name, 100 + b);
    }
    vset(v, "\xE2\x96\x81h", 30);
    vset(v, "\xE2\x96\x81hi", 31);
    json_t *tj = tj_new(v, json_pack("[s, s]", "\xE2\x96\x81 h", "\xE2\x96\x81h i"));
    model_set(tj, "unk_token", json_string("<unk>"));
    model_set(tj, "byte_fallback", json_boolean(byte_fallback));
    model_set(tj, "fuse_unk", json_true());
    add_token(tj, 0, "<unk>", 1, 0, 0, 0, 0);
    add_token(tj, 1, "<s>", 1, 0, 0, 0, 0);
    add_token(tj, 2, "</s>", 1, 0, 0, 0, 0);
    json_object_set_new(tj, "normalizer",
                        json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}", "type", "Sequence", "normalizers",
                                  "type", "Prepend", "prepend", "\xE2\x96\x81", "type", "Replace", "pattern",
                                  "String", " ", "content", "\xE2\x96\x81"));
    json_object_set_new(tj, "post_processor",
                        json_pack("{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:{s:{s:s, s:[i], s:[s]}}}", "type",
                                  "TemplateProcessing", "single", "SpecialToken", "id", "<s>", "type_id", 0,
                                  "Sequence", "id", "A", "type_id", 0, "special_tokens", "<s>", "id", "<s>",
                                  "ids", 1, "tokens", "<s>"));
    json_object_set_new(tj, "decoder",
                        json_pack("{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]}", "type",
                                  "Sequence", "decoders", "type", "Replace", "pattern", "String", "\xE2\x96\x81",
                                  "content", " ", "type", "ByteFallback", "type", "Fuse", "type", "Strip",
                                  "content", " ", "start", 1, "stop", 0));
    return tj;
}

static void test_sentencepiece_byte_fallback(void **state)
{
    (void)state;
    BEGIN();
    tok *t = tj_open(sp_tj(1));
    assert_enc(t, "hi", true, "1 31");              /* BOS, ▁h + i merged */
    assert_enc(t, "hi ab", false, "31 29 3 4");     /* "▁hi▁ab": no ▁a token */
    /* € = E2 82 AC: <0xE2> <0x82> exist, <0xAC> does not -> <unk> */
    assert_enc(t, "\xE2\x82\xAC", false, "29 0");
    /* é = C3 A9: bytes; two unknown characters in a row fuse into one <unk> */
    assert_enc(t, "\xC3\xA9", false, "29 295 269");
    assert_enc(t, "\xE2\x82\xAC\xE2\x82\xAC" "a", false, "29 0 3");
    assert_enc(t, "<s>hi</s>", false, "1 31 2"); /* specials split out first; "hi" gets its own ▁ */
    assert_dec(t, "1 31 29 3 4", false, "<s> hi ab");
    assert_dec(t, "31 29 3 4", false, "hi ab");
    assert_dec(t, "31 295 269", false, "hi\xC3\xA9");
    assert_dec(t, "31 326 3", false, "hi\xEF\xBF\xBD" "a"); /* <0xE2> alone: U+FFFD */
    assert_dec(t, "1 31 2", true, "hi");                       /* skip_special */
    assert_int_equal(tok_bos(t), 1);
    assert_int_equal(tok_eos(t), 2); /* by name */
    assert_non_null(strstr(tok_describe(t), "byte fallback"));
    static const char *const RT[] = {"hello world", "  two  spaces ", "\xC3\xA9t\xC3\xA9 \xE6\x97\xA5\xE8\xAA\x9E",
                                     "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7"};
    for (size_t i = 0; i < sizeof RT / sizeof RT[0]; i++)
        assert_roundtrip(t, RT[i], strlen(RT[i]), RT[i], strlen(RT[i]));
    tok_close(t);
    t = tj_open(sp_tj(0)); /* without byte_fallback: <unk>, fused */
    assert_enc(t, "h\xC3\xA9\xC3\xA9", false, "30 0");
    tok_close(t);
    END();
}

static tok *norm_tok(json_t *normalizer)
{
    json_t *tj = chars_tj();
    json_object_set_new(tj, "normalizer", normalizer);
    return tj_open(tj);
}

static void test_normalizers(void **state)
{
    (void)state;
    BEGIN();
    static const struct {
        const char *type, *in, *want;
    } U[] = {
        {"NFC", "e\xCC\x81", "\xC3\xA9"},
        {"NFD", "\xC3\xA9", "e\xCC\x81"},
        {"NFKC", "\xEF\xAC\x81 \xE2\x91\xA0 e\xCC\x81", "fi 1 \xC3\xA9"},
        {"NFKD", "\xEF\xAC\x81\xC3\xA9", "fie\xCC\x81"},
        {"Lowercase", "HeLLo \xCE\xA3\xCE\x91\xCE\xA3 \xCE\xA3", "hello \xCF\x83\xCE\xB1\xCF\x82 \xCF\x83"},
        {"NFKC", "\xF0\x9C\xB3\x96", "A"}, /* U+1CCD6 (Unicode 16): by the delta table */
    };
    for (size_t i = 0; i < sizeof U / sizeof U[0]; i++) {
        tok *t = norm_tok(json_pack("{s:s}", "type", U[i].type));
        assert_pieces(t, U[i].in, U[i].want);
        tok_close(t);
    }
    tok *t = norm_tok(json_pack("{s:s, s:[{s:s}, {s:s}]}", "type", "Sequence", "normalizers", "type", "NFD", "type",
                                "StripAccents"));
    assert_pieces(t, "\xC3\xA9t\xC3\xA9", "ete");
    tok_close(t);
    t = norm_tok(json_pack("{s:s, s:b, s:b}", "type", "Strip", "strip_left", 1, "strip_right", 0));
    assert_pieces(t, " \t ab \xE3\x80\x80", "ab \xE3\x80\x80");
    tok_close(t);
    t = norm_tok(json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace", "pattern", "Regex", "\\s+", "content", "_"));
    assert_pieces(t, "a  b\t\tc", "a_b_c");
    tok_close(t);
    t = norm_tok(json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}", "type", "Sequence", "normalizers", "type",
                           "Prepend", "prepend", "\xE2\x96\x81", "type", "Replace", "pattern", "String", " ",
                           "content", "\xE2\x96\x81"));
    assert_pieces(t, "a b", "\xE2\x96\x81" "a\xE2\x96\x81" "b");
    assert_enc(t, "a b", false, "27 0 27 1");
    assert_enc(t, "", false, ""); /* Prepend leaves empty text empty */
    tok_close(t);
    END();
}

static void test_added_tokens(void **state)
{
    (void)state;
    BEGIN();
    json_t *tj = chars_tj();
    add_token(tj, 40, "<s>", 1, 0, 0, 0, 0);
    add_token(tj, 41, "<s>x", 1, 0, 0, 0, 0);
    add_token(tj, 42, "[L]", 0, 0, 1, 0, 0);
    add_token(tj, 43, "[R]", 0, 0, 0, 1, 0);
    add_token(tj, 44, "ab", 0, 0, 0, 0, 1);
    tok *t = tj_open(tj);
    assert_enc(t, "<s>xy", false, "41 24");                /* longest match */
    assert_enc(t, "y<s>y", false, "24 40 24");
    assert_enc(t, "a  [L] b", false, "0 42 26 1");          /* lstrip takes the spaces before */
    assert_enc(t, "a [R]  b", false, "0 26 43 1");          /* rstrip takes the spaces after */
    assert_enc(t, "ab c", false, "44 26 2");                /* single_word */
    assert_enc(t, "xab", false, "23 0 1");                  /* not a word of its own */
    assert_enc(t, "ab.", false, "44 28");
    assert_int_equal(tok_id(t, "<s>x"), 41);
    assert_int_equal(tok_id(t, "q"), 16);
    assert_int_equal(tok_id(t, "nope"), -1);
    assert_int_equal(tok_vocab_size(t), 45);
    assert_int_equal(tok_bos(t), 40);                       /* "<s>" by name */
    assert_dec(t, "40 0 42", false, "<s> a [L]");           /* no decoder: joined by spaces */
    assert_dec(t, "40 0 42", true, "a [L]");                /* only special ones are skipped */
    tok_close(t);

    /* normalized tokens match the normalized text */
    tj = chars_tj();
    json_object_set_new(tj, "normalizer", json_pack("{s:s}", "type", "Lowercase"));
    add_token(tj, 40, "HELLO", 0, 1, 0, 0, 0);
    add_token(tj, 41, "World", 0, 0, 0, 0, 0);
    t = tj_open(tj);
    assert_enc(t, "a Hello b", false, "0 26 40 26 1");
    assert_enc(t, "world World", false, "22 14 17 11 3 26 41"); /* normalized=false: raw text only */
    tok_close(t);
    END();
}

static void test_post_processors(void **state)
{
    (void)state;
    BEGIN();
    json_t *tj = hello_tj(0);
    add_token(tj, 300, "<|begin_of_text|>", 1, 0, 0, 0, 0);
    add_token(tj, 301, "<|end_of_text|>", 1, 0, 0, 0, 0);
    json_object_set_new(
        tj, "post_processor",
        json_pack("{s:s, s:[{s:s}, {s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}], s:{s:{s:[i]}, s:{s:[i]}}}]}",
                  "type", "Sequence", "processors", "type", "ByteLevel", "type", "TemplateProcessing", "single",
                  "SpecialToken", "id", "<|begin_of_text|>", "type_id", 0, "Sequence", "id", "A", "type_id", 0,
                  "SpecialToken", "id", "<|end_of_text|>", "type_id", 0, "special_tokens", "<|begin_of_text|>",
                  "ids", 300, "<|end_of_text|>", "ids", 301));
    tok *t = tj_open(tj);
    assert_enc(t, "hello", true, "300 259 301");
    assert_enc(t, "hello", false, "259");
    assert_enc(t, "", true, "300 301");
    assert_int_equal(tok_bos(t), 300);
    assert_int_equal(tok_eos(t), 301);
    assert_dec(t, "300 259 264 301", false, "<|begin_of_text|>hello world<|end_of_text|>");
    assert_dec(t, "300 259 264 301", true, "hello world");
    tok_close(t);

    tj = hello_tj(0);
    json_object_set_new(tj, "post_processor",
                        json_pack("{s:s, s:[s, i], s:[s, i]}", "type", "RobertaProcessing", "sep", "</s>", 2, "cls",
                                  "<s>", 1));
    t = tj_open(tj);
    assert_enc(t, "hello", true, "1 259 2");
    tok_close(t);

    /* names: <|endoftext|> is an EOS, not a BOS */
    tj = hello_tj(0);
    add_token(tj, 300, "<|endoftext|>", 1, 1, 0, 0, 0);
    t = tj_open(tj);
    assert_int_equal(tok_bos(t), -1);
    assert_int_equal(tok_eos(t), 300);
    assert_enc(t, "hello<|endoftext|>", true, "259 300"); /* no post-processor: nothing added */
    tok_close(t);
    END();
}

static void test_decoders(void **state)
{
    (void)state;
    BEGIN();
    /* ByteFallback and Fuse then Replace on the fused text; Strip both ends */
    json_t *tj = sp_tj(1);
    json_object_set_new(tj, "decoder",
                        json_pack("{s:s, s:[{s:s}, {s:s}, {s:s, s:{s:s}, s:s}, {s:s, s:s, s:i, s:i}]}", "type",
                                  "Sequence", "decoders", "type", "ByteFallback", "type", "Fuse", "type", "Replace",
                                  "pattern", "Regex", "\xE2\x96\x81+", "content", "_", "type", "Strip", "content", "_",
                                  "start", 1, "stop", 1));
    tok *t = tj_open(tj);
    assert_dec(t, "29 31 29 29 3 29", false, "hi_a");
    assert_dec(t, "295 269 295", false, "\xC3\xA9\xEF\xBF\xBD"); /* C3 A9 C3: é then a lone lead byte */
    tok_close(t);

    tj = chars_tj();
    json_object_set_new(tj, "decoder", json_pack("{s:s, s:s}", "type", "BPEDecoder", "suffix", "e"));
    t = tj_open(tj);
    assert_dec(t, "7 4 8 4", false, "h i"); /* suffix -> space, the last one -> nothing */
    tok_close(t);

    /* ByteLevel: added tokens pass through, byte runs decode as UTF-8 */
    tj = hello_tj(0);
    add_token(tj, 300, "<x>", 1, 0, 0, 0, 0);
    t = tj_open(tj);
    assert_dec(t, "259 300 226 130 172 300 226", false, "hello<x>\xE2\x82\xAC<x>\xEF\xBF\xBD");
    tok_close(t);
    END();
}

/* decode(encode(x)) is x after invalid UTF-8 became U+FFFD the WHATWG way. */
static void test_roundtrip_and_invalid_utf8(void **state)
{
    (void)state;
    BEGIN();
    tok *t = tj_open(hello_tj(0));
    static const struct {
        const char *in;
        size_t len; /* 0: strlen */
        const char *want;
        size_t want_len;
    } C[] = {
        {"hello world", 0, "hello world", 0},
        {"\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 \xF0\x9F\x8F\xB3\xEF\xB8\x8F", 0,
         "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 \xF0\x9F\x8F\xB3\xEF\xB8\x8F", 0},
        {"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E e\xCC\x81 \xD8\xB9", 0,
         "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E e\xCC\x81 \xD8\xB9", 0},
        {"a\0b", 3, "a\0b", 3},
        {"\xFF\xFE", 0, "\xEF\xBF\xBD\xEF\xBF\xBD", 0},
        {"\xE2\x82", 0, "\xEF\xBF\xBD", 0}, /* truncated: one U+FFFD */
        {"\xE2\x82" "a", 0, "\xEF\xBF\xBD" "a", 0},
        {"\xED\xA0\x80", 0, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 0}, /* surrogate: ED, then two strays */
        {"\xC0\x80", 0, "\xEF\xBF\xBD\xEF\xBF\xBD", 0},
        {"\xF0\x9F\x98", 0, "\xEF\xBF\xBD", 0},
        {"\xF4\x90\x80\x80", 0, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 0},
        {"\xEF\xBB\xBFx", 0, "\xEF\xBB\xBFx", 0}, /* a BOM stays */
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++)
        assert_roundtrip(t, C[i].in, C[i].len ? C[i].len : strlen(C[i].in), C[i].want,
                         C[i].want_len ? C[i].want_len : strlen(C[i].want));
    /* the ids of invalid input are the ids of its replacement */
    char *a = enc_n(t, "x\xFFy", 3, false), *b = enc_n(t, "x\xEF\xBF\xBDy", 5, false);
    assert_string_equal(a, b);
    free(a);
    free(b);
    tok_close(t);
    END();
}

/* Encoding through one scratch many times gives what fresh calls give. */
static void test_scratch_reuse(void **state)
{
    (void)state;
    BEGIN();
    tok *t = tj_open(hello_tj(0));
    tok_scratch *sc;
    rt_err err = {{0}};
    assert_int_equal(tok_scratch_init(t, &sc, &err), 0);
    int32_t *ids = NULL;
    size_t n, cap = 0;
    unsigned seed = 7;
    for (int i = 0; i < 2000; i++) {
        char text[512];
        size_t len = random_text(&seed, text, sizeof text);
        assert_int_equal(tok_encode_with(t, sc, text, len, true, &ids, &n, &cap, &err), 0);
        char *want = enc_n(t, text, len, true);
        char got[4096] = "";
        size_t o = 0;
        for (size_t k = 0; k < n; k++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%d", k ? " " : "", ids[k]);
        assert_string_equal(got, want);
        free(want);
    }
    free(ids);
    tok_scratch_free(sc);
    tok_close(t);
    END();
}

/* ---- tests: refused files -------------------------------------------------------------- */

static void test_refused(void **state)
{
    (void)state;
    BEGIN();
    json_t *tj;

    tj = tj_new(char_vocab("ab", 0), NULL);
    json_object_set_new(json_object_get(tj, "model"), "type", json_string("WordPiece"));
    tj_refused(tj, "model.type \"WordPiece\" is not supported (only BPE)", NULL);

    tj = tj_new(char_vocab("ab", 0), NULL);
    json_object_set_new(json_object_get(tj, "model"), "type", json_string("Unigram"));
    tj_refused(tj, "model.type \"Unigram\" is not supported", NULL);

    tj = chars_tj();
    json_object_set_new(tj, "pre_tokenizer",
                        json_pack("{s:s, s:[{s:s}, {s:s}]}", "type", "Sequence", "pretokenizers", "type", "Digits",
                                  "type", "Whitespace"));
    tj_refused(tj, "pre_tokenizer.pretokenizers[1].type \"Whitespace\" is not supported", NULL);

    tj = chars_tj();
    json_object_set_new(tj, "normalizer", json_pack("{s:s}", "type", "BertNormalizer"));
    tj_refused(tj, "normalizer.type \"BertNormalizer\" is not supported", NULL);

    tj = chars_tj();
    json_object_set_new(tj, "normalizer",
                        json_pack("{s:s, s:[{s:s}, {s:s}]}", "type", "Sequence", "normalizers", "type", "NFC",
                                  "type", "Precompiled"));
    tj_refused(tj, "normalizer.normalizers[1].type \"Precompiled\"", NULL);

    tj = chars_tj();
    json_object_set_new(tj, "decoder", json_pack("{s:s}", "type", "CTC"));
    tj_refused(tj, "decoder.type \"CTC\" is not supported", NULL);

    tj = chars_tj();
    json_object_set_new(tj, "post_processor", json_pack("{s:s}", "type", "Nonsense"));
    tj_refused(tj, "post_processor.type \"Nonsense\" is not supported", NULL);

    tj = tj_new(char_vocab("ab", 0), json_pack("[s, s]", "a b", "a zz"));
    vset(json_object_get(json_object_get(tj, "model"), "vocab"), "ab", 2);
    tj_refused(tj, "model.merges[1]", "\"zz\" is not in model.vocab", NULL);

    tj = tj_new(char_vocab("ab", 0), json_pack("[s]", "a b")); /* "ab" itself is missing */
    tj_refused(tj, "model.merges[0]", "\"ab\" is not in model.vocab", NULL);

    tj = tj_new(char_vocab("ab", 0), json_pack("[s]", "a  b"));
    tj_refused(tj, "model.merges[0]", "one space", NULL);

    tj = tj_new(char_vocab("ab", 0), json_pack("[i]", 3));
    tj_refused(tj, "model.merges[0] is a JSON integer", NULL);

    tj = chars_tj();
    model_set(tj, "dropout", json_real(0.1));
    tj_refused(tj, "model.dropout", "not supported", NULL);

    tj = chars_tj();
    model_set(tj, "unk_token", json_string("<nope>"));
    tj_refused(tj, "model.unk_token \"<nope>\" is not in model.vocab", NULL);

    tj = chars_tj();
    vset(json_object_get(json_object_get(tj, "model"), "vocab"), "neg", -3);
    tj_refused(tj, "model.vocab[\"neg\"]", NULL);

    tj = chars_tj();
    json_object_set_new(tj, "pre_tokenizer",
                        json_pack("{s:s, s:{s:s}, s:s}", "type", "Split", "pattern", "Regex", "(unclosed", "behavior",
                                  "Isolated"));
    tj_refused(tj, "pre_tokenizer.pattern.Regex \"(unclosed\" does not compile", NULL);

    tj = chars_tj();
    json_object_set_new(tj, "pre_tokenizer",
                        json_pack("{s:s, s:{s:s}, s:s}", "type", "Split", "pattern", "String", "x", "behavior",
                                  "Sideways"));
    tj_refused(tj, "pre_tokenizer.behavior \"Sideways\"", NULL);

    tj = chars_tj();
    json_object_set_new(tj, "added_tokens", json_pack("[{s:s}]", "content", "x"));
    tj_refused(tj, "added_tokens", "id", NULL);

    tj = chars_tj();
    json_object_set_new(tj, "post_processor",
                        json_pack("{s:s, s:[{s:{s:s}}]}", "type", "TemplateProcessing", "single", "SpecialToken",
                                  "id", "<nope>"));
    tj_refused(tj, "post_processor.single[0].SpecialToken.id \"<nope>\"", NULL);

    char path[PATH_MAX];
    tok *t = NULL;
    rt_err err = {{0}};
    write_bytes(tpath(path, sizeof path, "bad.json"), "{\"model\": [1, 2", 15);
    assert_true(tok_open(path, &t, &err) < 0);
    assert_non_null(strstr(err.msg, "not valid JSON"));
    assert_non_null(strstr(err.msg, path));
    assert_true(tok_open(tpath(path, sizeof path, "missing.json"), &t, &err) < 0);
    assert_non_null(strstr(err.msg, "missing.json"));
    /* a directory means its tokenizer.json */
    assert_true(tok_open(g_dir, &t, &err) < 0);
    assert_non_null(strstr(err.msg, "tokenizer.json"));
    END();
}

static void test_directory(void **state)
{
    (void)state;
    BEGIN();
    char dir[PATH_MAX], path[PATH_MAX + 32];
    tpath(dir, sizeof dir, "model");
    assert_int_equal(mkdir(dir, 0755), 0);
    json_t *tj = hello_tj(0);
    char *s = json_dumps(tj, JSON_COMPACT);
    json_decref(tj);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    write_bytes(path, s, strlen(s));
    free(s);
    tok *t;
    rt_err err = {{0}};
    assert_int_equal(tok_open(dir, &t, &err), 0);
    assert_enc(t, "hello", false, "259");
    tok_close(t);
    END();
}

/* ---- tests: ramtrain tokenize --------------------------------------------------------------- */

static char g_ramtrain[PATH_MAX + 32];

/* The ramtrain binary next to this test (build/tests -> build/bin), or "". */
static const char *ramtrain_path(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return "";
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash == NULL)
        return "";
    *slash = 0;
    snprintf(g_ramtrain, sizeof g_ramtrain, "%s/../bin/ramtrain", self);
    return access(g_ramtrain, X_OK) == 0 ? g_ramtrain : "";
}

/* Runs ramtrain tokenize ARGS... with in[len] on stdin; returns the exit
 * code, stdout in *out (malloc'd, NUL-terminated) and stderr in err_text. */
static int run_cli(const char *in, size_t len, char **out, size_t *out_len, char *err_text, size_t err_cap,
                   const char *arg0, ...)
{
    char inp[PATH_MAX], outp[PATH_MAX], errp[PATH_MAX];
    write_bytes(tpath(inp, sizeof inp, "cli.in"), in, len);
    tpath(outp, sizeof outp, "cli.out");
    tpath(errp, sizeof errp, "cli.err");
    const char *argv[16] = {g_ramtrain, "tokenize"};
    int argc = 2;
    va_list ap;
    va_start(ap, arg0);
    for (const char *a = arg0; a != NULL && argc < 15; a = va_arg(ap, const char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (freopen(inp, "rb", stdin) == NULL || freopen(outp, "wb", stdout) == NULL ||
            freopen(errp, "wb", stderr) == NULL)
            _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    FILE *f = fopen(outp, "rb");
    assert_non_null(f);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (size_t k; (k = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += k;
        if (cap - n < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(f);
    buf[n] = 0;
    *out = buf;
    *out_len = n;
    f = fopen(errp, "rb");
    assert_non_null(f);
    size_t e = fread(err_text, 1, err_cap - 1, f);
    err_text[e] = 0;
    fclose(f);
    return WEXITSTATUS(status);
}

#define CLI_EXPECT(rc_want, out_want, in, ...)                                                  \
    do {                                                                                      \
        char *o_;                                                                             \
        size_t ol_;                                                                           \
        char e_[2048];                                                                        \
        int rc_ = run_cli(in, sizeof in - 1, &o_, &ol_, e_, sizeof e_, __VA_ARGS__, NULL);    \
        if (rc_ != (rc_want) || strcmp(o_, out_want) != 0)                                    \
            fprintf(stderr, "ramtrain tokenize: rc %d, stdout \"%s\", stderr \"%s\"\n", rc_, o_, e_); \
        assert_int_equal(rc_, rc_want);                                                       \
        assert_string_equal(o_, out_want);                                                    \
        free(o_);                                                                             \
    } while (0)

static void test_cli(void **state)
{
    (void)state;
    if (ramtrain_path()[0] == 0) {
        fprintf(stderr, "test_cli: no ramtrain binary next to this test, skipped\n");
        skip();
    }
    BEGIN();
    /* line format: a last line without \n counts; an empty line stays a line */
    CLI_EXPECT(0, "256 97 98\n256\n256 99\n", "ab\n\nc", "--threads", "1");
    CLI_EXPECT(0, "97 98\n\n99\n", "ab\n\nc\n", "--no-special");
    CLI_EXPECT(0, "", "", "--no-special");
    CLI_EXPECT(0, "\n", "\n", "--no-special");
    CLI_EXPECT(0, "97 13\n", "a\r\n", "--no-special"); /* only \n ends a line */
    CLI_EXPECT(0, "hi\n\n<|bos|>h\nh\ni\n", "104 105\n\n256 104\n104 10 105", "--decode");
    char path[PATH_MAX];
    tj_write(hello_tj(0), path, sizeof path);
    CLI_EXPECT(0, "259 264\n259\n", "hello world\nhello", "--tokenizer", path, "--no-special");
    CLI_EXPECT(0, "hello world\n\xEF\xBF\xBD\n", "259 264\n226", "--tokenizer", path, "--decode");
    CLI_EXPECT(0, "104 239 191 189\n", "h\xFF", "--tokenizer", path);

    /* bad input: exit 2 and a message naming what is wrong */
    char *o;
    size_t ol;
    char e[2048];
    assert_int_equal(run_cli("1 2\n3 x\n", 8, &o, &ol, e, sizeof e, "--decode", NULL), 2);
    assert_non_null(strstr(e, "line 2"));
    assert_non_null(strstr(e, "\"x\""));
    free(o);
    assert_int_equal(run_cli("1 999999\n", 9, &o, &ol, e, sizeof e, "--decode", "--tokenizer", path, NULL), 2);
    assert_non_null(strstr(e, "999999"));
    free(o);
    assert_int_equal(run_cli("", 0, &o, &ol, e, sizeof e, "--bogus", NULL), 2);
    assert_non_null(strstr(e, "--bogus"));
    free(o);
    assert_int_equal(run_cli("", 0, &o, &ol, e, sizeof e, "--threads", "0", NULL), 2);
    free(o);
    char bad[PATH_MAX];
    json_t *tj = chars_tj();
    json_object_set_new(tj, "pre_tokenizer", json_pack("{s:s}", "type", "Whitespace"));
    tj_write(tj, bad, sizeof bad);
    assert_int_equal(run_cli("x\n", 2, &o, &ol, e, sizeof e, "--tokenizer", bad, NULL), 2);
    assert_non_null(strstr(e, bad));
    assert_non_null(strstr(e, "\"Whitespace\""));
    free(o);

    /* several threads, several blocks: the same output as one thread */
    size_t big = 5u << 20, n = 0, lines = 0;
    char *text = malloc(big + 64);
    assert_non_null(text);
    unsigned seed = 99;
    while (n < big) {
        n += random_text(&seed, text + n, 200);
        text[n++] = '\n';
    }
    for (size_t i = 0; i < n; i++)
        lines += text[i] == '\n';
    char inp[PATH_MAX];
    write_bytes(tpath(inp, sizeof inp, "big.in"), text, n);
    char *o1, *o3;
    size_t l1, l3;
    assert_int_equal(run_cli(text, n, &o1, &l1, e, sizeof e, "--tokenizer", path, "--threads", "1", NULL), 0);
    assert_int_equal(run_cli(text, n, &o3, &l3, e, sizeof e, "--tokenizer", path, "--threads", "3", NULL), 0);
    assert_int_equal(l1, l3);
    assert_memory_equal(o1, o3, l1);
    size_t out_lines = 0;
    for (size_t i = 0; i < l1; i++)
        out_lines += o1[i] == '\n';
    assert_int_equal(out_lines, lines);
    /* and decoding the ids gives the text back */
    char *d;
    size_t dl;
    assert_int_equal(run_cli(o1, l1, &d, &dl, e, sizeof e, "--tokenizer", path, "--decode", "--threads", "2", NULL), 0);
    assert_int_equal(dl, n);
    assert_memory_equal(d, text, n);
    free(d);
    free(o1);
    free(o3);
    free(text);
    END();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_tokenizer),
        cmocka_unit_test(test_merges_both_forms),
        cmocka_unit_test(test_merge_order),
        cmocka_unit_test(test_ignore_merges),
        cmocka_unit_test(test_bytelevel_pretokenizer),
        cmocka_unit_test(test_fast_splitters_vs_oniguruma),
        cmocka_unit_test(test_split_behaviors),
        cmocka_unit_test(test_digits_and_whitespace_split),
        cmocka_unit_test(test_metaspace),
        cmocka_unit_test(test_sentencepiece_byte_fallback),
        cmocka_unit_test(test_normalizers),
        cmocka_unit_test(test_added_tokens),
        cmocka_unit_test(test_post_processors),
        cmocka_unit_test(test_decoders),
        cmocka_unit_test(test_roundtrip_and_invalid_utf8),
        cmocka_unit_test(test_scratch_reuse),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_directory),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
