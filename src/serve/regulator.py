"""`reportguard report RUN`: the campaign's statistics table (附件 专项整治行动情况统计表) and a report page.

The campaign notice (市监检测发〔2021〕54号) asks each reporting period for platforms involved,
sellers checked, sellers handled, listings involved, and false-advertising items. A scoring run
(plus reviewers' verdicts, when there are some) holds everything needed to count them.

## The table's rows

| # | 指标 | indicator | counted as |
|---|---|---|---|
| 1 | 检查平台数 | platforms checked | distinct non-empty `platform` values in the run |
| 2 | 涉及平台数 | platforms involved | platforms with at least one flagged listing |
| 3 | 检查经营者/店铺数 | sellers checked | distinct sellers (platform + shop_id, else shop_name; see sellers.py); listings with neither are counted in the note, not as sellers |
| 4 | 发现问题经营者数 | sellers with problems found | sellers with at least one flagged listing. The notice's "sellers handled" means action taken, which a run cannot know: this is the number to be handled |
| 5 | 检查条目数 | listings checked | rows of the run (the manifest's rejected rows are in the note) |
| 6 | 发现问题条目数 | listings flagged | listings with a violation label |
| 7-14 | per task: 买卖/伪造检验检测报告, 虚假广告宣传 (虚假宣传条目数), 未公示资质, 检验检测服务 | listings, sellers | listings carrying the label; sellers with at least one such listing. 检验检测服务 is information, not a violation |
| 15 | 拦截条目数 | listings blocked | model decision `block` |
| 16 | 待复核条目数 | listings awaiting review | model decision `review`, no verdict yet |
| 17 | 已复核条目数 | listings reviewed | listings of the run with a verdict |
| 18 | 复核无问题条目数 | reviewed and cleared | reviewed listings whose verdict has no violation label |

"Flagged" means carrying a violation label: report_sale, false_ad or credential_missing
(testing_service alone is the information label of an honest lab).

## Model-only vs reviewer-confirmed

Without `--verdicts`, every label count is the model's (plus the credential rule), and the table
says so. With `--verdicts FILE.jsonl` (the review tool's corpus export: one object per reviewed
listing with `listing_id` and `labels`, the model labels the reviewer confirmed, [] = cleared),
a reviewed listing's labels are the verdict's, not the model's, and `credential_missing` is
re-derived by the same rule the scorer uses (a confirmed testing service with no disclosed
credential). Each count is then split into columns that add up:
- 复核确认 reviewer-confirmed: counted from reviewed listings' verdicts;
- 仅模型 model-only: counted from listings nobody has reviewed yet;
and a seller or platform is reviewer-confirmed when at least one of its flagged listings is.
Counts of platforms, sellers and listings checked come from the input itself; blocked and
awaiting-review counts are the model's decisions. Verdicts for listings not in the run are
counted and reported, never used.

`--precision FILE.json` (the review tool's precision export) is only displayed, as a table of
per-label precision with its interval: it does not change any count. It is read defensively:
`models.<model_version>.labels.<label>.precision.{estimate, low, high, reviewed, confirmed}` as
the review tool writes it, or the same `labels` mapping at the top level, with a number or an
{estimate|value, low|lower, high|upper} object per label. What cannot be read is reported on the
page, not raised.

## Outputs (in DIR, default `<RUN stem>.report/` beside RUN)

- `table.csv`: the table, UTF-8 with a BOM so that Excel shows the Chinese;
- `table.xlsx`: the table under a title, the period, the model version and the sources; a
  precision sheet when --precision was given;
- `report.html`: one self-contained page (no scripts, external CSS, fonts or network; its
  Content-Security-Policy forbids them) with the table, the run's manifest, charts as inline SVG
  drawn here (so the serve extra needs no matplotlib), top sellers, and the most severe flagged
  listings with their evidence highlighted.

Listing text, shop names and evidence are written by sellers: every piece is escaped, and
highlight markup is built around escaped segments only, never by editing escaped or raw HTML.

Streaming: the run is read batch by batch; memory holds per-seller and per-platform aggregates,
fixed-size histograms, the verdicts, and a bounded heap of sample listings.
"""
from __future__ import annotations

import argparse
import csv
import heapq
import html
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from reportguard.core.evidence_spans import evidence_spans
from reportguard.core.labels import ALL_LABELS, BY_NAME, CREDENTIAL_MISSING, MODEL_LABELS, TESTING_SERVICE

from .outputs import PROB_COLUMNS, iter_run, split_labels
from .sellers import LABEL_NAMES, UNKNOWN_PLATFORM, VIOLATION_LABELS, SellerRollup, SellerStats, listing_rank, run_stem

TITLE_ZH = "检验检测报告网上销售专项整治行动情况统计表"
TITLE_EN = "Campaign against online sales of counterfeit inspection and testing reports: summary table"
HEADER = ("序号 No.", "类别 Section", "指标", "Indicator", "合计 Total", "复核确认 Reviewer-confirmed",
          "仅模型 Model-only", "口径 Basis", "说明 Note")
INPUT, MODEL, MIXED, DECISION, REVIEW = ("输入数据 input data", "模型 model only", "模型+复核 model + reviewers",
                                         "模型判定 model decision", "复核结论 reviewer verdicts")
TASK_EN = {"report_sale": "Selling or forging test reports", "false_ad": "False advertising",
           "credential_missing": "Credentials not disclosed", "testing_service": "Testing services (information only)"}
