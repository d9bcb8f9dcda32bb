"""One text normaliser for training and scoring.

Sellers hide the words a filter looks for: traditional characters (檢測報告), full-width letters
(ＣＭＡ), symbols or spaces between characters (检*测, 报 告, 包🔥过), homophones (捡测, 包锅), pinyin
initials (bsy = 不送样) and contact lures (薇信, 加V). `normalize_text` folds all of these to the
plain form, in this order (each step relies on the ones before it):

1. drop invisible characters (zero-width, BOM, soft hyphen, variation selectors) and controls;
2. NFKC, so full-width letters and digits become ASCII;
3. OpenCC `t2s`, traditional to simplified;
4. lower-case Latin letters;
5. drop emoji and pictographic symbols, and decorative separators between CJK characters or
   between spelled-out Latin letters (c.m.a, b s y);
6. replace lexicon evasions (lexicon/evasions.tsv) with their plain form, then repeat the
   separator rule, since a replaced pinyin token is CJK now;
7. collapse whitespace.

`normalize_with_offsets` also returns, for every output character, the index of the input
character it came from, so evidence found in normalised text can be shown in the original.
`NORMALIZER_VERSION` changes whenever the rules or the lexicon change; a model bundle records it
and the scorer refuses a bundle whose normaliser differs.
"""
from __future__ import annotations

import difflib
import functools
import hashlib
import itertools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import opencc

_RULES_VERSION = "1"  # bump when the code below changes behaviour
LEXICON_PATH = Path(__file__).with_name("lexicon") / "evasions.tsv"

# Characters that carry no meaning and are used to break up keywords.
_INVISIBLE = set("\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e")
# Pictographs that stand for '+' in contact lures (➕V) keep that meaning.
_PLUS_LIKE = {"\u2795": "+", "\u271a": "+", "\u2719": "+"}
# Punctuation used as decoration between the characters of a word (检*测, c.m.a). Sentence
# punctuation (，。！？：；) is deliberately absent: it separates words, not letters.
_SEPARATORS = set(" \t\n*·•・.．_-~|\\^`'\"#=丨")  # not "/": 元/件 is not 元件


def _is_pictograph(ch: str) -> bool:
    """Emoji and other symbols (category So/Sk) and variation selectors."""
    if ch in _PLUS_LIKE:
        return False
    cat = unicodedata.category(ch)
    return cat in ("So", "Sk") or "\ufe00" <= ch <= "\ufe0f" or cat == "Cs"


@functools.lru_cache(maxsize=1)
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """OpenCC t2s alone (step 3), for callers that need to know whether text was traditional."""
    return _converter().convert(text)


