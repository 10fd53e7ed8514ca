"""tokenizer_corpus: the text test_tokenizer_js.py and bench_tokenize run on.

Writes one file of lines (bytes, '\\n'-separated; a line may hold '\\r', NUL,
tabs and invalid UTF-8) made of:
  - real text read from what a Debian 12 install with deploy/install-deps.sh
    has: /usr/share/common-licenses, /usr/share/doc/*/copyright, man pages
    (gzip), gettext catalogues (.mo: real translations in many scripts), and
    the Python standard library sources, which fill whatever the others lack
    (a slim image has no man pages or .mo files). At least --real-bytes
    (default 1.1 MB) of it;
  - the same lines, a few percent of them mutated: a special token, invalid
    UTF-8, a tab or a run of spaces, '\\r', upper case (contractions in capitals),
    a run of digits or an emoji put inside;
  - generated lines interleaved with them: sentences in 30 languages, words
    in Latin (accents, NFC and NFD), Greek, Cyrillic, CJK, kana, Hangul,
    Arabic, Hebrew, Devanagari, Thai; emoji with ZWJ, skin tones, flags and
    keycaps; whitespace runs and every kind of Unicode space; digit runs;
    contractions in every case; special tokens of GPT-2, Llama-3, cl100k and
    SentencePiece and the added tokens of tests/js/reftok.mjs's "spx", whole,
    glued, broken and look-alikes; invalid UTF-8
    (truncated, overlong, surrogates, above U+10FFFF, stray bytes); control
    characters; the characters byte-level vocabularies print bytes with
    (Ġ, Ċ, â) and SentencePiece's ▁; a few long lines.
Deterministic for a given seed and machine: files are read in sorted order
and every choice comes from one seeded generator. Another machine may have
other man pages and catalogues installed, so the text (not its kinds) differs.

Characters are kept to Unicode 13 or older, which Node 18's ICU, Oniguruma
6.9 and utf8proc 2.8 all know. The sequence "'" + U+017F (long s) is left out:
Oniguruma's (?i:'s) matches it through Unicode case folding, and the
JavaScript references cannot reproduce that.

Usage: tokenizer_corpus.py --out FILE [--seed N] [--real-bytes N]
"""

import argparse
import glob
import gzip
import hashlib
import os
import random
import struct
import sys

# Special tokens of the tokenizers the tests build, and strings that only
# look like them.
SPECIALS = ["<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
            "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_5|>",
            "<|reserved_special_token_247|>", "<|fim_prefix|>", "<|fim_middle|>",
            "<|fim_suffix|>", "<|endofprompt|>", "<s>", "</s>", "<unk>",
            # added tokens of the "spx" tokenizer (tests/js/reftok.mjs)
            "<mask>", "<|im_start|>", "[raw]", "hello world", "ﬁx"]
NEAR_SPECIALS = ["<|endoftext|", "|endoftext|>", "<|endoftext>", "<|ENDOFTEXT|>",
                 "<|reserved_special_token_250|>", "<|reserved_special_token_05|>",
                 "<s", "s>", "< s>", "<S>", "</s", "<|", "|>", "<|eot_id", "<<s>>",
                 "<|<|endoftext|>|>", "<mask", "[raw", "hello  world", "Hello world", "fix", "ﬁ"]

INVALID = [b"\xff", b"\xfe", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\x80", b"\xbf\x80",
           b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
           b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xc3\x28", b"\xe2\x28\xa1",
           b"\xf0\x28\x8c\xbc", b"\xc2", b"\xe0\xa0", b"\xf1\x80\x80"]