COLOURS = {"report_sale": "#b3261e", "false_ad": "#e8710a", "credential_missing": "#c9a100", "testing_service": "#3b78c3"}
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
                raise ValueError(f"{path}: line {line_no}: invalid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict) or obj.get("listing_id") in (None, ""):
                raise ValueError(f"{path}: line {line_no}: a verdict needs a listing_id")
            labels = obj.get("labels") or []
            if isinstance(labels, str):
                labels = split_labels(labels)
            unknown = [x for x in labels if x not in BY_NAME]
            if unknown:
                raise ValueError(f"{path}: line {line_no}: unknown label(s) {unknown}; verdicts carry {list(MODEL_LABELS)}")
            verdicts[str(obj["listing_id"])] = [x for x in MODEL_LABELS if x in labels]
    return verdicts


def verdict_labels(row: dict, confirmed: list[str]) -> list[str]:
    """A reviewed listing's labels: the verdict's, plus credential_missing by the scorer's rule."""
    from reportguard.core.credentials import credential_missing

    labels = [x for x in MODEL_LABELS if x in confirmed]
    text = f"{row.get('title') or ''}\n{row.get('description') or ''}"
    if credential_missing(labels, text, row.get("qualification") or ""):
        labels.insert(labels.index(TESTING_SERVICE.name), CREDENTIAL_MISSING.name)
    return labels


# --- one pass over the run ---------------------------------------------------------------------

@dataclass
class PlatformStats:
    listings: int = 0
    flagged: int = 0
    confirmed_flagged: int = 0
    by_top_label: Counter = field(default_factory=Counter)  # flagged listings by their most severe label


@dataclass
class Tally:
    """Everything the table, the XLSX and the page need, gathered in one streaming pass."""
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
    model_versions: Counter = field(default_factory=Counter)
    platforms: dict[str, PlatformStats] = field(default_factory=dict)
    histograms: dict[str, list[int]] = field(default_factory=lambda: {x: [0] * BINS for x in MODEL_LABELS})
    sellers: SellerRollup = field(default_factory=SellerRollup)
    top: list = field(default_factory=list)  # min-heap of (severity, score, -order, sample dict)
    verdicts_given: int = 0
    verdicts_unmatched: int = 0

    def known_sellers(self) -> list[SellerStats]:
        return [s for s in self.sellers.sellers() if s.known]


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
    platform = t.platforms.setdefault((row.get("platform") or "").strip(), PlatformStats())
    platform.listings += 1
    platform.flagged += flagged
    platform.confirmed_flagged += flagged and reviewed
    if flagged:
        platform.by_top_label[next(x for x in LABEL_NAMES if x in labels)] += 1
    t.sellers.add(row, labels, reviewed)
    for name, column in zip(MODEL_LABELS, PROB_COLUMNS):
        p = min(max(row[column], 0.0), 1.0)
        t.histograms[name][min(int(p * BINS), BINS - 1)] += 1


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


# --- the table ---------------------------------------------------------------------------------

@dataclass
class TableRow:
    no: int
    section: str
    zh: str
    en: str
    total: int
    confirmed: int | None  # None: not applicable, or no verdicts were given
    model_only: int | None
    basis: str
    note: str = ""

    def cells(self) -> list:
        return [self.no, self.section, self.zh, self.en, self.total, self.confirmed, self.model_only, self.basis, self.note]


def campaign_table(t: Tally, with_verdicts: bool) -> list[TableRow]:
    """The 18 rows described in the module docstring."""
    rows: list[TableRow] = []

    def add(section: str, zh: str, en: str, total: int, confirmed: int | None, basis: str, note: str = "") -> None:
        # Label-based counts (MIXED) split into reviewer-confirmed + model-only when verdicts exist;
        # without verdicts they are all model-only. Other rows have no such split.
        if basis == MIXED and with_verdicts:
            split = (confirmed, total - confirmed)
        elif basis == MIXED:
            split, basis = (None, total), MODEL
        else:
            split = (None, None)
        rows.append(TableRow(len(rows) + 1, section, zh, en, total, *split, basis, note))

    sellers = t.known_sellers()
    unknown_groups = [s for s in t.sellers.sellers() if not s.known]
    named_platforms = {p: s for p, s in t.platforms.items() if p}
    overall = "总体 Overall"
    add(overall, "检查平台数", "Platforms checked", len(named_platforms), None, INPUT,
        _unknown_platform_note(t))
    add(overall, "涉及平台数", "Platforms involved (with flagged listings)",
        sum(1 for s in named_platforms.values() if s.flagged), sum(1 for s in named_platforms.values() if s.confirmed_flagged),
        MIXED)
    add(overall, "检查经营者/店铺数", "Sellers (shops) checked", len(sellers), None, INPUT,
        f"另有 {t.sellers.unknown_listings} 条无店铺信息的条目（{len(unknown_groups)} 个平台），未计入 / "
        f"{t.sellers.unknown_listings} listings without shop id or name, not counted as sellers"
        if t.sellers.unknown_listings else "")
    add(overall, "发现问题经营者数", "Sellers with problems found (to be handled)", sum(1 for s in sellers if s.flagged),
        sum(1 for s in sellers if s.confirmed_flagged), MIXED,
        "待处置经营者；实际处置情况需平台填报 / action taken is the platform's to report")
    add(overall, "检查条目数", "Listings checked", t.listings, None, INPUT)
    add(overall, "发现问题条目数", "Listings flagged (any violation)", t.flagged, t.confirmed_flagged, MIXED,
        "含买卖/伪造报告、虚假宣传、未公示资质 / report_sale, false_ad or credential_missing")
    for label in ALL_LABELS:
        section = f"{label.zh} {label.name}"
        item = "虚假宣传条目数" if label.name == "false_ad" else "条目数"
        item_en = "false-ad items" if label.name == "false_ad" else "listings"
        note = "信息类，非违规 / information, not a violation" if label.name == TESTING_SERVICE.name else ""
        if label.derived:
            note = "由规则判定：检验检测服务且未公示CMA/CNAS资质或授权 / rule: testing service without a disclosed credential"
        add(section, f"{label.zh}：{item}", f"{TASK_EN[label.name]}: {item_en}", t.labels[label.name],
            t.confirmed[label.name], MIXED, _join(note, _review_changes(t, label.name, with_verdicts)))
        add(section, f"{label.zh}：经营者数", f"{TASK_EN[label.name]}: sellers",
            sum(1 for s in sellers if s.labels[label.name]), sum(1 for s in sellers if s.confirmed[label.name]), MIXED)
    handling = "处置 Handling"
    add(handling, "拦截条目数", "Listings blocked", t.decisions["block"], None, DECISION)
    add(handling, "待复核条目数", "Listings awaiting review", t.pending_review, None, DECISION,
        "模型判为待复核且尚无复核结论 / decision 'review' and no verdict yet")
    no_verdicts = "" if with_verdicts else "未提供复核结论 / no verdicts given"
    add(handling, "已复核条目数", "Listings reviewed", t.reviewed, None, REVIEW,
        _join(no_verdicts, f"另有 {t.verdicts_unmatched} 条复核结论不在本批数据中，未使用 / "
                           f"{t.verdicts_unmatched} verdicts for listings not in this run, unused" if t.verdicts_unmatched else ""))
    add(handling, "复核无问题条目数", "Reviewed and cleared", t.cleared, None, REVIEW, no_verdicts)
    return rows


def _unknown_platform_note(t: Tally) -> str:
    unknown = t.platforms.get("")
    return f"另有 {unknown.listings} 条条目无平台信息 / {unknown.listings} listings without a platform" if unknown else ""


def _review_changes(t: Tally, label: str, with_verdicts: bool) -> str:
    if not with_verdicts or not (t.overturned[label] or t.added[label]):
        return ""
    return f"复核撤销 {t.overturned[label]}，复核新增 {t.added[label]} / reviewers removed {t.overturned[label]}, added {t.added[label]}"


def _join(*parts: str) -> str:
    return "；".join(p for p in parts if p)


def write_table_csv(rows: list[TableRow], path: Path) -> Path:
    """UTF-8 with a BOM: without it Excel opens the Chinese as mojibake."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for r in rows:
            writer.writerow(["" if c is None else c for c in r.cells()])
    tmp.replace(path)
    return path


def write_table_xlsx(rows: list[TableRow], path: Path, meta: dict, precision: dict) -> Path:
    """The table under a title and the report's context; a precision sheet when one was given."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = "统计表"
    _put(ws, 1, 1, TITLE_ZH).font = Font(bold=True, size=14)
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(HEADER))
    context = [("填报期间 Period", meta["period"]), ("模型版本 Model version", meta["model_version"]),
               ("数据 Run", meta["run"]), ("复核结论 Verdicts", meta["verdicts"] or "无 none"),
               ("生成时间 Generated", meta["generated"])]
    for k, (name, value) in enumerate(context, start=2):
        _put(ws, k, 1, name).font = Font(bold=True)
        _put(ws, k, 3, value)
    header_row = len(context) + 3
    for c, name in enumerate(HEADER, start=1):
        cell = _put(ws, header_row, c, name)
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDE4EE")
        cell.alignment = Alignment(wrap_text=True, vertical="center")
    for k, r in enumerate(rows, start=header_row + 1):
        for c, value in enumerate(r.cells(), start=1):
            _put(ws, k, c, value).alignment = Alignment(wrap_text=c in (3, 4, 9), vertical="top")
    for c, width in enumerate((7, 26, 34, 44, 10, 14, 12, 22, 60), start=1):
        ws.column_dimensions[get_column_letter(c)].width = width
    ws.freeze_panes = ws.cell(row=header_row + 1, column=1)
    if precision["rows"]:
        _precision_sheet(wb.create_sheet("精确率 precision"), precision, _put)
    tmp = path.with_name(f".{path.name}.tmp")
    wb.save(tmp)
    tmp.replace(path)
    return path


