"""Why a listing was flagged: spans of its *original* text, per label.

Two sources, both cheap enough for batch scoring:
- lexicon: phrase hits (core/lexicon/phrases.yaml) on the normalised text, mapped back through
  the normaliser's offsets to the original title or description;
- occlusion: for flagged listings, each clause of the normalised text is removed in turn and the
  listing re-scored; the clause whose removal lowers a predicted label's probability most (by at
  least `min_drop`) is that label's model evidence.
"""
from __future__ import annotations

import re

from reportguard.core.normalize import FieldText, listing_text_with_offsets, locate  # noqa: F401  (FieldText: re-exported)
from reportguard.core.phrases import find_phrases

_CLAUSE = re.compile(r"[^,.!?;:。，！？；：、()\[\]【】《》\"' ]+")


# The model text and the per-field offset maps come from the same function as the model input
# (core.normalize.listing_text is its first value), so evidence offsets always match what the
# model read; tests/test_contract.py ties the two together.
prepare = listing_text_with_offsets


def span_evidence(label: str, source: str, fields: list[FieldText], start: int, end: int) -> dict | None:
    where = locate(fields, start, end)
    if where is None:
        return None
    field, s, e = where
    if e <= s:
        return None
    o_start, o_end = field.original_span(s, e)
    return {"label": label, "source": source, "field": field.field, "text": field.original[o_start:o_end],
            "start": o_start, "end": o_end}


def lexicon_evidence(model_text: str, fields: list[FieldText], labels: set[str]) -> list[dict]:
    """Phrase hits for the labels the listing was given."""
    out = []
    for hit in find_phrases(model_text, labels):
        ev = span_evidence(hit.label, "lexicon", fields, hit.start, hit.end)
        if ev:
            out.append(ev)
    return out


def clauses(model_text: str, max_clauses: int) -> list[tuple[int, int]]:
    """The longest `max_clauses` clauses of the model text, as (start, end), in text order."""
    spans = [(m.start(), m.end()) for m in _CLAUSE.finditer(model_text) if m.end() - m.start() >= 2]
    spans = sorted(sorted(spans, key=lambda s: s[0] - s[1])[:max_clauses])
    return spans


def occluded_texts(model_text: str, spans: list[tuple[int, int]]) -> list[str]:
    return [model_text[:s] + model_text[e:] for s, e in spans]
