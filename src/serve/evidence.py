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
from dataclasses import dataclass

from reportguard.core.normalize import normalize_with_offsets
from reportguard.core.phrases import find_phrases

_CLAUSE = re.compile(r"[^,.!?;:。，！？；：、()\[\]【】《》\"' ]+")


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


def prepare(title: str, description: str) -> tuple[str, list[FieldText]]:
    """The model text (same as core.normalize.listing_text) and the per-field offset maps."""
    fields = []
    for name, text in (("title", title), ("description", description or "")):
        norm, offsets = normalize_with_offsets(text)
        fields.append(FieldText(name, text, norm, offsets))
    title_n, desc_n = fields[0].normalised, fields[1].normalised
    return (f"{title_n} {desc_n}" if desc_n else title_n), fields


def locate(fields: list[FieldText], start: int, end: int) -> tuple[FieldText, int, int] | None:
    """Map a span of the model text to (field, start, end) in that field's normalised text."""
    title_len = len(fields[0].normalised)
    if end <= title_len:
        return fields[0], start, end
    if start > title_len:
        return fields[1], start - title_len - 1, end - title_len - 1
    return None  # straddles the joining space: not a real span


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
    for hit in find_phrases(model_text):
        if hit.label in labels:
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
