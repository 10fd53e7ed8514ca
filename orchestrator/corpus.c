/*
 * corpus: generated stories for the default run (see corpus.h).
 *
 * A story is a fixed arc — opening, habits, an outing, a meeting, talk, a
 * problem, a feeling, its solution, an ending, sometimes a moral — where
 * each step picks one of several templates and the templates' slots are
 * filled from word lists. The characters (name, pronouns, kind of animal),
 * the object, the place and the favourite activity are drawn once per story
 * and reused by every sentence, so a model that reads the story so far can
 * predict names and pronouns, not only frequent words. Articles are fixed
 * afterwards ("a owl" -> "an owl"), sentence starts capitalised.
 *
 * The random stream is rng.h's xoshiro256** from the seed, consumed in a
 * fixed order, so the text is the same on every machine.
 *
 * Rejected: embedding real text (size, licences); a Markov chain over a
 * word list (fluent locally, but without the long-range structure —
 * recurring names, a story arc — that makes a model's loss keep falling).
 */
#include "orchestrator/corpus.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "services/common/rng.h"

#define N_OF(a) (sizeof(a) / sizeof *(a))
#define CORPUS_IO_CHUNK (256u << 10) /* bytes buffered per write */

typedef struct corpus_name {
    const char *name;
    bool she;
} corpus_name;

static const corpus_name c_names[] = {
    {"Tom", false}, {"Lily", true}, {"Max", false}, {"Mia", true},   {"Ben", false},  {"Sue", true},
    {"Sam", false}, {"Anna", true}, {"Tim", false}, {"Lucy", true},  {"Jack", false}, {"Emma", true},
    {"Leo", false}, {"Zoe", true},  {"Dan", false}, {"Kim", true},   {"Ted", false},  {"Rose", true},
    {"Finn", false}, {"Ella", true}, {"Bob", false}, {"Amy", true},  {"Joe", false},  {"Ivy", true},
    {"Ned", false}, {"Molly", true}, {"Pip", false}, {"Daisy", true}, {"Rex", false}, {"Luna", true},
};

static const char *const c_animals[] = {
    "cat",   "dog",  "bunny", "bird",  "fox",    "bear",   "frog",     "duck",   "mouse",  "owl",
    "pig",   "cow",  "horse", "lion",  "tiger",  "turtle", "fish",     "sheep",  "goat",   "squirrel",
    "deer",  "hen",  "puppy", "kitten", "monkey", "elephant", "bee",   "snail",  "wolf",   "raccoon",
};

static const char *const c_adjs[] = {
    "little", "big",   "happy",  "small",   "brave",  "kind",    "shy",      "silly",   "funny",  "sleepy",
    "curious", "clever", "gentle", "busy",   "quiet",  "tiny",    "friendly", "proud",   "lazy",   "fast",
    "slow",   "old",   "young",  "strong",  "smart",  "cheerful", "grumpy",  "careful", "playful", "polite",
};

static const char *const c_colors[] = {"red",  "blue", "green", "yellow", "purple", "pink",
                                       "orange", "white", "black", "brown", "gold", "silver"};

static const char *const c_places[] = {"park", "forest", "garden", "beach",  "farm",  "river", "hill",
                                       "town", "field",  "lake",   "meadow", "village", "pond", "woods",
                                       "playground", "market", "school", "zoo", "cave", "island"};

static const char *const c_homes[] = {"house", "nest", "tree", "hole", "burrow", "barn", "hut", "cottage", "den"};

static const char *const c_objects[] = {
    "ball", "kite", "hat",  "box",    "book",  "toy",    "drum",    "boat",  "cup",    "key",
    "shell", "stone", "leaf", "flower", "feather", "map",  "bell",    "car",   "doll",   "balloon",
    "blanket", "apple", "cookie", "coin", "ring", "sock", "crayon", "spoon", "basket", "jar",
};