def _put(ws, row: int, column: int, value):
    """Set a cell; strings stay strings (openpyxl would treat a leading '=' as a formula)."""
    cell = ws.cell(row=row, column=column, value=value)
    if isinstance(value, str):
        cell.data_type = "s"
    return cell


def _precision_sheet(ws, precision: dict, put) -> None:
    columns = ("模型 Model", "标签 Label", "精确率 Precision", "下限 Low", "上限 High", "复核数 Reviewed", "确认数 Confirmed", "说明 Note")
    for c, name in enumerate(columns, start=1):
        put(ws, 1, c, name)
    for k, r in enumerate(precision["rows"], start=2):
        for c, value in enumerate((r["model"], r["label"], r["estimate"], r["low"], r["high"], r["reviewed"], r["confirmed"], r["note"]), start=1):
            cell = put(ws, k, c, value)
            if 3 <= c <= 5:
                cell.number_format = "0.0%"
    for c, width in enumerate((28, 22, 14, 10, 10, 14, 14, 50), start=1):
        ws.column_dimensions[chr(64 + c)].width = width


# --- precision (displayed, never used in counts) -------------------------------------------------

def read_precision(path: str | Path | None, model_version: str) -> dict:
    """{'rows': [...], 'notes': [...], 'confidence': float|None}; unreadable parts become notes."""
    result: dict = {"rows": [], "notes": [], "confidence": None, "source": Path(path).name if path else ""}
    if not path:
        return result
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, json.JSONDecodeError) as exc:
        result["notes"].append(f"could not read {Path(path).name}: {exc}")
        return result
    if not isinstance(data, dict):
        result["notes"].append(f"{Path(path).name}: expected a JSON object")
        return result
    result["confidence"] = _number(data.get("confidence"))
    for model, entry in _precision_models(data, model_version, result["notes"]):
        labels = entry.get("labels") if isinstance(entry.get("labels"), dict) else entry
        note = _entry_note(entry)
        for name in LABEL_NAMES:
            row = _precision_row(labels.get(name))
            if row:
                result["rows"].append({"model": model, "label": name, "note": note, **row})
    if not result["rows"]:
        result["notes"].append(f"{Path(path).name}: no per-label precision found (top-level keys: {sorted(data)[:12]})")
    return result


