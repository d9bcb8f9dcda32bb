"""On-the-fly obfuscation for the train split: sellers' tricks, applied to the *raw* text, which
then goes through the normaliser like production text does. Most tricks are undone by the
normaliser; what survives (unknown homophones, noise the lexicon misses, odd spacing next to Latin
text) is what the model has to learn to read through. Seeded, so runs repeat."""
from __future__ import annotations

import random

from reportguard.core.normalize import load_lexicon

_SEPARATORS = [" ", "*", "·", "-", "_", "|", "~", "🔥", "❤", "✨", "★", "\u200b"]
_EMOJI = ["🔥", "✅", "💯", "⚡", "👉", "📣", "❗", "🉐"]


def _variants_by_canonical() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for variant, (canonical, _) in load_lexicon().items():
        out.setdefault(canonical, []).append(variant)
    return out


_REVERSE = _variants_by_canonical()
_TRAD = None


def _to_traditional(text: str) -> str:
    global _TRAD
    if _TRAD is None:
        import opencc
        _TRAD = opencc.OpenCC("s2t")
    return _TRAD.convert(text)


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _split_a_word(text: str, rng: random.Random) -> str:
    """Put separators inside one CJK stretch of 2-4 characters."""
    starts = [i for i in range(len(text) - 1) if "\u4e00" <= text[i] <= "\u9fff" and "\u4e00" <= text[i + 1] <= "\u9fff"]
    if not starts:
        return text
    i = rng.choice(starts)
    j = min(len(text), i + rng.randint(2, 4))
    sep = rng.choice(_SEPARATORS)
    return text[:i] + sep.join(text[i:j]) + text[j:]


def _lexicon_swap(text: str, rng: random.Random) -> str:
    hits = [c for c in _REVERSE if c in text]
    if not hits:
        return text
    canonical = rng.choice(hits)
    return text.replace(canonical, rng.choice(_REVERSE[canonical]), 1)


def _emoji(text: str, rng: random.Random) -> str:
    i = rng.randint(0, len(text))
    return text[:i] + rng.choice(_EMOJI) + text[i:]


def _drop_char(text: str, rng: random.Random) -> str:
    """A typo: one character lost. The normaliser can't undo this one."""
    if len(text) < 8:
        return text
    i = rng.randrange(len(text))
    return text[:i] + text[i + 1:]


TRICKS = {
    "traditional": lambda t, rng: _to_traditional(t),
    "full_width": lambda t, rng: _full_width(t),
    "split_word": _split_a_word,
    "lexicon": _lexicon_swap,
    "emoji": _emoji,
    "typo": _drop_char,
}


def obfuscate(text: str, rng: random.Random, max_tricks: int = 2) -> str:
    """Apply 1..max_tricks random tricks.

    >>> obfuscate("检测报告当天出", random.Random(0)) != "检测报告当天出"
    True
    """
    for name in rng.sample(sorted(TRICKS), k=rng.randint(1, max_tricks)):
        text = TRICKS[name](text, rng)
    return text
