"""`reportguard sellers RUN`: one row per seller of a scored run, worst offenders first.

Reviewers and regulators act on sellers, not listings: a shop with forty "代办报告" listings is one
case, and the campaign table counts sellers checked and sellers handled. This module rolls a
scored run (the output of `reportguard score`) up to sellers.

Who is a seller
- `platform` + `shop_id` when the row has a shop id: ids are stable, names get edited.
- else `platform` + `shop_name`.
- else the row goes to its platform's "(unknown shop)" group. Such groups are kept (a pile of
  flagged listings with no seller identity is itself worth knowing) but marked `shop_known =
  false`, and callers that count sellers (the regulator's table) leave them out.
  A shop that shows its id on some rows and only its name on others becomes two sellers: joining
  them would need a mapping the run does not have.

What a row holds: listings scored; counts per label (report_sale, false_ad, credential_missing,
testing_service); counts per model decision (block, review, pass); `flagged`, the listings that
carry a violation label (any label but the information-only testing_service); the maximum
severity (core.labels) as a number and a label name; sample listing ids, highest severity first.
Rows are sorted by maximum severity, then flagged count, then listings.

Streaming: a run is read batch by batch by outputs.iter_run (Parquet row groups via iter_batches,
JSONL and CSV line by line) and only per-seller aggregates stay in memory, so a run of millions of listings needs
memory in proportion to its sellers, not its rows: about 3 KB per seller with 5 samples (measured:
300k listings from 93k sellers, 270 MB above the reader's own, 9 s on 2 cores).

The output format follows the extension (.csv, .parquet, .jsonl). The CSV is UTF-8 with a BOM
so that Excel shows Chinese shop names, samples are pipe-separated (as labels are in a CSV run),
and a text cell that starts with = + - @ gets a leading apostrophe: shop names are written by
sellers, and Excel would otherwise run `=HYPERLINK(...)` in one as a formula.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import heapq
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from reportguard.core.atomic import atomic_path
from reportguard.core.labels import (ALL_LABEL_NAMES, ALL_LABELS, BY_NAME, MODEL_LABELS, PROB_COLUMNS, TESTING_SERVICE, prob_column,
                                     severity)

# The run reader is outputs.py's; iter_run and run_format stay importable from here.
from .outputs import iter_run, run_format  # noqa: F401

#: Every label, most severe first (core.labels.ALL_LABEL_NAMES; this name stays importable).
LABEL_NAMES: tuple[str, ...] = ALL_LABEL_NAMES
#: Labels that make a listing (and its seller) a problem; testing_service alone is information.
VIOLATION_LABELS: tuple[str, ...] = tuple(name for name in LABEL_NAMES if name != TESTING_SERVICE.name)
DECISIONS: tuple[str, ...] = ("block", "review", "pass")
UNKNOWN_SHOP = "(unknown shop)"
UNKNOWN_PLATFORM = "(unknown platform)"
#: The run columns a seller roll-up reads; other columns are never loaded from Parquet.
SELLER_COLUMNS: tuple[str, ...] = ("listing_id", *PROB_COLUMNS, "labels", "decision", "platform", "shop_id", "shop_name")
OUTPUT_COLUMNS: tuple[str, ...] = (
    "platform", "shop_id", "shop_name", "shop_known", "listings", "flagged",
    *(f"n_{name}" for name in LABEL_NAMES), *(f"n_{d}" for d in DECISIONS),
    "max_severity", "max_severity_label", "max_severity_zh", "sample_listing_ids",
)


# --- who is the seller -------------------------------------------------------------------------

def seller_key(row: dict) -> tuple[str, str, str]:
    """(platform, kind, value): kind is 'id', 'name' or 'unknown'.

    >>> seller_key({"platform": "淘宝", "shop_id": " 42 ", "shop_name": "店A"})
    ('淘宝', 'id', '42')
    >>> seller_key({"platform": "淘宝", "shop_name": "店A"})
    ('淘宝', 'name', '店A')
    >>> seller_key({"shop_id": "", "shop_name": None})
    ('', 'unknown', '')
    """
    platform = _text(row.get("platform"))
    shop_id, shop_name = _text(row.get("shop_id")), _text(row.get("shop_name"))
    if shop_id:
        return platform, "id", shop_id
    if shop_name:
        return platform, "name", shop_name
    return platform, "unknown", ""


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def listing_rank(labels: Iterable[str], row: dict) -> tuple[int, float]:
    """How bad a listing is: its severity, then its highest violation probability (a tie-break)."""
    labels = list(labels)
    worst = max((row.get(prob_column(x), 0.0) for x in labels if x in MODEL_LABELS and x != TESTING_SERVICE.name), default=0.0)
    return severity(labels), float(worst)


# --- the roll-up -------------------------------------------------------------------------------

@dataclass(slots=True)  # one per seller, and a dump can have hundreds of thousands
class SellerStats:
    """Aggregates for one seller; nothing per listing except a bounded heap of sample ids."""
    platform: str
    shop_id: str
    shop_name: str
    known: bool
    listings: int = 0
    flagged: int = 0
    confirmed_flagged: int = 0  # flagged listings whose labels a reviewer confirmed
    labels: Counter = field(default_factory=Counter)
    confirmed: Counter = field(default_factory=Counter)  # per label, from reviewed listings only
    decisions: Counter = field(default_factory=Counter)
    max_severity: int = 0
    samples: list = field(default_factory=list)  # min-heap of (severity, score, -order, listing_id)

    @property
    def max_label(self) -> str:
        """The most severe label this seller carries, '' when clean."""
        return next((x.name for x in ALL_LABELS if x.severity == self.max_severity), "")

    def sample_ids(self) -> list[str]:
        return [item[3] for item in sorted(self.samples, reverse=True)]


class SellerRollup:
    """Feed rows with `add`; read sellers, sorted, with `sellers`."""

    def __init__(self, samples: int = 5):
        self.samples = max(0, samples)
        self.by_key: dict[tuple[str, str, str], SellerStats] = {}
        self.unknown_listings = 0  # listings with neither shop id nor shop name
        self._order = 0

    def add(self, row: dict, labels: list[str] | None = None, reviewed: bool = False) -> SellerStats:
        """Count one listing. `labels` overrides the row's labels (reviewer verdicts)."""
        labels = row["labels"] if labels is None else labels
        key = seller_key(row)
        stats = self.by_key.get(key)
        if stats is None:
            stats = self.by_key[key] = _new_seller(key)
        if key[1] == "id" and not stats.shop_name:
            stats.shop_name = _text(row.get("shop_name"))
        if key[1] == "unknown":
            self.unknown_listings += 1
        stats.listings += 1
        stats.labels.update(labels)
        stats.decisions[row.get("decision") or ""] += 1
        flagged = any(x in VIOLATION_LABELS for x in labels)
        stats.flagged += flagged
        if reviewed:
            stats.confirmed.update(labels)
            stats.confirmed_flagged += flagged
        rank = listing_rank(labels, row)
        stats.max_severity = max(stats.max_severity, rank[0])
        self._keep_sample(stats, rank, row["listing_id"])
        return stats

    def _keep_sample(self, stats: SellerStats, rank: tuple[int, float], listing_id: str) -> None:
        # -order: among equals the earliest listing wins, so samples do not depend on heap history.
        self._order += 1
        item = (rank[0], rank[1], -self._order, listing_id)
        if len(stats.samples) < self.samples:
            heapq.heappush(stats.samples, item)
        elif self.samples and item > stats.samples[0]:
            heapq.heapreplace(stats.samples, item)

    def sellers(self) -> list[SellerStats]:
        """Every seller, worst first: max severity, flagged count, listings, then name for stability."""
        return sorted(self.by_key.values(),
                      key=lambda s: (-s.max_severity, -s.flagged, -s.listings, s.platform, s.shop_id, s.shop_name))


