"""The Python API (`reportguard.load(...).score/score_frame/predict`) and `reportguard predict`: the
batch scorer's code, so the batch scorer's numbers."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import reportguard
from reportguard.core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "reportguard"


def records(n: int = 40) -> list[dict]:
    rows = [json.loads(l) for l in (ROOT / "data" / "labelled" / "test.jsonl").read_text(encoding="utf-8").splitlines()][:n]
    return [{"listing_id": r["listing_id"], "title": r["title"], "description": r["description"],
             "platform": r.get("platform") or "demo", "shop_name": f"shop-{k % 7}"} for k, r in enumerate(rows)]


@pytest.fixture(scope="module")
def batch(tiny_bundle, tmp_path_factory):
    """The batch scorer's output for records(), row by row."""
    from reportguard.serve.outputs import read_run
    from reportguard.serve.score import ScoreOptions, score
    folder = tmp_path_factory.mktemp("batch")
    source = folder / "in.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records()), encoding="utf-8")
    score([str(source)], folder / "out.jsonl", ScoreOptions(model=str(tiny_bundle), threads=1, progress=False))
    return read_run(folder / "out.jsonl")


def test_score_equals_the_batch_scorer(tiny_bundle, batch):
    scorer = reportguard.load(tiny_bundle, threads=1)
    rows = scorer.score(records())
    assert [r["listing_id"] for r in rows] == [b["listing_id"] for b in batch]
    for got, want in zip(rows, batch):
        for column in ("p_report_sale", "p_false_ad", "p_testing_service"):
            assert abs(got[column] - want[column]) <= 1e-4
        assert got["labels"] == want["labels"] and got["decision"] == want["decision"]
        assert json.loads(got["evidence"]) == json.loads(want["evidence"])
        assert got["model_version"] == want["model_version"] and got["error"] is None
        assert got["platform"] == want["platform"] and got["shop_name"] == want["shop_name"]  # pass-through columns


def test_score_frame_keeps_the_index_and_the_numbers(tiny_bundle, batch):
    import pandas as pd
    frame = pd.DataFrame(records(), index=[f"row-{k}" for k in range(40)])
    scored = reportguard.load(tiny_bundle, threads=1).score_frame(frame)
    assert list(scored.index) == list(frame.index)
    assert list(scored.columns[:8]) == ["listing_id", "p_report_sale", "p_false_ad", "p_testing_service", "labels",
                                        "decision", "evidence", "model_version"]
    assert max(abs(a - b["p_false_ad"]) for a, b in zip(scored["p_false_ad"], batch)) <= 1e-4


def test_rows_the_reader_would_reject_come_back_with_their_reason(tiny_bundle):
    import pandas as pd
    scorer = reportguard.load(tiny_bundle, threads=1)
    rows = scorer.score([{"商品ID": 7, "商品标题": "代办质检报告 当天出"},  # Chinese headers map as in the batch scorer
                         {"listing_id": "8", "title": ""},
                         {"listing_id": "9", "title": 3.5}])
    assert rows[0]["listing_id"] == "7" and rows[0]["error"] is None and 0 <= rows[0]["p_report_sale"] <= 1
    assert rows[1]["error"] == "no text" and math.isnan(rows[1]["p_report_sale"]) and rows[1]["decision"] is None
    assert rows[2]["error"] == "field 'title' must be a string, got float" and rows[2]["labels"] == []
    frame = scorer.score_frame(pd.DataFrame([{"listing_id": "a", "title": "检测", "description": float("nan")}]))
    assert frame["error"].tolist() == [None]  # an empty DataFrame cell is an empty field, not a float


def test_load_defaults_to_the_model_variable_then_the_home(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("REPORTGUARD_MODEL", str(tiny_bundle))
    assert reportguard.load().bundle.path == tiny_bundle
    monkeypatch.delenv("REPORTGUARD_MODEL")
    monkeypatch.setenv("REPORTGUARD_HOME", str(tmp_path))
    with pytest.raises(InputError, match=f"{tmp_path / 'models' / 'current'}: no model bundle here"):
        reportguard.load()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "current").symlink_to(tiny_bundle)
    assert reportguard.load().model_version == reportguard.load(tiny_bundle).model_version


def test_predict_prints_one_json_object_per_text(tiny_bundle, batch):
    texts = [records()[k]["title"] for k in (0, 1, 2)] + [""]
    res = subprocess.run([str(SCRIPT), "predict", *texts, "--model", str(tiny_bundle), "--threads", "1"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(out) == 4
    for obj, text in zip(out[:3], texts):
        assert obj["text"] == text
        assert set(obj) == {"text", "labels", "probabilities", "decision", "evidence", "model_version"}
        assert set(obj["probabilities"]) == {"report_sale", "false_ad", "testing_service"}
        assert obj["decision"] in ("block", "review", "pass") and isinstance(obj["evidence"], list)
    assert out[3] == {"text": "", "error": "no text", "model_version": out[0]["model_version"]}
    direct = reportguard.load(tiny_bundle, threads=1).score([{"listing_id": "x", "title": texts[0]}])[0]
    assert abs(out[0]["probabilities"]["report_sale"] - direct["p_report_sale"]) <= 1e-6
    piped = subprocess.run([str(SCRIPT), "predict", "--model", str(tiny_bundle)], input=f"{texts[0]}\n{texts[1]}\n",
                           capture_output=True, text=True)
    assert [json.loads(l)["text"] for l in piped.stdout.splitlines()] == texts[:2]


def test_importing_reportguard_loads_no_scoring_engine():
    code = "import sys, reportguard\nprint([m for m in ('onnxruntime', 'tokenizers', 'pyarrow') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