SENTENCES = [
    "All human beings are born free and equal in dignity and rights.",
    "Tous les êtres humains naissent libres et égaux en dignité et en droits.",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
    "Todos los seres humanos nacen libres e iguales en dignidad y derechos.",
    "Tutti gli esseri umani nascono liberi ed eguali in dignità e diritti.",
    "Todos os seres humanos nascem livres e iguais em dignidade e em direitos.",
    "Alla människor är födda fria och lika i värde och rättigheter.",
    "Wszyscy ludzie rodzą się wolni i równi pod względem swej godności i swych praw.",
    "Všichni lidé rodí se svobodní a sobě rovní co do důstojnosti a práv.",
    "Minden emberi lény szabadon születik és egyenlő méltósága és joga van.",
    "Tüm insanlar hür, haysiyet ve haklar bakımından eşit doğarlar.",
    "Kaikki ihmiset syntyvät vapaina ja tasavertaisina arvoltaan ja oikeuksiltaan.",
    "Mọi người sinh ra đều được tự do và bình đẳng về nhân phẩm và quyền.",
    "Visi žmonės gimsta laisvi ir lygūs savo orumu ir teisėmis.",
    "Þjóðir heimsins — Íslendingar, Færeyingar — þekkja ð og þ.",
    "Όλοι οι άνθρωποι γεννιούνται ελεύθεροι και ίσοι στην αξιοπρέπεια και τα δικαιώματα.",
    "Все люди рождаются свободными и равными в своем достоинстве и правах.",
    "Усі люди народжуються вільними і рівними у своїй гідності та правах.",
    "Бүх хүн төрөл бүрийн эрх чөлөөтэй.",
    "人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心。",
    "人人生而自由，在尊嚴和權利上一律平等。",
    "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。",
    "모든 인간은 태어날 때부터 자유로우며 그 존엄과 권리에 있어 동등하다.",
    "يولد جميع الناس أحرارًا متساوين في الكرامة والحقوق.",
    "כל בני האדם נולדו בני חורין ושווים בערכם ובזכויותיהם.",
    "בְּרֵאשִׁית בָּרָא אֱלֹהִים אֵת הַשָּׁמַיִם וְאֵת הָאָרֶץ׃",
    "सभी मनुष्यों को गौरव और अधिकारों के मामले में जन्मजात स्वतन्त्रता प्राप्त है।",
    "มนุษย์ทั้งหลายเกิดมามีอิสระและเสมอภาคกันในเกียรติศักดิ์และสิทธิ",
    "ሁሉም ሰዎች ሲወለዱ ነጻና በክብርና በመብትም እኩልነት ያላቸው ናቸው።",
    "Ყველა ადამიანი იბადება თავისუფალი და თანასწორი.",
    "Բոլոր մարդիկ ծնվում են ազատ ու հավասար։",
    "সমস্ত মানুষ স্বাধীনভাবে সমান মর্যাদা এবং অধিকার নিয়ে জন্মগ্রহণ করে।",
    "எல்லா மனிதப் பிறவிகளும் சுதந்திரமாகவே பிறக்கின்றனர்.",
    "Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Falsches Üben von Xylophonmusik quält jeden größeren Zwerg — ß, ẞ.",
    "Voix ambiguë d'un cœur qui au zéphyr préfère les jattes de kiwis.",
    "El pingüino Wenceslao hizo kilómetros bajo exhaustiva lluvia y frío, añoraba a su querido cachorro.",
    "The naïve café owner's résumé — coöperate, façade, jalapeño, Zoë, Ångström.",
]

