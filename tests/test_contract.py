"""The train/serve contract lives once, in src/core: the bundle format, calibration, length
bucketing, atomic writes, the label-derived column names, the listing-text join and the derived
credential label. Each test pins one of them and, where two sides use it, that both do."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from reportguard.core import bundle_format as bf
from reportguard.core.atomic import atomic_path, temp_path, write_text_atomic
from reportguard.core.calibration import calibrated, decision_cuts, label_array, label_sets, near_a_cut, sigmoid
from reportguard.core.credentials import with_derived_labels
from reportguard.core.encoding import length_batches
from reportguard.core.labels import ALL_LABEL_NAMES, ALL_LABELS, MODEL_LABELS, PROB_COLUMNS, prob_column
from reportguard.core.normalize import NORMALIZER_VERSION, listing_text, listing_text_with_offsets, locate

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION = {"temperature": {"report_sale": 2.0, "false_ad": 1.0, "testing_service": 0.5},
               "thresholds": {"report_sale": 0.5, "false_ad": 0.7, "testing_service": 0.4},
               "decision": {"block": {"report_sale": 0.9, "false_ad": 1.01}}}


def meta(**changes) -> bf.BundleMeta:
    fields = dict(model_version="v1", labels=list(MODEL_LABELS), normalizer_version=NORMALIZER_VERSION,
                  encoding={"max_length": 64, "cls_id": 2, "sep_id": 3, "pad_id": 0}, precision="fp32",
                  temperature=dict(CALIBRATION["temperature"]), thresholds=dict(CALIBRATION["thresholds"]),
                  decision=json.loads(json.dumps(CALIBRATION["decision"])), precision_reason="test",
                  files={"model.onnx": "0" * 64, "tokenizer.json": "1" * 64}, backbone={"source": "test"},
                  training_data_sha256="2" * 64, created="2026-01-01T00:00:00Z")
    return bf.BundleMeta(**(fields | changes))


# --- the bundle format ------------------------------------------------------------------------

def test_bundle_meta_writes_in_the_exporters_field_order_and_seals(tmp_path):
    (tmp_path / "MODEL_CARD.md").write_text("card", encoding="utf-8")
    written = bf.write_meta(tmp_path, meta(extra={"future_field": 1}))
    assert list(written) == ["format", "model_version", "labels", "normalizer_version", "encoding", "temperature", "thresholds",
                             "decision", "precision", "precision_reason", "files", "backbone", "training_data_sha256", "created",
                             "future_field", "other_files", "content_sha256"]
    assert (tmp_path / "bundle.json").read_text(encoding="utf-8") == json.dumps(written, ensure_ascii=False, indent=1) + "\n"
    assert written["other_files"] == {"MODEL_CARD.md": bf.sha256_file(tmp_path / "MODEL_CARD.md")}
    read = bf.read_meta(tmp_path)
    assert read.sealed and read.extra == {"future_field": 1} and read.thresholds == CALIBRATION["thresholds"]
    assert read.content_hash() == written["content_sha256"]
    bf.validate_meta(read, tmp_path / "bundle.json")
    bf.validate_fields(read, tmp_path / "bundle.json")


def test_an_edit_of_bundle_json_is_detected_by_its_content_hash(tmp_path):
    written = bf.write_meta(tmp_path, meta())
    written["thresholds"]["report_sale"] = 0.01
    (tmp_path / "bundle.json").write_text(bf.dump(written), encoding="utf-8")
    with pytest.raises(bf.BundleError, match="bundle.json was edited"):
        bf.validate_meta(bf.read_meta(tmp_path), tmp_path / "bundle.json")


@pytest.mark.parametrize("changes, message", [
    ({"format": "other/2"}, "format 'other/2', expected"),
    ({"labels": ["report_sale"]}, "labels .* differ"),
    ({"normalizer_version": "0.old"}, "trained with normaliser '0.old'"),
    ({"files": {"model.onnx": "0" * 64}}, "no hash recorded for tokenizer.json"),
])
def test_validate_meta_names_the_field(tmp_path, changes, message):
    with pytest.raises(bf.BundleError, match=message):
        bf.validate_meta(meta(**changes), tmp_path / "bundle.json")


@pytest.mark.parametrize("changes, message", [
    ({"thresholds": {"report_sale": math.nan, "false_ad": 0.5, "testing_service": 0.5}}, "thresholds.report_sale = nan"),
    ({"decision": {"block": {"report_sale": 0.1}}}, "decision.block.report_sale = 0.1 is below"),
    ({"decision": None}, "missing or malformed field 'decision'"),
    ({"fallback": {"file": "model_fp32.onnx", "margin": {x: 0.1 for x in MODEL_LABELS}}}, "has no hash in files"),
    ({"model_version": None}, "missing or malformed field 'model_version'"),
])
def test_validate_fields_names_the_field(tmp_path, changes, message):
    with pytest.raises(bf.BundleError, match=message):
        bf.validate_fields(meta(**changes), tmp_path / "bundle.json")


def test_the_exporter_refuses_thresholds_the_scorer_would_refuse(tmp_path):
    with pytest.raises(bf.BundleError, match="thresholds.false_ad = 1.0 is not in"):
        bf.write_meta(tmp_path, meta(thresholds={"report_sale": 0.5, "false_ad": 1.0, "testing_service": 0.5}))
    assert not (tmp_path / "bundle.json").exists()


def test_check_files_reports_a_missing_or_swapped_file(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"graph")
    (tmp_path / "tokenizer.json").write_bytes(b"{}")
    m = meta(files={"model.onnx": bf.sha256_file(tmp_path / "model.onnx"), "tokenizer.json": "f" * 64})
    with pytest.raises(bf.BundleError, match="tokenizer.json: SHA-256 differs"):
        bf.check_files(m, tmp_path)
    bf.check_files(m, tmp_path, verify_hashes=False)
    (tmp_path / "model.onnx").unlink()
    with pytest.raises(bf.BundleError, match="model.onnx: missing from the bundle"):
        bf.check_files(m, tmp_path, verify_hashes=False)


def test_train_writes_the_format_through_core_and_serve_reads_it_through_core():
    """No second copy of the format: export.py and serve/bundle.py import it from core."""
    export = (ROOT / "src" / "train" / "export.py").read_text(encoding="utf-8")
    serve = (ROOT / "src" / "serve" / "bundle.py").read_text(encoding="utf-8")
    assert "reportguard.serve" not in export and "write_meta(" in export
    assert "read_meta(" in serve and "validate_meta(" in serve
    for name in ("def content_hash", "def seal(", "def validate_thresholds", "def sha256_file", "FORMAT = "):
        assert name not in serve and name not in export, name


# --- calibration --------------------------------------------------------------------------------

def test_calibration_is_one_temperature_sigmoid_in_model_label_order():
    logits = np.array([[2.0, 0.0, -1.0], [-0.1, 3.0, 1.0]])
    t = label_array(CALIBRATION["temperature"])
    assert t.tolist() == [2.0, 1.0, 0.5]
    assert np.allclose(calibrated(logits, t), 1 / (1 + np.exp(-logits / t)))
    assert label_sets(logits, CALIBRATION).tolist() == [[1, 0, 0], [0, 1, 1]]
    shuffled = {"thresholds": dict(reversed(CALIBRATION["thresholds"].items())),
                "temperature": dict(reversed(CALIBRATION["temperature"].items()))}
    assert label_sets(logits, shuffled).tolist() == label_sets(logits, CALIBRATION).tolist()  # never dict order
    assert float(sigmoid(np.float64(0.0))) == 0.5


def test_decision_cuts_and_the_fallback_band():
    cuts = decision_cuts(CALIBRATION["thresholds"], CALIBRATION["decision"]["block"])
    assert [len(c) for c in cuts] == [2, 1, 1]  # a block threshold >= 1 is no cut
    assert cuts[0].tolist() == pytest.approx([0.0, math.log(9)])
    near = near_a_cut(np.array([[0.05, 5.0, 5.0], [1.0, 5.0, 5.0]]), cuts, np.array([0.1, 0.1, 0.1]))
    assert near.tolist() == [True, False]


def test_nothing_outside_core_restates_the_sigmoid():
    copies = [f"{p.relative_to(ROOT)}" for p in sorted((ROOT / "src").rglob("*.py"))
              if p.parent.name != "core" and ("1 / (1 + np.exp" in p.read_text(encoding="utf-8")
                                              or "1.0 / (1.0 + np.exp" in p.read_text(encoding="utf-8"))]
    assert copies == []


# --- batching and atomic writes -------------------------------------------------------------------

def test_length_batches_sort_stably_and_cover_every_row_once():
    ids = [[1] * n for n in (5, 1, 3, 1, 5, 2)]
    batches = [b.tolist() for b in length_batches(ids, 4)]
    assert batches == [[1, 3, 5, 2], [0, 4]]
    assert [b.tolist() for b in length_batches(ids, 4, sort=False)] == [[0, 1, 2, 3], [4, 5]]
    assert [b.tolist() for b in length_batches(ids, 2, rows=np.array([0, 2, 3]))] == [[3, 2], [0]]


def test_atomic_write_leaves_the_old_file_and_no_temp_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half", encoding="utf-8")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and not temp_path(target).exists()
    temp_path(target).write_text("stale from a killed run", encoding="utf-8")
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


# --- labels, columns, the listing text and the derived label ---------------------------------------

def test_probability_columns_come_from_the_label_schema():
    from reportguard.serve.outputs import SCORE_COLUMNS
    assert PROB_COLUMNS == tuple(prob_column(x) for x in MODEL_LABELS)
    assert SCORE_COLUMNS[1:1 + len(MODEL_LABELS)] == list(PROB_COLUMNS)
    assert ALL_LABEL_NAMES == tuple(label.name for label in ALL_LABELS)
    import reportguard.review.queue as queue
    assert not hasattr(queue, "REVIEW_LABELS")


def corpus_rows(n: int = 300) -> list[dict]:
    lines = (ROOT / "data" / "labelled" / "test.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    return [json.loads(line) for line in lines]


def test_the_model_text_and_the_evidence_text_are_one_join():
    """The scorer's model input (listing_text) and the evidence offsets (serve.evidence.prepare)
    come from one function, so a span found in the model text maps back into the original field."""
    from reportguard.serve.evidence import prepare
    rows = corpus_rows() + [{"title": "檢 測", "description": ""}, {"title": "", "description": "包🔥过"},
                            {"title": "ＣＭＡ", "description": None}]
    for r in rows:
        text, fields = listing_text_with_offsets(r["title"], r["description"])
        assert text == listing_text(r["title"], r["description"]) == prepare(r["title"], r["description"])[0]
        for field in fields:
            start = text.find(field.normalised) if field.field == "title" else len(fields[0].normalised) + 1
            if not field.normalised:
                continue
            where = locate(fields, start, start + len(field.normalised))
            assert where is not None and where[0] is field and where[1:] == (0, len(field.normalised))
            o_start, o_end = field.original_span(0, len(field.normalised))
            assert 0 <= o_start < o_end <= len(field.original)


def test_credential_missing_is_derived_once_for_scores_and_verdicts():
    from reportguard.serve.report.tally import verdict_labels
    cases = [(["testing_service", "false_ad"], "不送样检测", "当天出报告", ""),
             (["testing_service"], "寄样检测", "", "CNAS L5678"),
             (["report_sale"], "代办质检报告", None, None),
             ([], "纯棉T恤", "", "")]
    for predicted, title, description, qualification in cases:
        labels = with_derived_labels(predicted, title, description, qualification)
        assert labels == [x for x in ALL_LABEL_NAMES if x in labels]
        assert verdict_labels({"title": title, "description": description, "qualification": qualification}, predicted) == labels
    assert with_derived_labels(["testing_service", "false_ad"], "不送样检测", "当天出报告") == [
        "false_ad", "credential_missing", "testing_service"]
    score = (ROOT / "src" / "serve" / "score.py").read_text(encoding="utf-8")
    assert "with_derived_labels(" in score and "CREDENTIAL_MISSING.name" not in score