/* base, past, -ing */
static const char *const c_verbs[][3] = {
    {"play", "played", "playing"},     {"run", "ran", "running"},           {"jump", "jumped", "jumping"},
    {"swim", "swam", "swimming"},      {"dance", "danced", "dancing"},      {"sing", "sang", "singing"},
    {"read", "read", "reading"},       {"paint", "painted", "painting"},    {"climb", "climbed", "climbing"},
    {"dig", "dug", "digging"},         {"fly", "flew", "flying"},           {"build", "built", "building"},
    {"draw", "drew", "drawing"},       {"hop", "hopped", "hopping"},        {"explore", "explored", "exploring"},
    {"bake", "baked", "baking"},       {"skip", "skipped", "skipping"},     {"ride", "rode", "riding"},
    {"fish", "fished", "fishing"},     {"hide", "hid", "hiding"},
};

static const char *const c_feels[] = {"happy", "sad",   "scared", "excited", "angry", "surprised", "proud", "tired",
                                      "worried", "glad", "lonely", "calm",   "hungry", "sorry",    "curious"};

static const char *const c_foods[] = {"cake", "soup", "bread", "honey", "berries", "carrots", "cheese", "pie",
                                      "corn", "nuts", "milk",  "jam",   "rice",    "pears",   "grapes"};

static const char *const c_times[] = {"morning", "afternoon", "evening", "day", "summer day", "winter morning",
                                      "rainy day", "sunny day", "spring morning", "cold night"};

static const char *const c_spots[] = {"under the bed", "behind the tree", "in the tall grass", "near the pond",
                                      "inside the old box", "on the roof", "by the door", "under a big rock",
                                      "next to the fence", "in the sand"};

static const char *const c_sounds[] = {"a loud noise", "a soft song", "a funny sound", "a little cry",
                                       "a big splash", "a happy laugh"};

/* Templates. Slots: {N} {F} the hero's and the friend's names, {A} {FA}
 * their kinds of animal, {he} {him} {his} {fhe} {fhim} {fhis} their
 * pronouns, {O} the story's object, {place}, {home}, {act} {acted} {acting}
 * the hero's favourite activity; drawn anew at each use: {adj} {color}
 * {feel} {food} {time} {spot} {sound} {obj}. */
static const char *const t_open[] = {
    "once upon a time, there was a {adj} {A} named {N}.",
    "{N} was a {adj} {A} who lived in a {color} {home} near the {place}.",
    "there once lived a {A} called {N}.",
    "in a {adj} {place} far away, there lived a {color} {A} named {N}.",
    "a long time ago, a {adj} {A} named {N} lived in a {home} by the {place}.",
    "{N} the {A} lived in a {adj} {home}.",
};

static const char *const t_habit[] = {
    "{he} loved to {act} every day.",
    "every {time}, {N} liked to {act} with {his} {O}.",
    "{N} had a {color} {O} that {he} liked very much.",
    "more than anything, {N} wanted to {act} like the big {A} next door.",
    "{his} favorite thing to eat was {food}.",
    "{N} was very good at {acting}.",
};

static const char *const t_outing[] = {
    "one {time}, {N} went to the {place} to {act}.",
    "one {time}, {N} took {his} {O} and walked to the {place}.",
    "on a {adj} {time}, {N} wanted to go to the {place}.",
    "one {time}, {N} could not find {his} {O}, so {he} went to look for it at the {place}.",
    "the next {time}, {N} packed some {food} and went to the {place}.",
};

static const char *const t_meet[] = {
    "there, {he} met a {adj} {FA} named {F}.",
    "at the {place}, {N} saw a {FA}. the {FA} said, \"Hi, I am {F}.\"",
    "just then, a {adj} {FA} called {F} came by.",
    "on the way, {N} heard {sound}. it was {F}, a {adj} {FA}.",
};

static const char *const t_talk[] = {
    "\"Hello, {F}!\" said {N}. \"Do you want to {act} with me?\"",
    "{F} asked, \"What are you doing, {N}?\" \"I am {acting},\" said {N}.",
    "\"Can I see your {O}?\" asked {F}. \"Yes, you can,\" said {N}.",
    "\"I like your {O},\" said {F}. {N} smiled and said, \"Thank you!\"",
    "{N} said, \"Let us {act} together!\" {F} was very {feel}.",
    "\"Where are you going?\" asked {F}. \"To the {place},\" said {N}.",
};