def _precision_models(data: dict, model_version: str, notes: list[str]) -> list[tuple[str, dict]]:
    """Which model entries to show: the run's model if present, else whatever is there, with a note."""
    models = data.get("models")
    if not isinstance(models, dict):
        return [(str(data.get("model_version") or "?"), data)]
    entries = [(str(k), v) for k, v in models.items() if isinstance(v, dict)]
    mine = [(k, v) for k, v in entries if k == model_version]
    if mine:
        return mine
    if entries:
        notes.append(f"precision file has no entry for this run's model {model_version}; showing {[k for k, _ in entries][:5]}")
    return entries


def _entry_note(entry: dict) -> str:
    parts = []
    if entry.get("method"):
        parts.append(f"method {entry['method']}")
    if entry.get("representative") is False:
        parts.append("describes reviewed items only, not the whole run")
    if entry.get("coverage"):
        parts.append(f"coverage {entry['coverage']}")
    return ", ".join(str(p) for p in parts)


def _precision_row(value) -> dict | None:
    if isinstance(value, dict) and "precision" in value:
        value = value["precision"]
    if _number(value) is not None:
        return {"estimate": _number(value), "low": None, "high": None, "reviewed": None, "confirmed": None}
    if not isinstance(value, dict):
        return None
    estimate = _number(_first(value, "estimate", "value", "p"))
    if estimate is None:
        return None
    interval = value.get("ci") if isinstance(value.get("ci"), (list, tuple)) and len(value.get("ci")) == 2 else (None, None)
    return {"estimate": estimate, "low": _number(_first(value, "low", "lower", "ci_low")) or _number(interval[0]),
            "high": _number(_first(value, "high", "upper", "ci_high")) or _number(interval[1]),
            "reviewed": _count(_first(value, "reviewed", "n")), "confirmed": _count(value.get("confirmed"))}


def _first(d: dict, *keys):
    return next((d[k] for k in keys if d.get(k) is not None), None)


