"""Score listings from Python, with the batch scorer's own code.

    import reportguard
    scorer = reportguard.load("models/current")   # or load(): $REPORTGUARD_MODEL, then models/current in the project home
    rows = scorer.score([{"listing_id": "1", "title": "代办质检报告 当天出", "description": "CMA可查"}])
    df = scorer.score_frame(frame)                 # the same for a pandas DataFrame
    scorer.predict(["代办质检报告 当天出"])          # one text each: labels, probabilities, decision, evidence

Each input row goes through what `reportguard score` does to a row: its keys map through the
column aliases (商品ID -> listing_id, ...), `core.records.validate_row` checks it, and
`serve.score.score_records` scores it (normaliser, tokenizer, model, calibration, thresholds,
credential rule, decision, evidence). So probabilities, labels and decisions equal the batch
scorer's for the same rows. One output row per input row, in order, with the batch scorer's
columns (listing_id, p_report_sale, p_false_ad, p_testing_service, labels, decision, evidence as
a JSON string, model_version, then the input's other columns) and `error`: None, or the reason
the batch scorer would have rejected the row (its probabilities are then NaN, its labels empty,
its decision None). Unlike the batch scorer, a repeated listing_id is scored again, not refused:
a call is not a dump. Texts are deduplicated within a call.

Needs the `serve` extra (onnxruntime, tokenizers); `score_frame` needs pandas as well.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from reportguard.core import paths
from reportguard.core.errors import InputError
from reportguard.serve.rows import ERROR_COLUMN, record_options  # noqa: F401  (ERROR_COLUMN: what `Scorer.score` adds)


class Scorer:
    """A loaded bundle that scores lists of dicts, DataFrames and single texts (see the module doc)."""

    def __init__(self, bundle, *, attribution: str = "occlusion", batch_size: int = 32, columns: str | Path | None = None):
        from reportguard.core.columns import load_column_map
        self.bundle = bundle
        self.options = record_options(bundle, attribution, batch_size)
        self.column_map = load_column_map(columns)

    @property
    def model_version(self) -> str:
        return self.bundle.model_version

    @property
    def labels(self) -> tuple[str, ...]:
        from reportguard.core.labels import MODEL_LABELS
        return MODEL_LABELS

    def __repr__(self) -> str:
        return f"Scorer({self.model_version!r}, path={str(self.bundle.path)!r})"

    def score(self, records: Iterable[dict]) -> list[dict]:
        """One dict per record, in order: the batch scorer's columns and `error` (module doc)."""
        from reportguard.serve.rows import score_rows
        return score_rows(records, self.bundle, self.options, self.column_map)

    def score_frame(self, frame):
        """`score` for a pandas DataFrame: a DataFrame with the same index, one row per input row."""
        import pandas as pd
        rows = self.score(frame.to_dict("records"))
        return pd.DataFrame(rows, index=frame.index, columns=_columns(rows))

    def predict(self, texts: Iterable[str]) -> list[dict]:
        """Per text (read as a listing's title): labels, probabilities per label, decision and evidence."""
        texts = list(texts)
        rows = self.score({"listing_id": str(k), "title": text} for k, text in enumerate(texts, start=1))
        out = []
        for text, row in zip(texts, rows):
            if row[ERROR_COLUMN] is not None:
                out.append({"text": text, "error": row[ERROR_COLUMN], "model_version": row["model_version"]})
                continue
            out.append({"text": text, "labels": row["labels"],
                        "probabilities": {label: row[f"p_{label}"] for label in self.labels},
                        "decision": row["decision"], "evidence": json.loads(row["evidence"]),
                        "model_version": row["model_version"]})
        return out


def load(path: str | Path | None = None, *, threads: int | None = None, attribution: str = "occlusion",
         batch_size: int = 32, columns: str | Path | None = None) -> Scorer:
    """A Scorer over the bundle at `path` (default: $REPORTGUARD_MODEL, else models/current in the
    project home, core/paths.py). The bundle is checked as the batch scorer checks it (file hashes,
    labels, normaliser version, thresholds); a bundle that cannot be used raises BundleError."""
    from reportguard.serve.bundle import load_bundle
    path = Path(path) if path is not None else paths.current_model_dir()
    if not path.is_dir():
        raise InputError(f"{path}: no model bundle here (give its folder, or set ${paths.ENV_MODEL})")
    bundle = load_bundle(path, threads=threads)
    bundle.check_loadable()
    return Scorer(bundle, attribution=attribution, batch_size=batch_size, columns=columns)


def _columns(rows: list[dict]) -> list[str]:
    """Column order over all rows: first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)