def _new_seller(key: tuple[str, str, str]) -> SellerStats:
    platform, kind, value = key
    return SellerStats(platform=platform, shop_id=value if kind == "id" else "",
                       shop_name=value if kind == "name" else (UNKNOWN_SHOP if kind == "unknown" else ""),
                       known=kind != "unknown")


def roll_up_sellers(rows: Iterable[dict], samples: int = 5) -> SellerRollup:
    """Roll rows (dicts as `iter_run` yields them) up to sellers."""
    rollup = SellerRollup(samples)
    for row in rows:
        rollup.add(row)
    return rollup


def seller_records(sellers: Iterable[SellerStats]) -> list[dict]:
    """Output rows, in OUTPUT_COLUMNS order."""
    out = []
    for s in sellers:
        label = BY_NAME.get(s.max_label)
        out.append({
            "platform": s.platform, "shop_id": s.shop_id, "shop_name": s.shop_name, "shop_known": s.known,
            "listings": s.listings, "flagged": s.flagged,
            **{f"n_{name}": s.labels.get(name, 0) for name in LABEL_NAMES},
            **{f"n_{d}": s.decisions.get(d, 0) for d in DECISIONS},
            "max_severity": s.max_severity, "max_severity_label": label.name if label else "",
            "max_severity_zh": label.zh if label else "", "sample_listing_ids": s.sample_ids(),
        })
    return out


