"""A scored run, as `reportguard score INPUT --output OUT` writes it, read back for review.

The reading itself (the three formats, .gz, the CSV pipe convention) is serve/outputs.py's, the
one reader every consumer of a run shares; this module adds what review needs on top:

- Parquet and JSONL carry `labels` as a list; CSV carries it as one pipe-separated string
  ("report_sale|false_ad", empty for none), because CSV has no list type.
- `evidence` is a JSON string in every format (a list is accepted too, from a hand-written JSONL):
  [{"label", "text", "field": "title"|"description", "start", "end"}], offsets into the ORIGINAL
  field text.
- Beside OUT lie OUT.manifest.json (model_version, row counts) and OUT.rejects.jsonl; the manifest
  is read when present, as a cross-check of the rows' model_version.

Problems that make the run unusable (unknown format, a required column missing, an unknown label,
a probability that is not a number in [0, 1]) raise `RunError` naming the file, row and column:
a review queue built from a half-read run would give biased estimates without anyone noticing.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from reportguard.core.errors import InputError
from reportguard.core.labels import BY_NAME
from reportguard.serve.outputs import PROB_COLUMNS, iter_rows, run_format, split_labels

REQUIRED_COLUMNS: tuple[str, ...] = ("listing_id", *PROB_COLUMNS, "labels", "decision")
DECISIONS = ("block", "review", "pass")


class RunError(InputError):
    """The run cannot be reviewed; the message names the file (and row and column when known).
    An InputError (core/errors.py, a ValueError too): the CLI prints it on one line, exit 1."""


@dataclass
class Run:
    path: Path
    rows: list[dict]
    manifest: dict = field(default_factory=dict)

    @property
    def model_version(self) -> str:
        versions = {r.get("model_version") or "" for r in self.rows}
        versions.discard("")
        if len(versions) > 1:
            raise RunError(f"{self.path}: rows carry several model versions {sorted(versions)}; review one run at a time")
        return versions.pop() if versions else str(self.manifest.get("model_version") or "unknown")


def read_run(path: str | Path) -> Run:
    """Read a scored run in any of the three formats into plain dicts with typed columns.

    Every row comes back with `labels` as a list, `evidence` as a list of dicts, the `p_*` columns
    as floats and `listing_id` as a string; other columns pass through unchanged (JSON-safe).
    """
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: no such scored run")
    try:
        fmt = run_format(path)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    rows, seen = [], set()
    for number, raw in enumerate(_stored_rows(path), start=1):
        row = _typed(raw, path, number, csv_format=(fmt == "csv"))
        if row["listing_id"] in seen:
            raise RunError(f"{path}: row {number}: duplicate listing_id {row['listing_id']!r}")
        seen.add(row["listing_id"])
        rows.append(row)
    return Run(path=path, rows=rows, manifest=read_manifest(path))


def _stored_rows(path: Path) -> Iterator[dict]:
    """The shared reader's rows, untyped; what it refuses (a missing column, a line that is not a
    JSON object, an unreadable Parquet file) becomes a RunError naming the file."""
    try:
        yield from iter_rows(path, required=REQUIRED_COLUMNS)
    except ValueError as exc:
        message = str(exc)
        raise RunError(message if message.startswith(str(path)) else f"{path}: {message}") from exc


def read_manifest(path: Path) -> dict:
    manifest = path.with_name(path.name + ".manifest.json")
    if not manifest.exists():
        return {}
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunError(f"{manifest}: invalid JSON at line {exc.lineno}") from exc


def _typed(raw: dict, path: Path, number: int, csv_format: bool) -> dict:
    where = f"{path}: row {number}"
    row = {k: _json_safe(v) for k, v in raw.items()}
    if row.get("listing_id") in (None, ""):
        raise RunError(f"{where}: column listing_id: empty")
    row["listing_id"] = str(row["listing_id"])
    for column in PROB_COLUMNS:
        try:
            value = float(row.get(column))
        except (TypeError, ValueError):
            raise RunError(f"{where}: column {column}: {row.get(column)!r} is not a probability") from None
        if not 0.0 <= value <= 1.0:
            raise RunError(f"{where}: column {column}: {value} is outside [0, 1]")
        row[column] = value
    row["labels"] = _labels(row.get("labels"), f"{where}: column labels", csv_format)
    if row.get("decision") not in DECISIONS:
        raise RunError(f"{where}: column decision: {row.get('decision')!r} is not one of {list(DECISIONS)}")
    row["evidence"] = _evidence(row.get("evidence"), f"{where}: column evidence")
    for text_column in ("title", "description", "platform", "shop_name", "shop_id", "qualification", "model_version"):
        if row.get(text_column) is not None and not isinstance(row[text_column], str):
            row[text_column] = str(row[text_column])
    return row


def _labels(value, where: str, csv_format: bool) -> list[str]:
    if value is None or value == "":
        labels = []
    elif isinstance(value, str):
        # CSV's pipe convention; a JSONL writer that stringified a list is tolerated too.
        stripped = value.strip()
        if not csv_format and stripped.startswith("["):
            try:
                labels = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise RunError(f"{where}: invalid JSON ({exc.msg})") from exc
        else:
            labels = split_labels(stripped)
    elif isinstance(value, (list, tuple)):
        labels = list(value)
    else:
        raise RunError(f"{where}: {value!r} is neither a list nor a pipe-separated string")
    unknown = [x for x in labels if x not in BY_NAME]
    if unknown:
        raise RunError(f"{where}: unknown label(s) {unknown}")
    return labels


def _evidence(value, where: str) -> list[dict]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RunError(f"{where}: invalid JSON ({exc.msg})") from exc
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise RunError(f"{where}: must be a JSON list of objects")
    return value


def _json_safe(value):
    """Parquet pass-through columns may hold NaN, timestamps or bytes; queues are JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def row_field(row: dict, name: str) -> str:
    """A text field of a row, '' when absent (description, platform and shop are optional)."""
    value = row.get(name)
    return "" if value is None else str(value)


def shop_of(row: dict) -> str:
    return row_field(row, "shop_name") or row_field(row, "shop_id")
