"""Label phrase lexicon (lexicon/phrases.yaml): the keyword baseline and the scorer's evidence."""
from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import yaml

from .labels import MODEL_LABELS

PHRASES_PATH = Path(__file__).with_name("lexicon") / "phrases.yaml"


@dataclass(frozen=True)
class PhraseHit:
    label: str
    start: int  # offsets into the normalised text
    end: int
    text: str


@functools.lru_cache(maxsize=1)
def _patterns() -> dict[str, re.Pattern[str]]:
    spec = yaml.safe_load(PHRASES_PATH.read_text(encoding="utf-8"))
    unknown = set(spec) - set(MODEL_LABELS)
    if unknown:
        raise ValueError(f"{PHRASES_PATH}: unknown label(s) {sorted(unknown)}")
    return {label: re.compile("|".join(f"(?:{p})" for p in spec.get(label, []))) for label in MODEL_LABELS}


def phrases_version() -> str:
    return hashlib.sha256(PHRASES_PATH.read_bytes()).hexdigest()[:10]


def find_phrases(normalised: str, labels: Collection[str] | None = None) -> list[PhraseHit]:
    """Every phrase hit in already-normalised text, ordered by label then position; only those of
    `labels` when given (the scorer asks for the labels a listing was given, usually none).

    >>> [(h.label, h.text) for h in find_phrases("专业代办检测报告,不送样,当天出")]
    [('report_sale', '代办检测报告'), ('false_ad', '不送样'), ('false_ad', '当天出'), ('testing_service', '代办检测报告')]
    """
    hits = []
    for label, pattern in _patterns().items():
        if labels is not None and label not in labels:
            continue
        hits += [PhraseHit(label, m.start(), m.end(), m.group()) for m in pattern.finditer(normalised) if m.end() > m.start()]
    return hits


def keyword_labels(normalised: str) -> list[str]:
    """The keyword baseline: every label with at least one phrase hit, in model order."""
    found = {h.label for h in find_phrases(normalised)}
    return [label for label in MODEL_LABELS if label in found]