def _number(value) -> float | None:
    """A probability in [0, 1], else None (booleans and strings are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if 0.0 <= value <= 1.0 else None


def _count(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


# --- evidence highlighting (untrusted text) -----------------------------------------------------

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


def highlight(clipped: tuple[str, list, bool, bool]) -> str:
    """Escaped text with each evidence span in <mark class="ev ev-LABEL">.

    The text is cut at span boundaries first, each piece escaped, and only then wrapped: markup is
    never inserted into raw or escaped text. Class names come from the fixed label list.

    >>> highlight(('<b>包过</b>"', [(3, 5, "false_ad")], False, False))
    '&lt;b&gt;<mark class="ev ev-false_ad" title="虚假广告宣传 false_ad">包过</mark>&lt;/b&gt;&quot;'
    """
    text, spans, before, after = clipped
    cuts = sorted({0, len(text), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    pieces = ["…" if before else ""]
    for a, b in zip(cuts, cuts[1:]):
        piece = html.escape(text[a:b])
        covering = [x for x in LABEL_NAMES if any(s <= a and b <= e and lab == x for s, e, lab in spans)]
        if covering:
            worst = covering[0]
            tip = html.escape(" ".join(f"{BY_NAME[x].zh} {x}" for x in covering))
            piece = f'<mark class="ev ev-{worst}" title="{tip}">{piece}</mark>'
        pieces.append(piece)
    pieces.append("…" if after else "")
    return "".join(pieces)


# --- charts: inline SVG, drawn here -------------------------------------------------------------

def histogram_svg(label: str, counts: list[int], width: int = 340, height: int = 200) -> str:
    """Bars of listings per probability bin, on a log scale: most listings sit near 0 and would
    flatten every other bar on a linear one."""
    left, right, top, bottom = 46, 10, 12, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(counts) if counts else 0
    log_peak = math.log10(peak + 1) or 1.0
    bar_w = plot_w / len(counts)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="{html.escape(label)} score histogram">']
    decade = 1
    while decade <= peak:
        y = top + plot_h - math.log10(decade + 1) / log_peak * plot_h
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 5}" y="{y + 4:.1f}" class="tick" text-anchor="end">{decade:,}</text>')
        decade *= 10
    for k, count in enumerate(counts):
        h = math.log10(count + 1) / log_peak * plot_h
        x = left + k * bar_w
        parts.append(f'<rect x="{x + 0.5:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 1:.1f}" height="{h:.1f}" '
                     f'fill="{COLOURS[label]}"><title>{k / len(counts):.2f}–{(k + 1) / len(counts):.2f}: {count:,}</title></rect>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" class="axis"/>')
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = left + tick * plot_w
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 15}" class="tick" text-anchor="middle">{tick:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 3}" class="axis-label" text-anchor="middle">p_{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart_svg(bars: list[tuple[str, list[tuple[str, int]]]], width: int = 860, label_width: int = 250) -> str:
    """Horizontal stacked bars, one per (name, [(label, count)]); names are escaped and shortened."""
    bar_h, gap, top = 18, 7, 4
    height = top + len(bars) * (bar_h + gap) + 4
    peak = max((sum(v for _, v in segs) for _, segs in bars), default=0) or 1
    scale = (width - label_width - 60) / peak
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    for k, (name, segments) in enumerate(bars):
        y = top + k * (bar_h + gap)
        parts.append(f'<text x="{label_width - 8}" y="{y + 13}" class="name" text-anchor="end">'
                     f'<title>{html.escape(name)}</title>{html.escape(shorten(name, 22))}</text>')
        x = float(label_width)
        for label, value in segments:
            if value:
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{value * scale:.1f}" height="{bar_h}" fill="{COLOURS[label]}">'
                             f'<title>{html.escape(BY_NAME[label].zh)} {label}: {value:,}</title></rect>')
                x += value * scale
        parts.append(f'<text x="{x + 5:.1f}" y="{y + 13}" class="value">{sum(v for _, v in segments):,}</text>')
    parts.append(f'<line x1="{label_width}" x2="{label_width}" y1="0" y2="{height}" class="axis"/></svg>')
    return "".join(parts)


def shorten(text: str, limit: int) -> str:
    """Cut before escaping, so an entity is never cut in half."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def platform_bars(t: Tally, limit: int = 15) -> list[tuple[str, list[tuple[str, int]]]]:
    """Flagged listings per platform, split by each listing's most severe label; the rest summed."""
    flagged = sorted(((p or UNKNOWN_PLATFORM, s) for p, s in t.platforms.items() if s.flagged),
                     key=lambda item: (-item[1].flagged, item[0]))
    bars = [(name, [(x, s.by_top_label[x]) for x in VIOLATION_LABELS]) for name, s in flagged[:limit]]
    rest = flagged[limit:]
    if rest:
        bars.append((f"其他 {len(rest)} 个平台 / {len(rest)} more",
                     [(x, sum(s.by_top_label[x] for _, s in rest)) for x in VIOLATION_LABELS]))
    return bars


def seller_name(s: SellerStats) -> str:
    shop = s.shop_name or s.shop_id
    return f"{shop} · {s.platform or UNKNOWN_PLATFORM}"


# --- the page ----------------------------------------------------------------------------------

CSS = """
:root { --ink:#1f2328; --muted:#59636e; --line:#d1d9e0; --soft:#f6f8fa; }
* { box-sizing: border-box; }
body { margin:0; background:#eef1f5; color:var(--ink);
  font:14px/1.55 "PingFang SC","Hiragino Sans GB","Microsoft YaHei","Noto Sans CJK SC","Source Han Sans SC","WenQuanYi Zen Hei",system-ui,sans-serif; }
main { max-width:1120px; margin:0 auto; padding:24px 28px 48px; background:#fff; min-height:100vh; }
h1 { font-size:22px; margin:0 0 2px; } h1 + .en { color:var(--muted); margin:0 0 14px; }
h2 { font-size:17px; margin:34px 0 10px; padding-bottom:5px; border-bottom:2px solid var(--line); }
h3 { font-size:14px; margin:14px 0 4px; }
.meta { display:grid; grid-template-columns:max-content 1fr; gap:2px 16px; margin:0; }
.meta dt { color:var(--muted); } .meta dd { margin:0; overflow-wrap:anywhere; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { border:1px solid var(--line); padding:5px 8px; vertical-align:top; text-align:left; }
th { background:#e9eef5; font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.section td { background:var(--soft); font-weight:600; }
table.fixed { table-layout:fixed; }
th .en, td .en { font-weight:400; font-size:11px; color:var(--muted); }
td.note { color:var(--muted); font-size:12px; overflow-wrap:anywhere; }
.basis { font-size:12px; }
.na { color:#9aa4ae; }
.callout { background:#fff8e6; border-left:4px solid #e8a600; padding:8px 12px; margin:10px 0; font-size:13px; }
.charts { display:flex; flex-wrap:wrap; gap:10px 18px; }
.chart { margin:0; } .chart figcaption { font-size:13px; font-weight:600; }
svg .grid { stroke:#e3e8ee; } svg .axis { stroke:#8c959f; }
svg text { font-size:11px; fill:#424a53; font-family:inherit; }
svg text.name { font-size:12px; } svg text.value { font-size:11px; fill:#1f2328; }
.legend { display:flex; flex-wrap:wrap; gap:4px 16px; font-size:12px; margin:4px 0 8px; }
.swatch { display:inline-block; width:11px; height:11px; border-radius:2px; margin-right:5px; vertical-align:-1px; }
.badge { display:inline-block; padding:0 7px; border-radius:10px; font-size:12px; color:#fff; margin:0 4px 2px 0; white-space:nowrap; }
.badge.plain { color:var(--ink); background:#e9eef5; }
.badge.struck { opacity:.5; text-decoration:line-through; }
.card { border:1px solid var(--line); border-radius:6px; padding:10px 14px; margin:10px 0; }
.card .head { display:flex; flex-wrap:wrap; gap:4px 14px; align-items:baseline; font-size:12px; color:var(--muted); }
.card .head .id { font-family:ui-monospace,Menlo,Consolas,monospace; color:var(--ink); }
.card .title { font-size:15px; font-weight:600; margin:6px 0 2px; overflow-wrap:anywhere; }
.card .desc { color:#3d444d; overflow-wrap:anywhere; white-space:pre-wrap; }
.card .scores { font-size:12px; color:var(--muted); font-variant-numeric:tabular-nums; }
mark.ev { padding:0 1px; border-radius:2px; }
mark.ev-report_sale { background:#f8d0cc; box-shadow:inset 0 -2px #b3261e; }
mark.ev-false_ad { background:#fde2c4; box-shadow:inset 0 -2px #e8710a; }
mark.ev-credential_missing { background:#f7ecb0; box-shadow:inset 0 -2px #c9a100; }
mark.ev-testing_service { background:#d6e6f8; box-shadow:inset 0 -2px #3b78c3; }
footer { margin-top:36px; font-size:12px; color:var(--muted); }
"""


