"""One streaming pass over a scored run: every count the form, the detail table and the page need.

Verdicts (`--verdicts FILE.jsonl`, the review tool's corpus export: one object per reviewed
listing with `listing_id` and `labels`, the model labels the reviewer confirmed, [] = cleared)
replace a reviewed listing's labels, and `credential_missing` is re-derived by the same rule the
scorer uses (a confirmed testing service with no disclosed credential). Verdicts for listings not
in the run are counted, never used.

Memory holds per-seller and per-platform aggregates, fixed-size histograms, the verdicts, a
counter of (label set, decision) pairs (at most 16 x 3 keys) and a bounded heap of sample
listings: never one entry per listing.
"""
from __future__ import annotations

import heapq
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from reportguard.core.credentials import with_derived_labels
from reportguard.core.errors import InputError
from reportguard.core.evidence_spans import evidence_spans
from reportguard.core.labels import BY_NAME, CREDENTIAL_MISSING, MODEL_LABELS, PROB_COLUMNS

from ..outputs import iter_run, split_labels
from ..sellers import LABEL_NAMES, VIOLATION_LABELS, SellerRollup, SellerStats, listing_rank

BINS = 20
TITLE_CHARS, DESCRIPTION_CHARS = 200, 360


# --- verdicts ----------------------------------------------------------------------------------

def read_verdicts(path: str | Path) -> dict[str, list[str]]:
    """listing_id -> the model labels a reviewer confirmed ([] = cleared), from the review export.

    A later line for the same listing wins (the export writes each listing once, latest verdict).
    `credential_missing` in a verdict is ignored: it is re-derived by rule, as in scoring.
    """
    path = Path(path)
    verdicts: dict[str, list[str]] = {}
    with open(path, encoding="utf-8-sig") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: line {line_no}: invalid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict) or obj.get("listing_id") in (None, ""):
                raise InputError(f"{path}: line {line_no}: a verdict needs a listing_id")
            labels = obj.get("labels") or []
            if isinstance(labels, str):
                labels = split_labels(labels)
            unknown = [x for x in labels if x not in BY_NAME]
            if unknown:
                raise InputError(f"{path}: line {line_no}: unknown label(s) {unknown}; verdicts carry {list(MODEL_LABELS)}")
            verdicts[str(obj["listing_id"])] = [x for x in MODEL_LABELS if x in labels]
    return verdicts


def verdict_labels(row: dict, confirmed: list[str]) -> list[str]:
    """A reviewed listing's labels: the verdict's, plus credential_missing by the scorer's rule."""
    return with_derived_labels(confirmed, row.get("title"), row.get("description"), row.get("qualification"))


# --- one pass over the run ---------------------------------------------------------------------

@dataclass
class PlatformStats:
    listings: int = 0
    flagged: int = 0
    confirmed_flagged: int = 0
    labels: Counter = field(default_factory=Counter)        # listings per label, verdicts applied
    by_top_label: Counter = field(default_factory=Counter)  # flagged listings by their most severe label


@dataclass
class Tally:
    """Everything the form, the detail table, the XLSX and the page need, gathered in one streaming pass."""
    listings: int = 0
    flagged: int = 0
    confirmed_flagged: int = 0
    reviewed: int = 0
    cleared: int = 0
    pending_review: int = 0
    labels: Counter = field(default_factory=Counter)      # listings per label, verdicts applied
    confirmed: Counter = field(default_factory=Counter)   # the part of `labels` from reviewed listings
    overturned: Counter = field(default_factory=Counter)  # model label removed by a reviewer
    added: Counter = field(default_factory=Counter)       # label a reviewer added
    decisions: Counter = field(default_factory=Counter)
    # (frozenset of labels, model decision) -> listings: enough to count "listings with label A or
    # B" (and how many of them the model blocked) without a pass per question.
    combos: Counter = field(default_factory=Counter)
    model_versions: Counter = field(default_factory=Counter)
    platforms: dict[str, PlatformStats] = field(default_factory=dict)
    histograms: dict[str, list[int]] = field(default_factory=lambda: {x: [0] * BINS for x in MODEL_LABELS})
    sellers: SellerRollup = field(default_factory=SellerRollup)
    top: list = field(default_factory=list)  # min-heap of (severity, score, -order, sample dict)
    verdicts_given: int = 0
    verdicts_unmatched: int = 0

    def known_sellers(self) -> list[SellerStats]:
        return [s for s in self.sellers.sellers() if s.known]

    def listings_with_any(self, labels, decision: str | None = None) -> int:
        """Listings carrying at least one of `labels` (optionally: with this model decision).

        >>> t = Tally(combos=Counter({(frozenset({"report_sale", "false_ad"}), "block"): 2,
        ...                          (frozenset({"false_ad"}), "review"): 3, (frozenset(), "pass"): 5}))
        >>> t.listings_with_any({"report_sale", "false_ad"}), t.listings_with_any({"false_ad"}, "block")
        (5, 2)
        """
        wanted = set(labels)
        return sum(n for (combo, d), n in self.combos.items() if combo & wanted and (decision is None or d == decision))


