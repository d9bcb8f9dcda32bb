"""Which evidence spans to highlight in a field's text: the selection only, no markup.

Evidence comes from the scorer as [{"label", "text", "field", "start", "end"}] with offsets into
the ORIGINAL field text. A span whose offsets are out of range or do not match its quoted text is
re-anchored on the first occurrence of the quoted text, and dropped if that fails too: a wrong
highlight misleads a reader, a missing one only makes them read.

Both highlighters (the review tool's, serve/regulator.py's report page) call `evidence_spans` and
keep their own escaping and wrapping: markup is built around escaped pieces there, never here.
"""
from __future__ import annotations

from typing import Collection, Iterable


def evidence_spans(text: str, evidence: Iterable[dict], field: str, labels: Collection[str],
                   other: str | None = None) -> list[tuple[int, int, str]]:
    """(start, end, label) spans of `evidence` that fall in `field`'s `text`, in evidence order.

    A label not in `labels` becomes `other`, or its span is dropped when `other` is None.

    >>> ev = [{"label": "false_ad", "field": "title", "text": "包过", "start": 0, "end": 9},
    ...       {"label": "made_up", "field": "title", "text": "当天", "start": 3, "end": 5}]
    >>> evidence_spans("a包过 当天出", ev, "title", {"false_ad"})
    [(1, 3, 'false_ad')]
    >>> evidence_spans("a包过 当天出", ev, "title", {"false_ad"}, other="other")
    [(1, 3, 'false_ad'), (4, 6, 'other')]
    """
    spans = []
    for ev in evidence:
        if ev.get("field") != field:
            continue
        label = ev.get("label") if ev.get("label") in labels else other
        if label is None:
            continue
        quoted = ev.get("text") if isinstance(ev.get("text"), str) else ""
        start, end = ev.get("start"), ev.get("end")
        ok = isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)
        if ok and quoted and text[start:end] != quoted:
            ok = False
        if not ok and quoted:
            found = text.find(quoted)
            ok, start, end = found >= 0, found, found + len(quoted)
        if ok:
            spans.append((start, end, label))
    return spans