LATIN_ACCENTED = "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿāăąćčďđēėęěğīįıķłńňőœřśşšťūůűųźżžșțẞß"
COMBINING = ["\u0301", "\u0300", "\u0308", "\u0302", "\u0327", "\u030c", "\u0323", "\u0331"]
SCRIPTS = {
    "greek": [chr(c) for c in range(0x3b1, 0x3ca)] + list("άέήίόύώΑΒΓΔΘΛΞΠΣΦΨΩ"),
    "cyrillic": [chr(c) for c in range(0x430, 0x450)] + list("ёЁЖЩЫЯїєґ"),
    "cjk": [chr(c) for c in range(0x4e00, 0x4e00 + 3000)] + list("的一是不了人我在有他这中大来上国个到说们为"),
    "hiragana": [chr(c) for c in range(0x3041, 0x3094)],
    "katakana": [chr(c) for c in range(0x30a1, 0x30fb)] + ["ー"],
    "hangul": [chr(c) for c in range(0xac00, 0xac00 + 2000, 3)],
    "arabic": [chr(c) for c in range(0x621, 0x64b)] + ["\u064e", "\u064f", "\u0650", "\u0651"],
    "hebrew": [chr(c) for c in range(0x5d0, 0x5eb)] + ["\u05b8", "\u05b4", "\u05bc"],
    "devanagari": [chr(c) for c in range(0x915, 0x939)] + ["\u093e", "\u093f", "\u0940", "\u094d", "\u0902"],
    "thai": [chr(c) for c in range(0xe01, 0xe2f)] + ["\u0e31", "\u0e34", "\u0e48", "\u0e49"],
}
EMOJI = ["😀", "😂", "🥲", "🤔", "👍", "👎", "🙏", "🔥", "🎉", "❤️", "❤", "☺️", "✨", "🚀", "🦙", "🐍",
         "👍🏻", "👍🏼", "👍🏽", "👍🏾", "👍🏿", "👋🏽", "🧑🏿",
         "👨‍👩‍👧‍👦", "👩‍👩‍👦", "👨‍❤️‍👨", "👩‍❤️‍💋‍👨", "🏳️‍🌈", "🏴‍☠️", "👩🏽‍💻", "🧑🏻‍🚀",
         "👨🏿‍🦰", "🤷‍♀️", "🤷🏾‍♂️", "🧔‍♂️", "🐕‍🦺", "🏃🏻‍♀️", "👁️‍🗨️",
         "🇫🇷", "🇯🇵", "🇺🇸", "🇩🇪🇪🇸", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1️⃣", "#️⃣", "*️⃣", "©️", "™️", "↔️"]
SPACES = [" ", "  ", "\t", " \t", "\u00a0", "\u2003", "\u2009", "\u3000", "\u2028", "\u2029",
          "\u0085", "\u1680", "\u202f", "\u205f", "\u200b", "\ufeff", "\x0b", "\x0c", "\r", "\u180e"]
DIGITS_ALT = ["٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "０１２３４５６７８９", "²³¹¼½¾", "ⅠⅡⅢⅣⅫ", "①②③⑩", "𝟎𝟏𝟐𝟑"]
CONTRACTIONS = ["I'm", "you're", "we've", "they'd", "she'll", "it's", "don't", "can't", "won't",
                "y'all", "I'd've", "'tis", "rock'n'roll", "o'clock", "it’s", "don’t", "l'homme",
                "aujourd'hui", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "''", "'''s", "'", " 's"]
ODD = ["▁", "▁▁", "Ġ", "Ċ", "âĢĻ", "Ã©", "ĉ", "ł", "<0x41>", "<0xFF>", "▁the", "Ġthe", "\\n",
       "\\u0120", "\ufffd", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ﬁﬂ", "Ａｂｃ", "ǅ", "ǈ", "ᾈ", "İstanbul",
       "ΣΑΣ", "ǰ", "ﬀ", "K", "Å", "Ω", "ℌ", "e\u0301", "n\u0303", "\u1100\u1161\u11a8", "a\u20dd"]


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def man_text(path):
    try:
        return gzip.decompress(read(path))
    except (OSError, EOFError, ValueError):
        return b""


def mo_strings(data):
    """The translated strings (msgstr) of a GNU .mo catalogue."""
    if len(data) < 28:
        return []
    for end in "<>":
        magic, _, n, _, ttab = struct.unpack(end + "5I", data[:20])
        if magic == 0x950412DE:
            break
    else:
        return []
    out = []
    for i in range(min(n, 100000)):
        o = ttab + 8 * i
        if o + 8 > len(data):
            break
        ln, off = struct.unpack(end + "2I", data[o:o + 8])
        s = data[off:off + ln]
        if i == 0 or not s:  # entry 0 is the catalogue's header
            continue
        out.extend(p for p in s.split(b"\0") if p)
    return out


class Real:
    """Lines of real text, source by source, up to a byte budget each."""

    def __init__(self, rng):
        self.rng, self.lines, self.size, self.seen = rng, [], 0, set()
        self.by_source = {}

    def add_text(self, source, data, cap):
        h = hashlib.sha1(data).digest()
        if not data or h in self.seen:
            return 0
        self.seen.add(h)
        data = data[:cap]
        lines = data.split(b"\n")
        if len(data) == cap and len(lines) > 1:
            lines = lines[:-1]  # a cut line
        blank = 0
        n = 0
        for ln in lines:
            blank = blank + 1 if not ln.strip() else 0
            if blank > 2:
                continue
            self.lines.append(ln)
            n += len(ln) + 1
        self.size += n
        self.by_source[source] = self.by_source.get(source, 0) + n
        return n

    def fill(self, source, paths, budget, cap, loader=read, sample=False):
        paths = sorted(paths)
        if sample:
            self.rng.shuffle(paths)
        got = 0
        for p in paths:
            if got >= budget:
                break
            got += self.add_text(source, loader(p), min(cap, budget - got + 200))
        return got


def real_lines(rng, target):
    r = Real(rng)
    licenses = {os.path.realpath(p) for p in glob.glob("/usr/share/common-licenses/*")}
    r.fill("common-licenses", [p for p in licenses if os.path.isfile(p)], target, 1 << 20)
    r.fill("doc/*/copyright", glob.glob("/usr/share/doc/*/copyright"), 300000, 6000, sample=True)
    r.fill("man pages", glob.glob("/usr/share/man/man[1578]/*.gz"), 200000, 12000,
           loader=man_text, sample=True)
    # .mo catalogues: round-robin over languages so that every script shows up
    by_lang = {}
    for p in sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES/*.mo")):
        by_lang.setdefault(p.split("/")[4], []).append(p)
    budget, got = 220000, 0
    queues = {lang: sorted(ps) for lang, ps in sorted(by_lang.items())}
    for lang in queues:
        rng.shuffle(queues[lang])
    while got < budget and any(queues.values()):
        for lang in sorted(queues):
            if not queues[lang] or got >= budget:
                continue
            strings = mo_strings(read(queues[lang].pop()))
            rng.shuffle(strings)
            got += r.add_text(".mo translations", b"\n".join(strings[:40]), 3000)
    py = [p for p in glob.glob("/usr/lib/python3*/*.py") if os.path.isfile(p)]
    py.sort(key=lambda p: (os.path.basename(p), p))
    r.fill("python stdlib", py, max(0, target - r.size), 40000)
    return r


def word(rng, chars, lo=1, hi=8):
    return "".join(rng.choice(chars) for _ in range(rng.randint(lo, hi)))


def gen_line(rng):
    """One generated line (str, or bytes where it holds invalid UTF-8)."""
    k = rng.randrange(100)
    sep = lambda: rng.choice([" ", " ", " ", ", ", ". ", "  ", "\t", " - ", "/", ""])  # noqa: E731
    if k < 14:
        return " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 3)))
    if k < 26:
        name = rng.choice(sorted(SCRIPTS))
        out = []
        for _ in range(rng.randint(3, 20)):
            out.append(word(rng, SCRIPTS[name]) + sep())
        return "".join(out)
    if k < 32:  # Latin with accents, precomposed and decomposed
        out = []
        for _ in range(rng.randint(3, 15)):
            w = word(rng, "abcdefghijklmnopqrstuvwxyz" + LATIN_ACCENTED, 2, 10)
            if rng.random() < 0.3:
                i = rng.randint(1, len(w))
                w = w[:i] + rng.choice(COMBINING) + w[i:]
            if rng.random() < 0.2:
                w = w.capitalize()
            out.append(w)
        return " ".join(out)
    if k < 40:
        out = []
        for _ in range(rng.randint(2, 12)):
            out.append(rng.choice(EMOJI) * rng.choice([1, 1, 1, 2, 3]))
            out.append(rng.choice(["", " ", " ", "!", " ok ", "hello", "日本", "\t"]))
        return "".join(out)
    if k < 50:  # whitespace
        out = []
        for _ in range(rng.randint(1, 8)):
            out.append(rng.choice(["word", "x", "Hello", "ünï", "日本語", "1", "'s", ""]))
            r = rng.random()
            if r < 0.3:
                out.append(" " * rng.randint(2, 200))
            elif r < 0.5:
                out.append("\t" * rng.randint(1, 12))
            else:
                out.append("".join(rng.choice(SPACES) for _ in range(rng.randint(1, 6))))
        return "".join(out)
    if k < 58:  # digits
        out = []
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            if r < 0.4:
                out.append("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 40))))
            elif r < 0.6:
                out.append("{:,}".format(rng.randint(0, 10 ** 12)) + rng.choice(["", ".5", ".25%"]))
            elif r < 0.7:
                out.append(rng.choice(DIGITS_ALT))
            elif r < 0.85:
                out.append("abc%ddef%d" % (rng.randint(0, 99999), rng.randint(0, 9)))
            else:
                out.append("v%d.%d.%d-rc%d" % tuple(rng.randint(0, 30) for _ in range(4)))
            out.append(rng.choice([" ", "", "\t", " + ", "=", ", "]))
        return "".join(out)
    if k < 66:  # contractions
        out = []
        for _ in range(rng.randint(2, 10)):
            c = rng.choice(CONTRACTIONS)
            r = rng.random()
            if r < 0.3:
                c = c.upper()
            elif r < 0.45:
                c = "".join(ch.upper() if rng.random() < 0.5 else ch for ch in c)
            out.append(c)
            out.append(rng.choice([" ", " ", "", "\t", "  "]))
        return "".join(out)
    if k < 76:  # special tokens
        out = []
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            if r < 0.55:
                out.append(rng.choice(SPECIALS))
            elif r < 0.75:
                out.append(rng.choice(NEAR_SPECIALS))
            else:
                out.append(rng.choice(["Hello", " world", "user", "", " ", "  ", "你好", "x"]))
            out.append(rng.choice(["", "", " ", "  ", "\t", "text", " text "]))
        return "".join(out)
    if k < 86:  # invalid UTF-8
        b = bytearray()
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            if r < 0.45:
                b += rng.choice(INVALID)
            elif r < 0.55:
                b += bytes(rng.choice([x for x in range(256) if x != 10]) for _ in range(rng.randint(1, 6)))
            else:
                b += rng.choice(["abc", " ", "é", "日本", "😀", "<s>", "'s", "12"]).encode()
        return bytes(b)
    if k < 90:  # control characters (NUL included)
        return "".join(rng.choice(["a", "b", " ", chr(rng.choice([0, 1, 7, 8, 0x1b, 0x1c, 0x1f, 0x7f]))])
                       for _ in range(rng.randint(1, 20)))
    if k < 96:
        return "".join(rng.choice(ODD) + rng.choice(["", " ", "x"]) for _ in range(rng.randint(1, 8)))
    return ""  # empty lines


def long_lines(rng, real):
    """A few long lines: prose, one long word of each kind, long whitespace."""
    prose = b" ".join(ln.strip() for ln in rng.sample(real, min(len(real), 400)))[:20000]
    cjk = "".join(rng.choice(SCRIPTS["cjk"]) for _ in range(1500))
    return [prose,
            cjk.encode(),
            ("".join(rng.choice("0123456789") for _ in range(3000))).encode(),
            (" " * 1500 + "x" + "\t" * 700 + "y" + " " * 999).encode(),
            ("é" * 800 + "😀" * 300 + "a" * 2000).encode(),
            ("<|endoftext|>" * 100 + "<s>" * 100).encode()]


def mutate(rng, line):
    """line with one change put in at a character boundary."""
    cuts = [i for i in range(len(line) + 1) if i == len(line) or line[i] & 0xC0 != 0x80]
    i = rng.choice(cuts)
    k = rng.randrange(8)
    if k == 0:
        ins = rng.choice(SPECIALS).encode()
    elif k == 1:
        ins = rng.choice(INVALID)
    elif k == 2:
        return line.replace(b" ", rng.choice([b"\t", b"   ", b" \t", b"\t\t"]), rng.randint(1, 3))
    elif k == 3:
        return line + b"\r"
    elif k == 4:
        return line.upper()
    elif k == 5:
        ins = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 25))).encode()
    elif k == 6:
        ins = rng.choice(EMOJI).encode()
    else:
        ins = rng.choice(["'S", "'LL", "'Re", "'VE", "'M", "'D", "'T", "n't"]).encode()
    return line[:i] + ins + line[i:]