def tally_run(run: str | Path, verdicts: dict[str, list[str]] | None = None, top: int = 20) -> Tally:
    """Stream RUN once, applying verdicts, into a Tally."""
    verdicts = verdicts or {}
    t = Tally(verdicts_given=len(verdicts))
    matched: set[str] = set()
    for order, row in enumerate(iter_run(run), start=1):
        verdict = verdicts.get(row["listing_id"])
        labels = row["labels"] if verdict is None else verdict_labels(row, verdict)
        if verdict is not None:
            matched.add(row["listing_id"])
        count_listing(t, row, labels, reviewed=verdict is not None)
        keep_sample(t, row, labels, verdict is not None, order, top)
    t.verdicts_unmatched = len(set(verdicts) - matched)
    return t


def count_listing(t: Tally, row: dict, labels: list[str], reviewed: bool) -> None:
    """Add one listing to every count: totals, the reviewed split, platform, seller, histograms."""
    t.listings += 1
    t.model_versions[row.get("model_version") or ""] += 1
    t.decisions[row.get("decision") or ""] += 1
    t.combos[(frozenset(labels), row.get("decision") or "")] += 1
    flagged = any(x in VIOLATION_LABELS for x in labels)
    t.labels.update(labels)
    t.flagged += flagged
    if reviewed:
        t.reviewed += 1
        t.cleared += not flagged
        t.confirmed.update(labels)
        t.confirmed_flagged += flagged
        t.overturned.update(x for x in row["labels"] if x not in labels)
        t.added.update(x for x in labels if x not in row["labels"])
    elif row.get("decision") == "review":
        t.pending_review += 1
    # Stripped like sellers.seller_key's platform, so " 淘宝" and "淘宝" are one platform in both.
    platform = t.platforms.setdefault(str(row.get("platform") or "").strip(), PlatformStats())
    platform.listings += 1
    platform.flagged += flagged
    platform.confirmed_flagged += flagged and reviewed
    platform.labels.update(labels)
    if flagged:
        platform.by_top_label[next(x for x in LABEL_NAMES if x in labels)] += 1
    t.sellers.add(row, labels, reviewed)
    for name, column in zip(MODEL_LABELS, PROB_COLUMNS):
        p = min(max(row[column], 0.0), 1.0)
        t.histograms[name][min(int(p * BINS), BINS - 1)] += 1


# --- sample listings for the page ----------------------------------------------------------------

def keep_sample(t: Tally, row: dict, labels: list[str], reviewed: bool, order: int, size: int) -> None:
    """Keep the `size` most severe flagged listings, with their text clipped around the evidence."""
    severity, score = listing_rank(labels, row)
    if severity < CREDENTIAL_MISSING.severity or size <= 0:
        return
    key = (severity, score, -order)
    if len(t.top) >= size and key <= t.top[0][:3]:
        return  # cheap rejection before any text is touched
    evidence = _evidence_list(row.get("evidence"))
    sample = {"listing_id": row["listing_id"], "platform": row.get("platform") or "",
              "shop": (row.get("shop_name") or row.get("shop_id") or "").strip(), "labels": labels,
              "model_labels": row["labels"], "reviewed": reviewed, "decision": row.get("decision") or "",
              "probs": {x: row[c] for x, c in zip(MODEL_LABELS, PROB_COLUMNS)},
              "fields": {f: clip(row.get(f) or "", spans_for(row.get(f) or "", evidence, f), limit)
                         for f, limit in (("title", TITLE_CHARS), ("description", DESCRIPTION_CHARS))}}
    item = (*key, sample)
    if len(t.top) < size:
        heapq.heappush(t.top, item)
    else:
        heapq.heapreplace(t.top, item)


def _evidence_list(value) -> list[dict]:
    """The row's evidence as a list of dicts; anything unreadable counts as no evidence."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return []
    return [ev for ev in value if isinstance(ev, dict)] if isinstance(value, list) else []


def spans_for(text: str, evidence: list[dict], field_name: str) -> list[tuple[int, int, str]]:
    """(start, end, label) spans of `evidence` in `field_name`, labels from the fixed list only.
    Offsets that do not match the quoted text are re-anchored on its first occurrence, or dropped:
    a wrong highlight misleads (core.evidence_spans, shared with the review tool)."""
    return evidence_spans(text, evidence, field_name, BY_NAME)


def clip(text: str, spans: list[tuple[int, int, str]], limit: int) -> tuple[str, list, bool, bool]:
    """At most `limit` characters of `text`, starting a little before the first span so that the
    evidence stays in view; returns (text, shifted spans, clipped at start, clipped at end)."""
    if len(text) <= limit:
        return text, spans, False, False
    start = max(0, min(s for s, _, _ in spans) - limit // 4) if spans else 0
    end = min(len(text), start + limit)
    shifted = [(max(s, start) - start, min(e, end) - start, lab) for s, e, lab in spans if e > start and s < end]
    return text[start:end], shifted, start > 0, end < len(text)
