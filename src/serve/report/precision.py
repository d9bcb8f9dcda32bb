"""Precision from review (`--precision FILE.json`, the review tool's precision export): displayed
as a table on the page and a sheet in the XLSX, never used in any count.

It is read defensively: `models.<model_version>.labels.<label>.precision.{estimate, low, high,
reviewed, confirmed}` as the review tool writes it, or the same `labels` mapping at the top level,
with a number or an {estimate|value, low|lower, high|upper} object per label. What cannot be read
becomes a note shown on the page, never an exception.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..sellers import LABEL_NAMES


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