@functools.lru_cache(maxsize=1)
def load_lexicon() -> dict[str, tuple[str, str]]:
    """variant -> (canonical, family) from lexicon/evasions.tsv."""
    entries: dict[str, tuple[str, str]] = {}
    for lineno, line in enumerate(LEXICON_PATH.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 3:
            raise ValueError(f"{LEXICON_PATH}:{lineno}: expected variant<TAB>canonical<TAB>family")
        variant, canonical, family = cols[0], cols[1], cols[2]
        if variant in entries:
            raise ValueError(f"{LEXICON_PATH}:{lineno}: variant {variant!r} listed twice")
        entries[variant] = (canonical, family)
    return entries


@functools.lru_cache(maxsize=1)
def _lexicon_regex() -> re.Pattern[str]:
    alternatives = []
    for variant in sorted(load_lexicon(), key=len, reverse=True):
        escaped = re.escape(variant)
        if variant.isascii() and variant[-1].isalnum():
            # Latin tokens match whole: bsy in "bsy检测" but never inside "absyl".
            lead = "(?<![a-z])" if variant[0].isalpha() else ""
            escaped = f"{lead}{escaped}(?![a-z])"
        alternatives.append(escaped)
    return re.compile("|".join(alternatives))


@functools.lru_cache(maxsize=1)
def _lexicon_prefilter() -> re.Pattern[str]:
    """Any variant, as a plain literal. Every match of `_lexicon_regex` is one of these, so a
    text without one needs no lexicon pass; it is 30x cheaper, because the look-arounds of the
    Latin tokens keep the full pattern from using re's literal-prefix scan, and nearly every
    listing has no evasion at all."""
    return re.compile("|".join(re.escape(v) for v in sorted(load_lexicon(), key=len, reverse=True)))


def _version() -> str:
    digest = hashlib.sha256(LEXICON_PATH.read_bytes() + _RULES_VERSION.encode()).hexdigest()
    return f"{_RULES_VERSION}.{digest[:10]}"


NORMALIZER_VERSION = _version()

# CJK unified ideographs, extension A and the compatibility block: what counts as a Chinese character
_CJK_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_DECORATION_RUN = re.compile(f"(?<=[{_CJK_CLASS}])[{''.join(re.escape(c) for c in sorted(_SEPARATORS))}]++(?=[{_CJK_CLASS}])")
_WHITESPACE_RUN = re.compile(r"\s+")  # \s is str.isspace, character for character
_UNTIDY_SPACE = re.compile(r"[^\S ]|  |^ | $")  # whitespace other than single inner spaces
_SPELLED_LATIN = re.compile(r"(?<![a-z0-9])[a-z](?:[ *·•・.．_\-~|/\\^`'\"#=]+[a-z])+(?![a-z0-9])")


def normalize_with_offsets(text: str) -> tuple[str, list[int]]:
    """Normalise `text`; also return, per output character, its index in `text`.

    Every step has a whole-string fast path for the usual listing (no invisible characters, no
    emoji, one-to-one lower-casing) and falls back to per-character work only where a text needs
    it: the scorer normalises every row of a dump, so this runs millions of times.

    >>> normalize_with_offsets("檢 測")
    ('检测', [0, 2])
    """
    # Steps 1-2: invisible characters, controls, NFKC (per character, so offsets stay exact).
    text_now, src = _fold_characters(text)
    # Step 3: traditional -> simplified. OpenCC converts phrases, so convert the whole string;
    # t2s almost never changes the length, and when it does the offsets are re-aligned.
    converted = _converter().convert(text_now)
    if len(converted) != len(text_now):
        converted, src = _realign(text_now, converted, src)
    # Step 4: lower-case (per character: a few characters lower to two).
    text_now, src = _lower(converted, src)
    # Step 5: pictographs anywhere, decorative separators between CJK characters.
    text_now, src = _drop_decorations(text_now, src)
    text_now, src = _sub_with_offsets(_SPELLED_LATIN, lambda m: re.sub(r"[^a-z]", "", m.group()),
                                      text_now, src)
    # Step 6: lexicon evasions.
    if _lexicon_prefilter().search(text_now):
        lexicon = load_lexicon()
        text_now, src = _sub_with_offsets(_lexicon_regex(), lambda m: lexicon[m.group()][0],
                                          text_now, src)
        # A replaced pinyin token is CJK now, so separators beside it are decoration too ("bsy 检测").
        text_now, src = _drop_decorations(text_now, src)
    # Step 7: whitespace.
    return _collapse_whitespace(text_now, src)


def _fold_character(ch: str) -> str:
    """Steps 1-2 for one character: "" for an invisible one, a space or line break for a control,
    "+" for a plus-like pictograph, else its NFKC form (which may be several characters)."""
    if ch in _INVISIBLE:
        return ""
    ch = _PLUS_LIKE.get(ch, ch)
    if unicodedata.category(ch) == "Cc":
        ch = "\n" if ch in "\n\r" else " "  # tabs and stray controls are word breaks
    return unicodedata.normalize("NFKC", ch) if ord(ch) > 127 else ch


# Memos of steps 1-2 and step 5 per character (the scorer normalises every row of a dump, and a
# platform's listings use a few thousand distinct characters): every character seen, its steps 1-2
# form (a str.translate table), those whose form is not exactly one character (invisible ones: "";
# ①, ﬁ: several), and the pictographs.
_SEEN: set[str] = set()
_FOLD: dict[int, str] = {}
_FOLD_OTHER: set[str] = set()
_PICTOGRAPHS: set[str] = set()


def _learn(chars: set[str]) -> None:
    for ch in chars - _SEEN:
        _FOLD[ord(ch)] = _fold_character(ch)
        if len(_FOLD[ord(ch)]) != 1:
            _FOLD_OTHER.add(ch)
        if _is_pictograph(ch):
            _PICTOGRAPHS.add(ch)
        _SEEN.add(ch)


def _fold_characters(text: str) -> tuple[str, list[int]]:
    """Steps 1-2 over a text (one str.translate), with each output character's source index:
    one per input character in the usual listing (full-width punctuation and letters, no
    invisible characters)."""
    chars = set(text)
    _learn(chars)
    if chars.isdisjoint(_FOLD_OTHER):
        return text.translate(_FOLD), list(range(len(text)))
    return text.translate(_FOLD), [i for i, ch in enumerate(text) for _ in _FOLD[ord(ch)]]


def _lower(text: str, src: list[int]) -> tuple[str, list[int]]:
    """Lower-case per character. str.lower on the whole string gives the same characters when no
    character lowers to two (then the lengths match) and there is no capital sigma (the one
    character Python lowers by context)."""
    lowered = text.lower()
    if len(lowered) == len(text) and "\u03a3" not in text:
        return lowered, src
    chars: list[str] = []
    out_src: list[int] = []
    for ch, s in zip(text, src):
        for out in ch.lower():
            chars.append(out)
            out_src.append(s)
    return "".join(chars), out_src


def normalize_text(text: str) -> str:
    """The normalised form of `text`: what the model reads and what lexicon rules match.

    >>> normalize_text("檢*測報告 ＣＭＡ 包🔥过，加薇信")
    '检测报告 cma 包过,加微信'
    """
    return normalize_with_offsets(text)[0]


def listing_text(title: str, description: str = "") -> str:
    """What the model reads for a listing: the normalised title, a break, the normalised description.

    >>> listing_text("檢測報告", "寄樣5個工作日")
    '检测报告 寄样5个工作日'
    """
    return listing_text_with_offsets(title, description)[0]


@dataclass
class FieldText:
    """One field's original text, its normalised form and the offset map between them."""
    field: str
    original: str
    normalised: str
    offsets: list[int]

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Normalised [start, end) -> original [start, end)."""
        return self.offsets[start], self.offsets[end - 1] + 1


def listing_text_with_offsets(title: str, description: str = "") -> tuple[str, list[FieldText]]:
    """The model text (`listing_text`) and, per field (title, description), its offset map: the
    one place the two fields are joined, for the model input and for evidence alike.

    >>> text, fields = listing_text_with_offsets("檢 測", "包过")
    >>> text, fields[0].offsets, locate(fields, 3, 5)[1:]
    ('检测 包过', [0, 2], (0, 2))
    """
    # Normalised separately and joined by a space, so the boundary survives and a title's last
    # word never fuses with the description's first.
    fields = []
    for name, text in (("title", title), ("description", description or "")):
        norm, offsets = normalize_with_offsets(text)
        fields.append(FieldText(name, text, norm, offsets))
    title_n, description_n = fields[0].normalised, fields[1].normalised
    return (f"{title_n} {description_n}" if description_n else title_n), fields


def locate(fields: list[FieldText], start: int, end: int) -> tuple[FieldText, int, int] | None:
    """The inverse of the join: a span of the model text -> (field, start, end) in that field's
    normalised text; None for a span that straddles the joining space."""
    title_len = len(fields[0].normalised)
    if end <= title_len:
        return fields[0], start, end
    if start > title_len:
        return fields[1], start - title_len - 1, end - title_len - 1
    return None


def _drop_decorations(text: str, src: list[int]) -> tuple[str, list[int]]:
    """Drop pictographs, then every run of separators between two CJK characters: Chinese needs
    no spaces, and a line break there is how "检\n测" hides a word."""
    chars = set(text)
    _learn(chars)
    if not chars.isdisjoint(_PICTOGRAPHS):
        kept = [k for k, ch in enumerate(text) if ch not in _PICTOGRAPHS]
        text, src = "".join(text[k] for k in kept), [src[k] for k in kept]
    return _squeeze(_DECORATION_RUN, "", text, src)


def _sub_with_offsets(pattern: re.Pattern[str], repl, text: str, src: list[int]) -> tuple[str, list[int]]:
    """re.sub that keeps the per-character source offsets in step."""
    out: list[str] = []
    out_src: list[int] = []
    last = 0
    for m in pattern.finditer(text):
        out.append(text[last:m.start()])
        out_src.extend(src[last:m.start()])
        new = repl(m)
        span = src[m.start():m.end()]
        out.append(new)
        # Each new character points into the span it replaces, the last ones to its end.
        out_src.extend(span[min(k, len(span) - 1)] for k in range(len(new)))
        last = m.end()
    if not out:
        return text, src
    out.append(text[last:])
    out_src.extend(src[last:])
    return "".join(out), out_src


def _squeeze(pattern: re.Pattern[str], replacement: str, text: str, src: list[int]) -> tuple[str, list[int]]:
    """`_sub_with_offsets` for a replacement of "" or of one character that stands where the
    match began, in C: pattern.sub for the text, a keep-mask for the offsets."""
    spans = [m.span() for m in pattern.finditer(text)]
    if not spans:
        return text, src
    keep = bytearray(b"\x01") * len(text)
    k = len(replacement)
    for start, end in spans:
        keep[start + k:end] = bytes(end - start - k)
    return pattern.sub(replacement, text), list(itertools.compress(src, keep))


def _collapse_whitespace(text: str, src: list[int]) -> tuple[str, list[int]]:
    """Each run of whitespace -> one space (pointing at the run's first character); none at
    either end."""
    if _UNTIDY_SPACE.search(text) is None:  # single spaces between words only: nothing to do
        return text, src
    text, src = _squeeze(_WHITESPACE_RUN, " ", text, src)
    if text.startswith(" "):
        text, src = text[1:], src[1:]
    if text.endswith(" "):
        text, src = text[:-1], src[:-1]
    return text, src


def _realign(before: str, after: str, src: list[int]) -> tuple[str, list[int]]:
    """Map offsets through a conversion that changed the string's length."""
    new_src: list[int] = []
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        for k in range(j2 - j1):
            new_src.append(src[min(i1 + k, max(i1, i2 - 1))] if i2 > i1 else src[min(i1, len(src) - 1)])
    return after, new_src