def render_html(t: Tally, table: list[TableRow], meta: dict, manifest: dict, precision: dict) -> str:
    """The whole page; every value from the run or the files passes through html.escape."""
    e = html.escape
    body = [
        f"<h1>{e(TITLE_ZH)}</h1><p class=\"en\">{e(TITLE_EN)}</p>",
        _meta_list([("填报期间 Period", meta["period"]), ("模型版本 Model version", meta["model_version"]),
                    ("数据 Run", meta["run"]), ("复核结论 Verdicts", meta["verdicts"] or "无 none — all counts are the model's"),
                    ("生成时间 Generated", meta["generated"])]),
        *(f'<p class="callout">{e(w)}</p>' for w in meta["warnings"]),
        "<h2>统计表 Summary table</h2>", _table_html(table, bool(meta["verdicts"])),
        _precision_html(precision) if (precision["rows"] or precision["notes"]) else "",
        "<h2>运行概况 Scoring run</h2>", _manifest_html(t, manifest),
        "<h2>分数分布 Score distributions</h2>", _legend(MODEL_LABELS),
        '<div class="charts">' + "".join(
            f'<figure class="chart"><figcaption>{e(BY_NAME[x].zh)} {e(x)}</figcaption>{histogram_svg(x, t.histograms[x])}</figure>'
            for x in MODEL_LABELS) + "</div>",
        '<p class="note">每个概率区间的条目数（对数坐标），模型原始分数，未经复核修正。 / Listings per probability bin, '
        'log scale; the model\'s scores, before any verdict.</p>',
        "<h2>各平台问题条目 Flagged listings per platform</h2>", _legend(VIOLATION_LABELS),
        '<p class="note">按每个条目最严重的标签着色 / coloured by each listing\'s most severe label</p>',
        _chart_or_empty(platform_bars(t)),
        "<h2>重点经营者 Top sellers</h2>", _top_sellers_html(t),
        "<h2>问题条目示例 Most severe flagged listings</h2>", _legend(LABEL_NAMES, "证据高亮 evidence: "),
        _samples_html(t),
        f'<footer>reportguard · {e(meta["generated"])} · 本页不含脚本与外部资源 / no scripts or external resources</footer>',
    ]
    return ("<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{e(TITLE_ZH)} · {e(meta['period'])}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n")


def _meta_list(items: list[tuple[str, str]]) -> str:
    return '<dl class="meta">' + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items) + "</dl>"


def _table_html(rows: list[TableRow], with_verdicts: bool) -> str:
    e = html.escape
    # Fixed column widths: left to itself the browser squeezes the row names into three-line
    # cells and gives the space to the wide English headers of the number columns.
    widths = ("44px", "170px", "196px", "80px", "108px", "80px", "118px", "auto")
    head = "".join(f'<th class="{"num" if 3 <= k <= 5 else ""}">{_two_lines(h)}</th>'
                   for k, h in enumerate(h for j, h in enumerate(HEADER) if j != 1))
    out = ['<table id="campaign-table" class="fixed"><colgroup>' + "".join(f'<col style="width:{w}">' for w in widths)
           + f"</colgroup><thead><tr>{head}</tr></thead><tbody>"]
    section = None
    for r in rows:
        if r.section != section:
            section = r.section
            out.append(f'<tr class="section"><td colspan="{len(widths)}">{e(section)}</td></tr>')
        nums = "".join(f'<td class="num">{_num(v)}</td>' for v in (r.total, r.confirmed, r.model_only))
        out.append(f'<tr><td class="num">{r.no}</td><td>{e(r.zh)}</td><td>{e(r.en)}</td>{nums}'
                   f'<td class="basis">{_two_lines(r.basis)}</td><td class="note">{e(r.note)}</td></tr>')
    out.append("</tbody></table>")
    if not with_verdicts:
        out.append('<p class="callout">未提供复核结论：所有标签计数均为模型结果（未公示资质由规则判定）。 / No verdicts given: '
                   "every label count is the model's (credential_missing by rule); none is reviewer-confirmed.</p>")
    return "".join(out)


def _two_lines(text: str) -> str:
    """'中文 English' -> the Chinese, and the English below it in smaller type (both escaped)."""
    zh, _, en = text.partition(" ")
    return html.escape(zh) + (f'<br><span class="en">{html.escape(en)}</span>' if en else "")


