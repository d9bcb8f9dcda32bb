"""The console script works as the README says."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "reportguard"


def run(*args, stdin=None):
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, input=stdin)


def test_console_script_is_installed_in_the_venv():
    assert SCRIPT.exists(), "make setup must install .venv/bin/reportguard"
    out = run("--help")
    assert out.returncode == 0 and "data" in out.stdout and "baselines" in out.stdout


def test_normalize_subcommand():
    out = run("normalize", "檢*測報告 ＣＭＡ 包🔥过")
    assert out.stdout.strip() == "检测报告 cma 包过"


def test_data_validate_passes_on_the_committed_corpus():
    out = run("data", "validate")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "corpus valid" in out.stdout


def test_import_takedowns_maps_reason_codes_and_rejects_unknown_ones(tmp_path):
    export = tmp_path / "takedowns.csv"
    export.write_text("商品ID,商品标题,takedown_reason\n"
                      "1,质检报告代办当天出,FAKE_REPORT|FAST_REPORT\n"
                      "2,普通T恤,CLEARED\n"
                      "3,某商品,NOT_A_CODE\n"
                      "4,,FAKE_REPORT\n", encoding="utf-8")
    out_file = tmp_path / "labelled.jsonl"
    res = run("data", "import-takedowns", str(export), "--output", str(out_file))
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary == {"rows_in": 4, "accepted": 2, "rejected": 2, "output": str(out_file)}
    rows = [json.loads(l) for l in out_file.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["labels"] == ["report_sale", "false_ad", "testing_service"]
    assert rows[1]["labels"] == []
    rejects = [json.loads(l) for l in Path(f"{out_file}.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["line"]: r["reason"] for r in rejects} == {
        4: "unknown takedown reason code 'NOT_A_CODE'; add it to " + str(ROOT / "configs" / "takedown_reasons.yaml"),
        5: "no text",
    }


def test_missing_column_is_a_clear_error(tmp_path):
    export = tmp_path / "t.csv"
    export.write_text("商品ID,takedown_reason\n1,CLEARED\n", encoding="utf-8")
    res = run("data", "import-takedowns", str(export), "--output", str(tmp_path / "o.jsonl"))
    assert res.returncode == 2
    assert "t.csv: line 1: required column 'title' is missing" in res.stderr