static const char *const t_problem[] = {
    "but then, the {O} fell into the river.",
    "suddenly, a big wind came and took the {O} away.",
    "but the {O} got stuck high up in a tree.",
    "then it began to rain, and {N} lost {his} {O}.",
    "but {N} dropped the {O}, and it broke into two pieces.",
    "then the sky got dark, and {N} could not find the way home.",
};

static const char *const t_feel[] = {
    "{N} felt very {feel}.",
    "{N} was so {feel} that {he} began to cry.",
    "{he} did not know what to do.",
    "\"Oh no!\" said {N}. \"What can I do?\"",
    "{N} sat down and looked {feel}.",
};

static const char *const t_solve[] = {
    "{F} had an idea. {fhe} looked {spot} and found the {O}.",
    "{F} said, \"Do not be {feel}. I will help you.\" together they looked {spot}, and at last they found the {O}.",
    "{F} was {adj} and quick. {fhe} climbed up and got the {O} back.",
    "{F} gave {N} some {food}, and then they walked home together.",
    "{N} and {F} worked hard, and soon everything was fine again.",
    "{F} knew the way. {fhe} took {N} by the hand and led {him} home.",
};

static const char *const t_end[] = {
    "from that day on, {N} and {F} were best friends.",
    "{N} was happy again. {he} said, \"Thank you, {F}!\"",
    "they played with the {O} until the sun went down.",
    "that night, {N} went to sleep with a big smile.",
    "{N} and {F} ate {food} and laughed all evening.",
    "the next day, {N} and {F} went to {act} at the {place} again.",
};

static const char *const t_moral[] = {
    "{N} learned that it is good to help a friend.",
    "the end.",
    "{N} learned to be careful with {his} things.",
    "and {N} never felt {feel} again.",
    "friends make every day better.",
};

typedef struct corpus_story {
    rng_state *rng;
    const corpus_name *hero, *friend_;
    const char *animal, *friend_animal, *object, *place, *home;
    const char *const *verb; /* [3] */
} corpus_story;

static uint32_t c_pick(rng_state *r, size_t n) { return (uint32_t)(rng_next(r) % n); }

static bool c_chance(rng_state *r, unsigned percent) { return c_pick(r, 100) < percent; }

/* Appends s to out[*n] (cap: CORPUS_MAX_STORY); false when it would not fit. */
static bool c_put(char *out, size_t *n, const char *s)
{
    size_t len = strlen(s);
    if (*n + len >= CORPUS_MAX_STORY)
        return false;
    memcpy(out + *n, s, len);
    *n += len;
    out[*n] = '\0';
    return true;
}

static const char *c_slot(corpus_story *st, const char *name, size_t len)
{
    static const struct { const char *slot; int id; } slots[] = {
        {"N", 0},    {"F", 1},     {"A", 2},      {"FA", 3},     {"he", 4},     {"him", 5},     {"his", 6},
        {"fhe", 7},  {"fhim", 8},  {"fhis", 9},   {"O", 10},     {"place", 11}, {"home", 12},   {"act", 13},
        {"acted", 14}, {"acting", 15}, {"adj", 16}, {"color", 17}, {"feel", 18}, {"food", 19},   {"time", 20},
        {"spot", 21}, {"sound", 22}, {"obj", 23},
    };
    int id = -1;
    for (size_t i = 0; i < N_OF(slots); i++)
        if (strlen(slots[i].slot) == len && memcmp(slots[i].slot, name, len) == 0)
            id = slots[i].id;
    rng_state *r = st->rng;
    switch (id) {
    case 0: return st->hero->name;
    case 1: return st->friend_->name;
    case 2: return st->animal;
    case 3: return st->friend_animal;
    case 4: return st->hero->she ? "she" : "he";
    case 5: return st->hero->she ? "her" : "him";
    case 6: return st->hero->she ? "her" : "his";
    case 7: return st->friend_->she ? "she" : "he";
    case 8: return st->friend_->she ? "her" : "him";
    case 9: return st->friend_->she ? "her" : "his";
    case 10: return st->object;
    case 11: return st->place;
    case 12: return st->home;
    case 13: return st->verb[0];
    case 14: return st->verb[1];
    case 15: return st->verb[2];
    case 16: return c_adjs[c_pick(r, N_OF(c_adjs))];
    case 17: return c_colors[c_pick(r, N_OF(c_colors))];
    case 18: return c_feels[c_pick(r, N_OF(c_feels))];
    case 19: return c_foods[c_pick(r, N_OF(c_foods))];
    case 20: return c_times[c_pick(r, N_OF(c_times))];
    case 21: return c_spots[c_pick(r, N_OF(c_spots))];
    case 22: return c_sounds[c_pick(r, N_OF(c_sounds))];
    case 23: return c_objects[c_pick(r, N_OF(c_objects))];
    default: return "?"; /* a template typo; the tests read the text */
    }
}