def build(seed=4, real_bytes=1100000):
    """Returns (lines, info): lines a list of bytes without '\\n'."""
    rng = random.Random(seed)
    real = real_lines(rng, real_bytes)
    lines = []
    gen = 0
    for ln in real.lines:
        if ln and rng.random() < 0.06:
            ln = mutate(rng, ln)
        lines.append(ln)
        while rng.random() < 0.08:
            g = gen_line(rng)
            g = g if isinstance(g, bytes) else g.encode()
            lines.append(g)
            gen += len(g) + 1
    for ln in long_lines(rng, real.lines):
        lines.insert(rng.randrange(len(lines)), ln)
        gen += len(ln) + 1
    # see the note on U+017F above
    lines = [ln.replace("'\u017f".encode(), b"'s") for ln in lines]
    assert all(b"\n" not in ln for ln in lines)
    info = dict(real=real.size, generated=gen, by_source=real.by_source, lines=len(lines))
    return lines, info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--real-bytes", type=int, default=1100000)
    a = ap.parse_args()
    lines, info = build(a.seed, a.real_bytes)
    data = b"\n".join(lines) + b"\n"
    with open(a.out, "wb") as f:
        f.write(data)
    print("corpus: %d bytes, %d lines; real text %d bytes (%s); generated %d bytes" % (
        len(data), info["lines"], info["real"],
        ", ".join("%s %d" % kv for kv in sorted(info["by_source"].items())), info["generated"]))
    if info["real"] < (1 << 20):
        print("corpus: only %d bytes of real text found (want 1 MiB)" % info["real"], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
