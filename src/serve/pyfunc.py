"""A bundle as an MLflow pyfunc model, scoring with the batch scorer's own code.

    import mlflow
    model = mlflow.pyfunc.load_model("models:/reportguard-listings@champion")
    scored = model.predict(df)   # df: listing_id, title[, description, platform, shop_id, shop_name, qualification]

The model's artifact `bundle` holds the files the scorer reads (bundle.json, tokenizer.json,
model.onnx, model_fp32.onnx for int8 bundles, a tiered bundle's students: `scorer_files`), checked
against bundle.json's hashes when it loads (serve.bundle.load_bundle). `predict` scores through the
Python API (serve.rows.score_rows, as reportguard.api.Scorer): each row validated as the batch scorer's reader does
(core.records.validate_row), the accepted ones scored with `score_records`: the same normaliser,
tokenizer, calibration, thresholds, credential rule, decision and evidence as `reportguard score`. One output row per input row, in order: the scorer's columns
(serve.outputs.SCORE_COLUMNS) and `error`, the reason a row was refused (its probabilities NaN,
its labels empty, its decision None) or None. Unlike the batch scorer, a repeated listing_id is
scored again, not refused: a request is not a dump.

Needs reportguard with its `serve` extra where the model is loaded (the pickled model names this
module); no torch or transformers.
"""
from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from reportguard.core.bundle_format import META_FILE, read_meta
from reportguard.core.columns import load_column_map
from reportguard.core.records import TEXT_COLUMNS

from .bundle import load_bundle
from .outputs import SCORE_COLUMNS
from .rows import ERROR_COLUMN, record_options, score_rows

#: Input columns: listing_id and title required, the rest optional (as in `reportguard score`).
REQUIRED_INPUT: tuple[str, ...] = ("listing_id", "title")
INPUT_COLUMNS: tuple[str, ...] = TEXT_COLUMNS
OUTPUT_COLUMNS: list[str] = [*SCORE_COLUMNS, ERROR_COLUMN]


def scorer_files(bundle_dir: Path) -> list[str]:
    """The files of a bundle that scoring reads: bundle.json and its `files` (graphs, tokenizer and
    a tiered bundle's students, each hash-checked on load); the rest (hf/, the cards, in
    `other_files`) are for people."""
    return [META_FILE, *(read_meta(Path(bundle_dir)).files or {})]


class BundleModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper over a bundle; params: `attribution` ("occlusion", the scorer's default, or
    "none": no occlusion evidence, about half the inference)."""

    def load_context(self, context) -> None:
        self.bundle = load_bundle(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return score_frame(self.bundle, model_input, (params or {}).get("attribution", "occlusion"))


def score_frame(bundle, frame, attribution: str = "occlusion") -> pd.DataFrame:
    """Score a DataFrame (or a list of dicts) with `bundle`: one output row per input row, the
    signature's columns. The rows go through serve.rows.score_rows, as the Python API's
    (reportguard.api.Scorer.score) do, so the two cannot drift apart."""
    options = record_options(bundle, attribution)
    frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(list(frame))
    rows = score_rows(frame.to_dict("records"), bundle, options, load_column_map())
    return pd.DataFrame([{c: r.get(c) for c in OUTPUT_COLUMNS} for r in rows], columns=OUTPUT_COLUMNS)


def signature():
    """Input/output signature and the `attribution` parameter, for mlflow.pyfunc.log_model."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import Array

    inputs = Schema([ColSpec("string", c, required=c in REQUIRED_INPUT) for c in INPUT_COLUMNS])
    types = {"p_report_sale": "double", "p_false_ad": "double", "p_testing_service": "double", "labels": Array("string")}
    outputs = Schema([ColSpec(types.get(c, "string"), c, required=c != "error") for c in OUTPUT_COLUMNS])
    params = ParamSchema([ParamSpec("attribution", "string", "occlusion")])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def input_example() -> pd.DataFrame:
    return pd.DataFrame([
        {"listing_id": "example-1", "title": "代办各类质检报告 不用寄样 当天出", "description": "CMA报告可查 加V详谈",
         "platform": "example", "shop_id": "s1", "shop_name": "检测服务店", "qualification": ""},
        {"listing_id": "example-2", "title": "不锈钢保温杯 500ml", "description": "附SGS检测报告",
         "platform": "example", "shop_id": "s2", "shop_name": "杯子旗舰店", "qualification": ""},
    ])