static bool c_is_vowel(char ch) { return ch == 'a' || ch == 'e' || ch == 'i' || ch == 'o' || ch == 'u'; }

static char c_upper(char ch) { return ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch; }

/* Appends one sentence from templates[n]: slots filled, "a" before a vowel
 * made "an", the first letter of each sentence capitalised. */
static bool c_sentence(corpus_story *st, const char *const *templates, size_t n, char *out, size_t *len)
{
    const char *t = templates[c_pick(st->rng, n)];
    char s[1024];
    size_t k = 0;
    for (const char *p = t; *p;) {
        const char *piece = p;
        size_t plen = 1;
        if (*p == '{') {
            const char *close = strchr(p, '}');
            piece = c_slot(st, p + 1, (size_t)(close - p - 1));
            plen = strlen(piece);
            p = close + 1;
        } else {
            p++;
        }
        if (k + plen + 2 >= sizeof s)
            return false;
        /* "a" + " " + vowel-initial word: the "a" becomes "an" */
        if (c_is_vowel(piece[0]) && k >= 2 && s[k - 1] == ' ' && (s[k - 2] == 'a' || s[k - 2] == 'A') &&
            (k == 2 || s[k - 3] == ' ' || s[k - 3] == '"')) {
            s[k - 1] = 'n';
            s[k++] = ' ';
        }
        memcpy(s + k, piece, plen);
        k += plen;
    }
    s[k] = '\0';
    /* capitals: the first letter, and the first after ". ", "! ", "? " (a quote may sit between) */
    bool cap = true;
    for (size_t i = 0; i < k; i++) {
        if (cap && s[i] >= 'a' && s[i] <= 'z') {
            s[i] = c_upper(s[i]);
            cap = false;
        } else if (s[i] != '"' && s[i] != ' ') {
            cap = false;
        }
        if ((s[i] == '.' || s[i] == '!' || s[i] == '?') && i + 1 < k && (s[i + 1] == ' ' || s[i + 1] == '"'))
            cap = true;
        if (s[i] == ',' || (s[i] == '"' && i > 0 && s[i - 1] != ' ' && s[i - 1] != '.'))
            cap = false;
    }
    return (*len == 0 || c_put(out, len, " ")) && c_put(out, len, s);
}

/* One story into out[CORPUS_MAX_STORY], without a trailing newline; its length. */
static size_t c_story(rng_state *r, char *out)
{
    corpus_story st = {.rng = r};
    st.hero = &c_names[c_pick(r, N_OF(c_names))];
    do
        st.friend_ = &c_names[c_pick(r, N_OF(c_names))];
    while (st.friend_ == st.hero);
    st.animal = c_animals[c_pick(r, N_OF(c_animals))];
    st.friend_animal = c_animals[c_pick(r, N_OF(c_animals))];
    st.object = c_objects[c_pick(r, N_OF(c_objects))];
    st.place = c_places[c_pick(r, N_OF(c_places))];
    st.home = c_homes[c_pick(r, N_OF(c_homes))];
    st.verb = c_verbs[c_pick(r, N_OF(c_verbs))];

    size_t n = 0;
    out[0] = '\0';
    bool ok = c_sentence(&st, t_open, N_OF(t_open), out, &n);
    if (c_chance(r, 80))
        ok = ok && c_sentence(&st, t_habit, N_OF(t_habit), out, &n);
    if (c_chance(r, 40))
        ok = ok && c_sentence(&st, t_habit, N_OF(t_habit), out, &n);
    ok = ok && c_sentence(&st, t_outing, N_OF(t_outing), out, &n);
    ok = ok && c_sentence(&st, t_meet, N_OF(t_meet), out, &n);
    if (c_chance(r, 75))
        ok = ok && c_sentence(&st, t_talk, N_OF(t_talk), out, &n);
    ok = ok && c_sentence(&st, t_problem, N_OF(t_problem), out, &n);
    if (c_chance(r, 85))
        ok = ok && c_sentence(&st, t_feel, N_OF(t_feel), out, &n);
    ok = ok && c_sentence(&st, t_solve, N_OF(t_solve), out, &n);
    ok = ok && c_sentence(&st, t_end, N_OF(t_end), out, &n);
    if (c_chance(r, 50))
        ok = ok && c_sentence(&st, t_moral, N_OF(t_moral), out, &n);
    (void)ok; /* stories are a few hundred bytes: CORPUS_MAX_STORY is never reached */
    return n;
}