def _num(value) -> str:
    return '<span class="na">—</span>' if value is None else f"{value:,}"


def _precision_html(precision: dict) -> str:
    e = html.escape
    level = f"{precision['confidence'] * 100:g}% " if precision["confidence"] else ""
    out = [f"<h2>复核精确率 Precision from review ({e(precision['source'])})</h2>",
           "<p class=\"note\">仅供参考，不改变上表计数 / shown for context; it changes no count above</p>"]
    if precision["rows"]:
        out.append(f'<table id="precision-table"><thead><tr><th>模型 Model</th><th>标签 Label</th><th class="num">精确率 Precision</th>'
                   f'<th class="num">{e(level)}置信区间 interval</th><th class="num">复核 Reviewed</th><th class="num">确认 Confirmed</th>'
                   "<th>说明 Note</th></tr></thead><tbody>")
        for r in precision["rows"]:
            interval = f"{r['low']:.1%} – {r['high']:.1%}" if r["low"] is not None and r["high"] is not None else "—"
            out.append(f"<tr><td>{e(r['model'])}</td><td>{e(BY_NAME[r['label']].zh)} {e(r['label'])}</td>"
                       f'<td class="num">{r["estimate"]:.1%}</td><td class="num">{e(interval)}</td>'
                       f'<td class="num">{_num(r["reviewed"])}</td><td class="num">{_num(r["confirmed"])}</td>'
                       f'<td class="note">{e(r["note"])}</td></tr>')
        out.append("</tbody></table>")
    out += [f'<p class="callout">{e(n)}</p>' for n in precision["notes"]]
    return "".join(out)


def _manifest_html(t: Tally, manifest: dict) -> str:
    if not manifest:
        return (f'<p class="callout">没有找到运行清单（RUN.manifest.json），以下仅为从数据统计的结果。 / No manifest beside the run: '
                f"{t.listings:,} listings read.</p>")
    rows = manifest.get("rows") or {}
    seconds = (manifest.get("seconds") or {}).get("total")
    items = [("输入行数 Rows in", _fmt(rows.get("in"))), ("已评分 Accepted", _fmt(rows.get("accepted"))),
             ("拒收 Rejected", _fmt(rows.get("rejected"))), ("去重后文本 Unique texts", _fmt(rows.get("unique"))),
             ("模型 Model", f"{manifest.get('model_version', '?')} ({manifest.get('precision') or '?'})"),
             ("耗时 Time", f"{seconds:,.1f} s" if isinstance(seconds, (int, float)) else "?"),
             ("吞吐 Throughput", f"{_fmt(manifest.get('rows_per_second'))} rows/s"),
             ("判定 Decisions", ", ".join(f"{k} {v:,}" for k, v in sorted((manifest.get("decisions") or {}).items())))]
    for source in ((manifest.get("state") or {}).get("inputs") or [])[:10]:
        if isinstance(source, dict):
            items.append(("输入文件 Input", f"{Path(str(source.get('path', '?'))).name} · {_fmt(source.get('bytes'))} bytes · "
                                              f"sha256 {str(source.get('sha256', ''))[:16]}…"))
    return _meta_list(items)


def _fmt(value) -> str:
    return f"{value:,}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def _legend(labels, prefix: str = "") -> str:
    return ('<div class="legend">' + html.escape(prefix) + "".join(
        f'<span><span class="swatch" style="background:{COLOURS[x]}"></span>{html.escape(BY_NAME[x].zh)} {x}</span>'
        for x in labels) + "</div>")


def _chart_or_empty(bars) -> str:
    return bar_chart_svg(bars) if bars else '<p class="note">没有问题条目 / no flagged listings</p>'


