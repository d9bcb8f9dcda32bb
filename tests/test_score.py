"""The batch scorer: output contract, rejects that reconcile, evidence, resumability, weight."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from reportguard.serve.outputs import read_run
from reportguard.serve.score import ScoreOptions, score

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "reportguard"
COLUMNS = ["listing_id", "p_report_sale", "p_false_ad", "p_testing_service", "labels", "decision", "evidence", "model_version"]


def corpus_rows(n: int | None = None) -> list[dict]:
    rows = [json.loads(l) for l in (ROOT / "data" / "labelled" / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    return rows[:n] if n else rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def kill_after_chunks(args: list[str], out: Path, chunks: int) -> int:
    """Start `reportguard score ... --output out`, kill -9 it once `chunks` chunks are committed
    (or after 120 s); returns how many chunks were committed."""
    proc = subprocess.Popen(args + ["--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = Path(f"{out}.parts")
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("chunk-*.parquet"))) < chunks:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(list(parts.glob("chunk-*.parquet")))


def opts(bundle, **kw) -> ScoreOptions:
    return ScoreOptions(model=str(bundle), progress=False, threads=1, **kw)


@pytest.mark.parametrize("ext", ["parquet", "jsonl", "csv"])
def test_output_contract_in_every_format(tiny_bundle, tmp_path, ext):
    rows = corpus_rows(40)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / f"out.{ext}"
    manifest = score([str(src)], out, opts(tiny_bundle))
    result = read_run(out)
    assert [r["listing_id"] for r in result] == [r["listing_id"] for r in rows]  # input order, every id
    assert list(result[0])[:len(COLUMNS)] == COLUMNS
    assert {"title", "description", "platform", "shop_name", "input_labels", "tags"} <= set(result[0])
    assert all(r["decision"] in {"block", "review", "pass"} for r in result)
    assert manifest["rows"] == {"in": 40, "accepted": 40, "rejected": 0, "unique": 40, "truncated_texts": manifest["rows"]["truncated_texts"]}
    assert Path(f"{out}.rejects.jsonl").exists() and Path(f"{out}.manifest.json").exists()
    assert not Path(f"{out}.parts").exists()
    if ext == "csv":
        assert "|" in out.read_text(encoding="utf-8") or all(not r["labels"] for r in result)


def test_hostile_inputs_reconcile(tiny_bundle, tmp_path):
    header = "listing_id,title,description,platform,shop_name\n"
    body = ('1,质检报告代办 当天出,不送样,淘宝,店A\n'
            '2,"broken quote,desc,淘宝,店B\n'
            '3,正常商品 附检测报告,,京东,店C\n'
            '4,,空标题,京东,店D\n'
            '5,nul\x00title,,京东,店E\n'
            f'6,ok,{"长" * 1_000_000},京东,店F\n'
            '3,重复id,,京东,店G\n'
            '7,extra,field,淘宝,店H,多余\n'
            '8,最后一行 CMA报告代做,,闲鱼,店I\n')
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes((header + body).encode("gb18030"))
    bom = tmp_path / "bom.csv"
    bom.write_bytes(("\ufeff" + header + "9,带BOM的文件 检测报告,,淘宝,店J\n").encode("utf-8"))
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"listing_id": "10", "title": "好的"}\n{oops\n{"listing_id": "11", "title": 42}\n', encoding="utf-8")
    out = tmp_path / "out.parquet"
    manifest = score([str(gbk), str(bom), str(bad_json)], out, opts(tiny_bundle, chunk_size=4))
    rows = manifest["rows"]
    assert rows["in"] == rows["accepted"] + rows["rejected"] == 13
    ids = [r["listing_id"] for r in read_run(out)]
    assert ids == ["1", "3", "4", "8", "9", "10"]  # 4 has no title but a description: it is scored
    rejects = [json.loads(l) for l in Path(f"{out}.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rejects) == rows["rejected"] == 7
    assert all(r["reason"] and r["file"] and r["line"] for r in rejects)


def test_missing_required_column_stops_before_any_work(tiny_bundle, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id_only,description\n1,x\n", encoding="utf-8")
    res = subprocess.run([str(SCRIPT), "score", str(src), "--output", str(tmp_path / "o.parquet"), "--model", str(tiny_bundle)],
                         capture_output=True, text=True)
    assert res.returncode == 1  # a refused input (2 is for usage errors)
    assert "required column 'listing_id' is missing" in res.stderr
    assert not list(tmp_path.glob("o.parquet*"))


def test_duplicate_texts_are_scored_once_and_identically(tiny_bundle, tmp_path):
    rows = corpus_rows(10)
    copies = [dict(r, listing_id=r["listing_id"] + "-copy") for r in rows]
    out = tmp_path / "o.parquet"
    manifest = score([str(write_jsonl(tmp_path / "in.jsonl", rows + copies))], out, opts(tiny_bundle, chunk_size=7))
    assert manifest["rows"]["unique"] == 10
    result = {r["listing_id"]: r for r in read_run(out)}
    for r in rows:
        a, b = result[r["listing_id"]], result[r["listing_id"] + "-copy"]
        assert (a["p_report_sale"], a["labels"], a["decision"]) == (b["p_report_sale"], b["labels"], b["decision"])


def test_evidence_points_into_the_original_text(tiny_bundle, tmp_path):
    rows = [{"listing_id": "a", "title": "【爆款】檢*測報告代辦 ＣＭＡ章", "description": "不送樣，包🔥过，當天出報告，加薇信"}]
    out = tmp_path / "o.jsonl"
    score([str(write_jsonl(tmp_path / "in.jsonl", rows))], out, opts(tiny_bundle))
    row = read_run(out)[0]
    evidence = json.loads(row["evidence"])
    for ev in evidence:
        assert rows[0][ev["field"]][ev["start"]:ev["end"]] == ev["text"]
        assert ev["label"] in row["labels"]
    if {"false_ad"} <= set(row["labels"]):
        assert any(ev["source"] == "lexicon" and ev["label"] == "false_ad" for ev in evidence)


def test_kill_minus_9_then_rerun_equals_an_uninterrupted_run(tiny_bundle, tmp_path):
    rows = corpus_rows()
    many = [dict(r, listing_id=f"{r['listing_id']}-{k}", title=f"{r['title']} {k}") for k in range(12) for r in rows]
    src = write_jsonl(tmp_path / "in.jsonl", many)
    args = [str(SCRIPT), "score", str(src), "--model", str(tiny_bundle), "--chunk-size", "300", "--threads", "1", "--quiet"]
    reference = tmp_path / "ref.parquet"
    subprocess.run(args + ["--output", str(reference)], check=True, capture_output=True)

    out = tmp_path / "out.parquet"
    committed = kill_after_chunks(args, out, 3)
    assert committed >= 3 and not out.exists(), "the kill must land mid-run"
    res = subprocess.run(args + ["--output", str(out)], check=True, capture_output=True, text=True)
    assert "resuming" in res.stdout
    manifest = json.loads(Path(f"{out}.manifest.json").read_text(encoding="utf-8"))
    assert manifest["resumed_chunks"] >= 3
    assert pq.read_table(out).equals(pq.read_table(reference))
    assert Path(f"{out}.rejects.jsonl").read_text() == Path(f"{reference}.rejects.jsonl").read_text()
    # and a rerun of a finished job is a no-op
    res = subprocess.run(args + ["--output", str(out)], check=True, capture_output=True, text=True)
    assert "nothing to do" in res.stdout


def test_scores_with_torch_and_transformers_unimportable(tiny_bundle, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'sklearn', 'datasets'):\n"
        "            raise ImportError(f'{name} is blocked for this test')\n"
        "sys.meta_path.insert(0, _Block())\n")
    src = write_jsonl(tmp_path / "in.jsonl", corpus_rows(20))
    env = dict(os.environ, PYTHONPATH=str(blocker))
    res = subprocess.run([str(SCRIPT), "score", str(src), "--output", str(tmp_path / "o.jsonl"), "--model", str(tiny_bundle), "--quiet"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert len(read_run(tmp_path / "o.jsonl")) == 20
    check = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert check.returncode != 0  # the blocker really blocks


def test_bundle_refuses_missing_tampered_or_mismatched_files(tiny_bundle, tmp_path):
    from reportguard.serve.bundle import BundleError, load_bundle

    def copy() -> Path:
        target = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tiny_bundle, target)
        return target

    b = copy()
    (b / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="tokenizer.json: missing"):
        load_bundle(b)
    b = copy()
    with open(b / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="SHA-256 differs"):
        load_bundle(b)
    for field, value, message in (("normalizer_version", "0.old", "normaliser"), ("labels", ["report_sale"], "labels")):
        b = copy()
        meta = json.loads((b / "bundle.json").read_text())
        meta[field] = value
        (b / "bundle.json").write_text(json.dumps(meta))
        with pytest.raises(BundleError, match=message):
            load_bundle(b)
