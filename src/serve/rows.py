"""Score a list of records (dicts) as `reportguard score` scores a row: one result per record.

The shared core of the Python API (reportguard.api.Scorer.score) and the MLflow pyfunc model
(serve.pyfunc): each record's keys map through the column aliases, `core.records.validate_row`
checks it, and `score.score_records` scores the accepted ones (normaliser, tokenizer, route,
calibration, thresholds, credential rule, decision, evidence). A refused record keeps its place
with NaN probabilities, no labels, no decision and `error` = the reason the batch scorer would give.
Unlike the batch scorer, a repeated listing_id is scored again: a call is not a dump.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from reportguard.core.errors import InputError
from reportguard.core.labels import MODEL_LABELS
from reportguard.core.records import ReadOptions, canonical_column, validate_row

from .score import ScoreOptions, TextCache, passthrough_name, score_records

#: What a scored record carries beyond the batch scorer's columns.
ERROR_COLUMN = "error"


def record_options(bundle, attribution: str = "occlusion", batch_size: int = 32) -> ScoreOptions:
    """Scorer options for scoring records with `bundle` (the API, pyfunc): the batch scorer's
    defaults without a progress bar; an InputError for an attribution the scorer does not know."""
    if attribution not in ("occlusion", "none"):
        raise InputError(f"attribution must be 'occlusion' or 'none', not {attribution!r}")
    return ScoreOptions(model=str(bundle.path), threads=bundle.threads, batch_size=batch_size,
                        attribution=attribution, progress=False)


def score_rows(records: Iterable[dict], bundle, options: ScoreOptions, column_map: dict[str, str]) -> list[dict]:
    """One dict per record, in order: the batch scorer's columns, the record's other columns, `error`."""
    read_options = ReadOptions(reject_duplicate_ids=False, column_map=column_map)
    checked = []  # (row as the reader leaves it, its Reject or None)
    for line, record in enumerate(records, start=1):
        row = {canonical_column(str(key), column_map): (None if missing(value) else value) for key, value in dict(record).items()}
        checked.append((row, validate_row(row, Path("<records>"), line, read_options, None)))
    cache = TextCache()
    try:
        scored, _ = score_records([row for row, reject in checked if reject is None], bundle, cache, options, passthrough=[])
    finally:
        cache.close()
    scored_rows = iter(scored)
    out = []
    for row, reject in checked:
        if reject is None:
            result = next(scored_rows)
            result.pop("_key", None)
            result.pop("_occlusion", None)
            result[ERROR_COLUMN] = None
        else:
            result = _refused(row, reject.reason, bundle.model_version)
        out.append(result)
    return out


def _refused(row: dict, reason: str, model_version: str) -> dict:
    ident = row.get("listing_id")
    result = {"listing_id": None if ident is None else str(ident), **{f"p_{label}": math.nan for label in MODEL_LABELS},
              "labels": [], "decision": None, "evidence": "[]", "model_version": model_version}
    for column, value in row.items():
        name = passthrough_name(column)
        if name is not None:
            result[name] = value
    result[ERROR_COLUMN] = reason
    return result


def missing(value) -> bool:
    """None, NaN or pandas' NA/NaT: a cell left empty in a DataFrame.

    >>> missing(None), missing(float("nan")), missing(""), missing(0)
    (True, True, False, False)
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return type(value).__name__ in ("NAType", "NaTType")