def _top_sellers_html(t: Tally, limit: int = 15) -> str:
    e = html.escape
    top = [s for s in t.known_sellers() if s.flagged][:limit]
    if not top:
        return '<p class="note">没有问题经营者 / no seller has a flagged listing</p>'
    chart = bar_chart_svg([(seller_name(s), [(s.max_label, s.flagged)]) for s in top])
    head = "".join(f'<th class="num">{e(BY_NAME[x].zh)}</th>' for x in LABEL_NAMES)
    with_ids = any(s.shop_id for s in top)  # runs keyed by shop name only would show an empty column
    rows = "".join(
        f"<tr><td>{e(s.platform or UNKNOWN_PLATFORM)}</td><td>{e(s.shop_name)}</td>"
        + (f"<td>{e(s.shop_id)}</td>" if with_ids else "") +
        f'<td class="num">{s.listings:,}</td><td class="num">{s.flagged:,}</td>'
        + "".join(f'<td class="num">{s.labels[x]:,}</td>' for x in LABEL_NAMES)
        + f'<td><span class="badge" style="background:{COLOURS[s.max_label]}">{e(BY_NAME[s.max_label].zh)}</span></td></tr>'
        for s in top)
    return (_legend(VIOLATION_LABELS, "最严重标签 worst label: ") + chart +
            f'<table id="sellers-table"><thead><tr><th>平台 Platform</th><th>店铺 Shop</th>'
            + ("<th>店铺ID Shop id</th>" if with_ids else "") +
            f'<th class="num">条目 Listings</th><th class="num">问题 Flagged</th>{head}<th>最严重 Worst</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _samples_html(t: Tally) -> str:
    e = html.escape
    samples = [item[3] for item in sorted(t.top, key=lambda item: item[:3], reverse=True)]
    if not samples:
        return '<p class="note">没有问题条目 / no flagged listings</p>'
    cards = []
    for s in samples:
        badges = "".join(f'<span class="badge" style="background:{COLOURS[x]}">{e(BY_NAME[x].zh)}</span>' for x in s["labels"])
        if s["reviewed"]:
            badges += '<span class="badge plain">复核确认 reviewed</span>'
            badges += "".join(f'<span class="badge plain struck" title="model label removed by a reviewer">{e(BY_NAME[x].zh)}</span>'
                              for x in s["model_labels"] if x not in s["labels"])
        scores = " · ".join(f"p_{x} {s['probs'][x]:.2f}" for x in MODEL_LABELS)
        desc = s["fields"]["description"]
        cards.append(
            f'<div class="card"><div class="head"><span class="id">{e(s["listing_id"])}</span>'
            f'<span>{e(s["platform"] or UNKNOWN_PLATFORM)}</span><span>{e(s["shop"] or "(unknown shop)")}</span>'
            f'<span>模型判定 model decision: {e(s["decision"])}</span></div><div>{badges}</div>'
            f'<div class="title">{highlight(s["fields"]["title"])}</div>'
            + (f'<div class="desc">{highlight(desc)}</div>' if desc[0] else "")
            + f'<div class="scores">{e(scores)}</div></div>')
    return "".join(cards)


# --- putting it together -------------------------------------------------------------------------

def default_out_dir(run: Path) -> Path:
    return run.with_name(f"{run_stem(run)}.report")


def read_manifest(run: Path) -> dict:
    """RUN.manifest.json when it is there and readable; a hand-made run has none."""
    path = run.with_name(run.name + ".manifest.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def make_report(run: str | Path, verdicts: str | Path | None = None, precision: str | Path | None = None,
                out_dir: str | Path | None = None, period: str | None = None, top: int = 20) -> dict:
    """Tally RUN (with verdicts), write table.csv, table.xlsx and report.html; returns paths and counts."""
    run = Path(run)
    verdict_map = read_verdicts(verdicts) if verdicts else None
    t = tally_run(run, verdict_map, top)
    manifest = read_manifest(run)
    model_version, warnings = _model_version(t, manifest)
    table = campaign_table(t, verdict_map is not None)
    meta = {"period": period or f"{datetime.now():%Y}年{datetime.now().month}月", "model_version": model_version,
            "run": f"{run.name} ({t.listings:,} listings)", "generated": datetime.now().isoformat(timespec="seconds"),
            "verdicts": f"{Path(verdicts).name} ({t.verdicts_given:,} verdicts, {t.reviewed:,} in this run)" if verdicts else "",
            "warnings": warnings}
    shown_precision = read_precision(precision, model_version)
    out = Path(out_dir) if out_dir else default_out_dir(run)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": write_table_csv(table, out / "table.csv"),
             "xlsx": write_table_xlsx(table, out / "table.xlsx", meta, shown_precision)}
    page = out / "report.html"
    tmp = page.with_name(f".{page.name}.tmp")
    tmp.write_text(render_html(t, table, meta, manifest, shown_precision), encoding="utf-8")
    tmp.replace(page)
    paths["html"] = page
    return {"paths": paths, "table": table, "tally": t, "meta": meta}


def _model_version(t: Tally, manifest: dict) -> tuple[str, list[str]]:
    """The run's model version, with a warning when rows disagree (a run mixing models is suspect)."""
    versions = [v for v, _ in t.model_versions.most_common() if v]
    warnings = []
    if len(versions) > 1:
        warnings.append(f"rows carry {len(versions)} model versions {versions[:5]}; counts mix them")
    if versions and manifest.get("model_version") and manifest["model_version"] not in versions:
        warnings.append(f"manifest model {manifest['model_version']} differs from the rows' {versions[0]}")
    return (versions[0] if versions else str(manifest.get("model_version") or "unknown")), warnings


# --- command line ------------------------------------------------------------------------------

def add_report_command(subparsers) -> argparse.ArgumentParser:
    """`reportguard report RUN [--verdicts FILE] [--precision FILE] [--out-dir DIR] [--period TEXT]`."""
    p = subparsers.add_parser("report", help="the campaign table (CSV, XLSX) and an HTML report for a scored run")
    p.add_argument("run", metavar="RUN", help="output of `reportguard score` (.parquet, .jsonl or .csv)")
    p.add_argument("--verdicts", default=None, help="reviewer verdicts, JSONL from the review tool (listing_id, labels)")
    p.add_argument("--precision", default=None, help="precision JSON from the review tool, shown as a table")
    p.add_argument("--out-dir", default=None, help="output folder (default: <RUN stem>.report/ beside RUN)")
    p.add_argument("--period", default=None, help='reporting period, e.g. "2026年11月" (default: this month)')
    p.add_argument("--top", type=int, default=20, help="flagged listings shown on the page (default 20)")
    p.set_defaults(func=_report_main)
    return p


def _report_main(args) -> int:
    result = make_report(args.run, args.verdicts, args.precision, args.out_dir, args.period, args.top)
    t = result["tally"]
    print(f"{result['paths']['html'].parent}: table.csv, table.xlsx, report.html — {t.listings:,} listings, "
          f"{t.flagged:,} flagged, {len(t.known_sellers()):,} sellers"
          + (f", {t.reviewed:,} reviewed" if args.verdicts else " (model only: no verdicts)"))
    for warning in result["meta"]["warnings"]:
        print(f"warning: {warning}")
    return 0