/* Calls emit on each piece of the corpus of at most `bytes`: stories
 * "s1\n", "\n", "s2\n", ... */
typedef int (*c_emit_fn)(const char *p, size_t n, void *user);

static int c_generate(size_t bytes, uint64_t seed, c_emit_fn emit, void *user)
{
    rng_state r;
    rng_seed(&r, seed ^ 0x636f72707573ull); /* "corpus": its own stream, apart from init seeds */
    char story[CORPUS_MAX_STORY];
    size_t total = 0;
    for (;;) {
        size_t n = c_story(&r, story);
        story[n++] = '\n';
        size_t need = n + (total > 0);
        if (total + need > bytes)
            return 0;
        int rc;
        if (total > 0 && (rc = emit("\n", 1, user)) < 0)
            return rc;
        if ((rc = emit(story, n, user)) < 0)
            return rc;
        total += need;
    }
}

typedef struct c_membuf {
    char *p;
    size_t n, cap;
} c_membuf;

static int c_emit_mem(const char *p, size_t n, void *user)
{
    c_membuf *m = user;
    if (m->n + n > m->cap)
        return -ENOSPC;
    memcpy(m->p + m->n, p, n);
    m->n += n;
    return 0;
}

size_t corpus_fill(char *out, size_t cap, uint64_t seed)
{
    c_membuf m = {.p = out, .cap = cap};
    c_generate(cap, seed, c_emit_mem, &m);
    return m.n;
}

typedef struct c_filebuf {
    FILE *f;
    char *buf; /* [CORPUS_IO_CHUNK] */
    size_t n;
} c_filebuf;

static int c_emit_file(const char *p, size_t n, void *user)
{
    c_filebuf *fb = user;
    if (fb->n + n > CORPUS_IO_CHUNK) {
        if (fwrite(fb->buf, 1, fb->n, fb->f) != fb->n)
            return -EIO;
        fb->n = 0;
    }
    memcpy(fb->buf + fb->n, p, n);
    fb->n += n;
    return 0;
}

int corpus_write(const char *path, size_t bytes, uint64_t seed, rt_err *err)
{
    if (bytes < CORPUS_MAX_STORY)
        return err_set(err, -EINVAL, "corpus: %zu bytes is too small, at least %d", bytes, CORPUS_MAX_STORY);
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 32);
    c_filebuf fb = {.buf = malloc(CORPUS_IO_CHUNK)};
    int rc = 0;
    if (tmp == NULL || fb.buf == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    fb.f = fopen(tmp, "wb");
    if (fb.f == NULL) {
        rc = err_set(err, -errno, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    errno = 0;
    rc = c_generate(bytes, seed, c_emit_file, &fb);
    bool ok = rc == 0 && fwrite(fb.buf, 1, fb.n, fb.f) == fb.n && fflush(fb.f) == 0 && fsync(fileno(fb.f)) == 0;
    int e = errno ? errno : EIO;
    if (fclose(fb.f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        rc = err_set(err, -e, "%s: cannot write: %s", tmp, strerror(e));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        rc = err_set(err, -errno, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
    }
out:
    free(fb.buf);
    free(tmp);
    return rc;
}
