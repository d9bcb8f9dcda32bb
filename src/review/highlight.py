"""Evidence spans highlighted in untrusted listing text, without ever emitting the text as HTML.

The order is the whole point: the text is cut at span boundaries first, each piece is escaped,
and only then are the escaped pieces wrapped in <mark> elements whose class names come from the
fixed label list. Inserting <mark> tags into raw text and escaping afterwards (or not at all)
is how highlighters end up executing a seller's `<script>`.

Evidence offsets come from the scorer and index the ORIGINAL field text. Which spans are shown is
core.evidence_spans's choice (shared with the report page): a span whose offsets are out of range
or do not match its quoted text is re-anchored on the first occurrence of the quoted text, and
dropped if that fails too: a wrong highlight misleads a reviewer, a missing one only makes them read.
"""
from __future__ import annotations

from markupsafe import Markup, escape

from reportguard.core.evidence_spans import evidence_spans
from reportguard.core.labels import ALL_LABEL_NAMES

FIELDS = ("title", "description")


def spans_for(text: str, evidence: list[dict], field: str) -> list[tuple[int, int, str]]:
    """Valid (start, end, label) spans of `evidence` that fall in `field`'s `text`; a label outside
    ALL_LABEL_NAMES is shown as "other"."""
    return evidence_spans(text, evidence, field, ALL_LABEL_NAMES, other="other")


def highlight(text: str | None, evidence: list[dict], field: str) -> Markup:
    """`text` escaped, with each evidence span of `field` wrapped in <mark class="ev ev-LABEL">.

    >>> str(highlight('<b>包过</b>"', [{"label": "false_ad", "field": "title", "start": 3, "end": 5, "text": "包过"}], "title"))
    '&lt;b&gt;<mark class="ev ev-false_ad" data-labels="false_ad">包过</mark>&lt;/b&gt;&#34;'
    """
    text = text or ""
    spans = spans_for(text, evidence or [], field)
    if not spans:
        return escape(text)
    cuts = sorted({0, len(text), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    pieces = []
    for a, b in zip(cuts, cuts[1:]):
        piece = escape(text[a:b])
        labels = [label for label in (*ALL_LABEL_NAMES, "other")
                  if any(s <= a and b <= e and lab == label for s, e, lab in spans)]
        if labels:
            classes = " ".join(f"ev-{x}" for x in labels)
            pieces.append(Markup('<mark class="ev {}" data-labels="{}">{}</mark>').format(classes, " ".join(labels), piece))
        else:
            pieces.append(piece)
    return Markup("").join(pieces)
