"""A bundle as an MLflow pyfunc model, scoring with the batch scorer's own code.

    import mlflow
    model = mlflow.pyfunc.load_model("models:/reportguard-listings@champion")
    scored = model.predict(df)   # df: listing_id, title[, description, platform, shop_id, shop_name, qualification]

The model's artifact `bundle` holds the files the scorer reads (bundle.json, tokenizer.json,
model.onnx and, for int8 bundles, model_fp32.onnx), checked against bundle.json's hashes when it
loads (serve.bundle.load_bundle). `predict` validates each row as the batch scorer's reader does
(core.records.validate_row) and scores the accepted ones with `score_records`: the same
normaliser, tokenizer, calibration, thresholds, credential rule, decision and evidence as
`reportguard score`. One output row per input row, in order: the scorer's columns
(serve.outputs.SCORE_COLUMNS) and `error`, the reason a row was refused (its probabilities NaN,
its labels empty, its decision None) or None. Unlike the batch scorer, a repeated listing_id is
scored again, not refused: a request is not a dump.

Needs reportguard with its `serve` extra where the model is loaded (the pickled model names this
module); no torch or transformers.
"""
from __future__ import annotations

import math
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from reportguard.core.records import TEXT_COLUMNS, ReadOptions, validate_row

from .bundle import load_bundle
from .outputs import SCORE_COLUMNS
from .score import ScoreOptions, TextCache, score_records

#: Input columns: listing_id and title required, the rest optional (as in `reportguard score`).
REQUIRED_INPUT: tuple[str, ...] = ("listing_id", "title")
INPUT_COLUMNS: tuple[str, ...] = TEXT_COLUMNS
OUTPUT_COLUMNS: list[str] = [*SCORE_COLUMNS, "error"]
#: The files of a bundle that scoring reads (the rest, hf/ and the cards, are for people).
SCORER_FILES: tuple[str, ...] = ("bundle.json", "tokenizer.json", "model.onnx", "model_fp32.onnx")


class BundleModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper over a bundle; params: `attribution` ("occlusion", the scorer's default, or
    "none": no occlusion evidence, about half the inference)."""

    def load_context(self, context) -> None:
        self.bundle = load_bundle(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return score_frame(self.bundle, model_input, (params or {}).get("attribution", "occlusion"))


def score_frame(bundle, frame, attribution: str = "occlusion") -> pd.DataFrame:
    """Score a DataFrame (or a list of dicts) with `bundle`: one output row per input row. Columns
    carry the scorer's canonical names (listing_id, title, ...); header aliases are not mapped."""
    if attribution not in ("occlusion", "none"):
        raise ValueError(f"attribution must be 'occlusion' or 'none', not {attribution!r}")
    frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(list(frame))
    options = ReadOptions(reject_duplicate_ids=False)
    checked = []  # (row as the reader leaves it, its Reject or None)
    for line, raw in enumerate(frame.to_dict("records"), start=1):
        row = {str(k): (None if _missing(v) else v) for k, v in raw.items()}
        checked.append((row, validate_row(row, Path("<input>"), line, options, None)))
    scored, _ = score_records([row for row, reject in checked if reject is None], bundle, TextCache(),
                              ScoreOptions(attribution=attribution), passthrough=[])
    scored = iter(scored)
    out = []
    for row, reject in checked:
        if reject is None:
            result = next(scored)
            out.append({c: result[c] for c in SCORE_COLUMNS} | {"error": None})
        else:
            out.append(_refused(row, reject.reason, bundle))
    return pd.DataFrame(out, columns=OUTPUT_COLUMNS)


def _refused(row: dict, reason: str, bundle) -> dict:
    ident = row.get("listing_id")
    return {"listing_id": None if ident is None else str(ident), "p_report_sale": math.nan, "p_false_ad": math.nan,
            "p_testing_service": math.nan, "labels": [], "decision": None, "evidence": "[]",
            "model_version": bundle.model_version, "error": reason}


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


def _missing(value) -> bool:
    """None, NaN or pandas' NA: a cell left empty in a DataFrame."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return value is pd.NA or value is pd.NaT