# --- writing -----------------------------------------------------------------------------------

def default_output(run: str | Path) -> Path:
    """RUN's stem + .sellers.csv, beside RUN (run.parquet -> run.sellers.csv; run.csv.gz too)."""
    run = Path(run)
    return run.with_name(f"{run_stem(run)}.sellers.csv")


def run_stem(run: Path) -> str:
    """A run's name without its format suffix (and .gz): 'out.csv.gz' -> 'out'."""
    name = run.name[:-3] if run.name.lower().endswith(".gz") else run.name
    return name[: -len(run_format(run)) - 1]


def write_sellers(records: list[dict], out: str | Path) -> Path:
    """Write seller rows as CSV, Parquet or JSONL (by extension), via a temp file and a rename."""
    out = Path(out)
    fmt = run_format(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        {"csv": _write_csv, "parquet": _write_parquet, "jsonl": _write_jsonl}[fmt](records, tmp, out.name.lower().endswith(".gz"))
    return out


def _write_csv(records: list[dict], path: Path, gz: bool) -> None:
    opener = (lambda p: gzip.open(p, "wt", encoding="utf-8-sig", newline="")) if gz else \
        (lambda p: open(p, "w", encoding="utf-8-sig", newline=""))
    with opener(path) as fh:
        writer = csv.writer(fh)
        writer.writerow(OUTPUT_COLUMNS)
        for r in records:
            writer.writerow([_csv_cell(r[c]) for c in OUTPUT_COLUMNS])


def _csv_cell(value):
    """A CSV cell that Excel shows as text: lists pipe-joined, formula-looking text defused."""
    if isinstance(value, list):
        value = "|".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _write_parquet(records: list[dict], path: Path, gz: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ints = [f"n_{x}" for x in (*LABEL_NAMES, *DECISIONS)] + ["listings", "flagged", "max_severity"]
    schema = pa.schema([(c, pa.list_(pa.string()) if c == "sample_listing_ids" else pa.bool_() if c == "shop_known"
                         else pa.int64() if c in ints else pa.string()) for c in OUTPUT_COLUMNS])
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)


def _write_jsonl(records: list[dict], path: Path, gz: bool) -> None:
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def sellers(run: str | Path, output: str | Path | None = None, samples: int = 5) -> tuple[Path, SellerRollup]:
    """Roll RUN up to sellers and write them; returns the output path and the roll-up."""
    rollup = roll_up_sellers(iter_run(run, SELLER_COLUMNS), samples)
    out = Path(output) if output else default_output(run)
    write_sellers(seller_records(rollup.sellers()), out)
    return out, rollup


# --- command line ------------------------------------------------------------------------------

def add_sellers_command(subparsers) -> argparse.ArgumentParser:
    """`reportguard sellers RUN [--output FILE] [--samples N]`."""
    p = subparsers.add_parser("sellers", help="one row per seller (platform + shop) of a scored run, worst first")
    p.add_argument("run", metavar="RUN", help="output of `reportguard score` (.parquet, .jsonl or .csv)")
    p.add_argument("--output", default=None,
                   help="FILE.csv, .parquet or .jsonl (default: RUN's stem + .sellers.csv beside RUN)")
    p.add_argument("--samples", type=int, default=5, help="sample listing ids per seller, worst first (default 5)")
    p.set_defaults(func=_sellers_main)
    return p


def _sellers_main(args) -> int:
    out, rollup = sellers(args.run, args.output, args.samples)
    everyone = rollup.sellers()
    known = [s for s in everyone if s.known]
    unknown = [s for s in everyone if not s.known]
    print(f"{out}: {len(known)} sellers, {sum(1 for s in known if s.flagged)} with flagged listings")
    if unknown:
        print(f"  {rollup.unknown_listings} listings without shop id or name, grouped as {UNKNOWN_SHOP!r} "
              f"in {len(unknown)} platform(s)")
    return 0
