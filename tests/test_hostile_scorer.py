"""The scorer against a hostile user: every probe gives a reject with its reason, a one-line error
naming the file (exit 1, no partial output) or a refusal; rows in = accepted + rejected in every
run that completes; an edited bundle refuses to load, and a resumed run never mixes two bundles."""
import errno
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from reportguard.serve.bundle import BundleError, load_bundle, seal_bundle, sha256_file
from reportguard.serve.outputs import read_run
from reportguard.serve.score import OutputLock, ScoreError, ScoreOptions, score

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "reportguard"


def opts(bundle, **kw) -> ScoreOptions:
    return ScoreOptions(model=str(bundle), progress=False, threads=1, **kw)


def corpus_rows(n: int) -> list[dict]:
    return [json.loads(l) for l in (ROOT / "data" / "labelled" / "test.jsonl").read_text(encoding="utf-8").splitlines()][:n]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def cli(*args):
    return subprocess.run([str(SCRIPT), "score", *map(str, args), "--quiet", "--threads", "1"], capture_output=True, text=True)


def leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((name, f".{name}")))


def edited_copy(bundle: Path, target: Path, edit, reseal: bool) -> Path:
    shutil.copytree(bundle, target)
    meta = json.loads((target / "bundle.json").read_text(encoding="utf-8"))
    edit(meta)
    (target / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    if reseal:
        seal_bundle(target)
    return target


# --- rows -----------------------------------------------------------------------------------

def test_the_printf_probe_scores_the_good_rows_and_rejects_the_bad_byte(tiny_bundle, tmp_path):
    src = tmp_path / "x.csv"
    src.write_bytes(b"listing_id,title\na1,report ok\na2,bad byte \xff here\na3,towel\n")
    res = cli(src, "--output", tmp_path / "out.csv", "--model", tiny_bundle)
    assert res.returncode == 0, res.stderr
    assert [r["listing_id"] for r in read_run(tmp_path / "out.csv")] == ["a1", "a3"]
    (reject,) = [json.loads(l) for l in (tmp_path / "out.csv.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert reject["line"] == 3 and reject["raw"] == "a2,bad byte \\xff here\n" and "neither UTF-8 nor GB18030" in reject["reason"]
    manifest = json.loads((tmp_path / "out.csv.manifest.json").read_text(encoding="utf-8"))
    assert manifest["rows"]["in"] == 3 == manifest["rows"]["accepted"] + manifest["rows"]["rejected"]
    assert manifest["encodings"] == {"ascii": 2, "undecodable": 1}


def test_mixed_encodings_are_scored_as_written_and_warned_about(tiny_bundle, tmp_path):
    header = "listing_id,title,description\n"
    utf8 = "".join(f"u{i},质检报告代办 第{i}号,{'描述' * 30}\n" for i in range(9000))
    gb = "".join(f"g{i},纯棉T恤 检测报告 {i},\n" for i in range(20))
    src = tmp_path / "concat.csv"
    src.write_bytes((header + utf8).encode("utf-8") + gb.encode("gb18030") + "z1,结尾又是UTF-8,\n".encode("utf-8"))
    assert src.stat().st_size > 1 << 20
    out = tmp_path / "out.parquet"
    res = cli(src, "--output", out, "--model", tiny_bundle, "--attribution", "none", "--chunk-size", "4000")
    assert res.returncode == 0, res.stderr
    titles = {r["listing_id"]: r["title"] for r in pq.read_table(out, columns=["listing_id", "title"]).to_pylist()}
    assert titles["g19"] == "纯棉T恤 检测报告 19" and titles["z1"] == "结尾又是UTF-8" and titles["u0"] == "质检报告代办 第0号"
    manifest = json.loads(Path(f"{out}.manifest.json").read_text(encoding="utf-8"))
    assert manifest["encodings"] == {"gb18030": 20, "utf-8": 9001} and manifest["rows"]["rejected"] == 0
    assert [w.split(": ", 2)[1] for w in manifest["warnings"]] == ["line 9002", "line 9022"]
    assert "line 9002: encoding switches from UTF-8 to GB18030" in res.stderr


def test_listings_without_a_title_are_scored(tiny_bundle, tmp_path):
    rows = [{"listing_id": "f1", "title": "", "description": "朋友圈：各类检测报告代办，不送样，当天出报告，包过"},
            {"listing_id": "f2", "description": "论坛回帖：CMA报告可以代做，价格私聊"},
            {"listing_id": "f3", "title": "", "description": "", "shop_name": "检测报告代办专营店"},
            {"listing_id": "f4", "title": "", "description": " ", "shop_name": ""},
            {"listing_id": "f5", "title": "纯棉T恤", "description": ""}]
    out = tmp_path / "o.jsonl"
    manifest = score([str(write_jsonl(tmp_path / "in.jsonl", rows))], out, opts(tiny_bundle))
    assert [r["listing_id"] for r in read_run(out)] == ["f1", "f2", "f3", "f5"]
    assert manifest["rows"]["unique"] == 4  # the shop name is read when title and description are empty
    for row in read_run(out):
        for ev in json.loads(row["evidence"]):
            source = next(r for r in rows if r["listing_id"] == row["listing_id"])
            assert source[ev["field"]][ev["start"]:ev["end"]] == ev["text"]
    (reject,) = [json.loads(l) for l in Path(f"{out}.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert (reject["listing_id"], reject["reason"]) == ("f4", "no text")


def test_jsonl_with_cr_line_breaks_and_bad_ids(tiny_bundle, tmp_path):
    rows = [{"listing_id": "a", "title": "检测报告"}, {"listing_id": "b\nc", "title": "x"}, {"listing_id": " d ", "title": "y"}]
    src = tmp_path / "cr.jsonl"
    src.write_bytes("\r".join(json.dumps(r, ensure_ascii=False) for r in rows).encode("utf-8"))
    out = tmp_path / "o.parquet"
    manifest = score([str(src)], out, opts(tiny_bundle))
    assert manifest["rows"] == dict(manifest["rows"], **{"in": 3, "accepted": 2, "rejected": 1})
    assert [r["listing_id"] for r in read_run(out)] == ["a", "d"]
    assert manifest["listing_ids_trimmed"] == 1


# --- the bundle -----------------------------------------------------------------------------

def test_an_edited_bundle_refuses_to_load(tiny_bundle, tmp_path):
    assert "content_sha256" in json.loads((tiny_bundle / "bundle.json").read_text())
    b = edited_copy(tiny_bundle, tmp_path / "edited", lambda m: m["thresholds"].update(report_sale=0.01), reseal=False)
    with pytest.raises(BundleError, match="bundle.json was edited"):
        load_bundle(b)
    b = edited_copy(tiny_bundle, tmp_path / "files", lambda m: m["files"].update({"model.onnx": "0" * 64}), reseal=False)
    with pytest.raises(BundleError, match="bundle.json was edited"):
        load_bundle(b)
    src = write_jsonl(tmp_path / "in.jsonl", corpus_rows(2))  # inputs are checked first; these are fine
    res = cli(src, "--output", tmp_path / "o.parquet", "--model", tmp_path / "edited")
    assert res.returncode == 1 and "bundle.json was edited" in res.stderr  # a refused input: exit 1


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["thresholds"].update(report_sale=math.nan), "thresholds.report_sale = nan is not a finite number"),
    (lambda m: m["thresholds"].update(false_ad=-1), r"thresholds.false_ad = -1.0 is not in \(0, 1\)"),
    (lambda m: m["thresholds"].update(false_ad=1.0), r"thresholds.false_ad = 1.0 is not in \(0, 1\)"),
    (lambda m: m["decision"]["block"].update(report_sale=-1), "decision.block.report_sale = -1.0 is below thresholds.report_sale"),
    (lambda m: m["decision"]["block"].update(report_sale=math.inf), "decision.block.report_sale = inf is not a finite number"),
    (lambda m: m["decision"]["block"].update(testing_servce=0.9), "decision.block.testing_servce: not a model label"),
    (lambda m: m["temperature"].update(false_ad=0), "temperature.false_ad = 0 is not positive"),
])
def test_thresholds_are_validated_even_when_sealed(tiny_bundle, tmp_path, edit, message):
    b = edited_copy(tiny_bundle, tmp_path / "b", edit, reseal=True)
    with pytest.raises(BundleError, match=message):
        load_bundle(b)


def test_an_unsealed_bundle_loads_under_a_version_that_its_edits_change(tiny_bundle, tmp_path):
    def unseal(meta):
        meta.pop("content_sha256")
        meta.pop("other_files")
    a = load_bundle(edited_copy(tiny_bundle, tmp_path / "a", unseal, reseal=False))
    b = load_bundle(edited_copy(tiny_bundle, tmp_path / "b", lambda m: (unseal(m), m["thresholds"].update(report_sale=0.3)), reseal=False))
    sealed = load_bundle(tiny_bundle)
    assert a.model_version.startswith(sealed.model_version + "+") and a.model_version != b.model_version
    assert sealed.model_version == json.loads((tiny_bundle / "bundle.json").read_text())["model_version"]
    seal_bundle(tmp_path / "b")
    assert load_bundle(tmp_path / "b").model_version == sealed.model_version


def test_a_resumed_run_never_mixes_two_bundles(tiny_bundle, tmp_path, monkeypatch, capsys):
    import reportguard.serve.score as scoring
    rows = [dict(r, listing_id=f"{r['listing_id']}-{k}") for k in range(2) for r in corpus_rows(150)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    other = edited_copy(tiny_bundle, tmp_path / "other", lambda m: m["decision"]["block"].update(false_ad=0.99), reseal=True)
    out = tmp_path / "out.parquet"
    calls = {"n": 0}
    real = scoring._score_chunk

    def dies_after_two(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kw)
    monkeypatch.setattr(scoring, "_score_chunk", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        score([str(src)], out, opts(tiny_bundle, chunk_size=60))
    assert len(list(Path(f"{out}.parts").glob("chunk-*.parquet"))) == 2
    monkeypatch.setattr(scoring, "_score_chunk", real)
    capsys.readouterr()
    manifest = score([str(src)], out, opts(other, chunk_size=60))
    said = capsys.readouterr().out
    assert "left by a run with another model bundle" in said and "starting over" in said
    assert manifest["resumed_chunks"] == 0 and manifest["bundle_sha256"] == load_bundle(other).content_sha256
    reference = tmp_path / "ref.parquet"
    score([str(src)], reference, opts(other, chunk_size=60))
    assert pq.read_table(out).equals(pq.read_table(reference))
    # A finished output rerun with the other bundle is scored again, not "already complete".
    capsys.readouterr()
    again = score([str(src)], out, opts(tiny_bundle, chunk_size=60))
    said = capsys.readouterr().out
    assert "written by a run with another model bundle" in said and "nothing to do" not in said
    assert again["bundle_sha256"] == load_bundle(tiny_bundle).content_sha256


# --- refusals -------------------------------------------------------------------------------

def test_output_onto_an_input_is_refused(tiny_bundle, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", corpus_rows(5))
    before = src.read_bytes()
    res = cli(src, "--output", src, "--model", tiny_bundle)
    assert res.returncode == 1 and "refusing to overwrite an input" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert src.read_bytes() == before
    link = tmp_path / "link.jsonl"
    link.symlink_to(src)
    assert cli(src, "--output", link, "--model", tiny_bundle).returncode == 1
    folder = tmp_path / "dump"
    folder.mkdir()
    write_jsonl(folder / "part-0.jsonl", corpus_rows(3))
    res = cli(folder, "--output", folder / "scored.jsonl", "--model", tiny_bundle)
    assert res.returncode == 1 and "inside the input folder" in res.stderr
    assert src.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["part-0.jsonl"]


def test_a_second_scorer_on_the_same_output_is_refused_with_the_holders_pid(tiny_bundle, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", corpus_rows(5))
    out = tmp_path / "o.parquet"
    with OutputLock(out):
        res = cli(src, "--output", out, "--model", tiny_bundle)
        assert res.returncode == 1
        assert f"another `reportguard score` (PID {os.getpid()}) is writing this output" in res.stderr
        assert not out.exists() and not Path(f"{out}.parts").exists()
    assert cli(src, "--output", out, "--model", tiny_bundle).returncode == 0
    assert leftovers(tmp_path, "o.parquet") == ["o.parquet", "o.parquet.manifest.json", "o.parquet.rejects.jsonl"]


@pytest.mark.parametrize("ext", ["parquet", "jsonl", "csv"])
def test_zero_rows_give_a_valid_empty_output(tiny_bundle, tmp_path, ext):
    header_only = tmp_path / "h.csv"
    header_only.write_text("listing_id,title\n", encoding="utf-8")
    empty = tmp_path / "e.jsonl"
    empty.write_bytes(b"")
    out = tmp_path / f"o.{ext}"
    manifest = score([str(header_only), str(empty)], out, opts(tiny_bundle))
    assert manifest["rows"]["in"] == manifest["rows"]["accepted"] == manifest["rows"]["rejected"] == 0
    assert read_run(out) == [] and Path(f"{out}.rejects.jsonl").read_text() == ""
    assert leftovers(tmp_path, f"o.{ext}") == [f"o.{ext}", f"o.{ext}.manifest.json", f"o.{ext}.rejects.jsonl"]
    if ext == "parquet":
        assert pq.read_schema(out).names[:3] == ["listing_id", "p_report_sale", "p_false_ad"]
    assert "nothing to do" in cli(header_only, empty, "--output", out, "--model", tiny_bundle).stdout


# --- errors a person can act on -----------------------------------------------------------------

def test_a_truncated_gz_is_one_line_naming_the_file(tiny_bundle, tmp_path):
    data = gzip.compress("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in corpus_rows(300)).encode("utf-8"))
    src = tmp_path / "cut.jsonl.gz"
    src.write_bytes(data[: len(data) - 40])
    res = cli(src, "--output", tmp_path / "o.parquet", "--model", tiny_bundle)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [f"reportguard: error: {src}: cannot be read: truncated gzip archive "
                                               f"(it ends before its end-of-stream marker)"]
    assert leftovers(tmp_path, "o.parquet") == []


def test_a_garbage_graph_with_a_matching_hash_is_one_line(tiny_bundle, tmp_path):
    def garbage(meta):
        (tmp_path / "g" / "model.onnx").write_bytes(b"this is not an onnx graph" * 100)
        meta["files"]["model.onnx"] = sha256_file(tmp_path / "g" / "model.onnx")
    bundle = edited_copy(tiny_bundle, tmp_path / "g", garbage, reseal=True)
    src = write_jsonl(tmp_path / "in.jsonl", corpus_rows(5))
    res = cli(src, "--output", tmp_path / "o.parquet", "--model", bundle)
    assert res.returncode == 1
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(f"reportguard: error: {bundle / 'model.onnx'}: not a loadable ONNX graph")
    assert leftovers(tmp_path, "o.parquet") == []


def test_an_unwritable_output_folder_is_one_line(tiny_bundle, tmp_path, monkeypatch):
    src = write_jsonl(tmp_path / "in.jsonl", corpus_rows(5))
    out = tmp_path / "ro" / "o.parquet"
    out.parent.mkdir()
    real_open = os.open

    def read_only(path, flags, *args, **kw):
        if str(path).startswith(str(out.parent)) and flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kw)
    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(ScoreError, match=r"o\.parquet\.lock: cannot write the output: Permission denied"):
        score([str(src)], out, opts(tiny_bundle))
    monkeypatch.undo()
    assert list(out.parent.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_for_real(tiny_bundle, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", corpus_rows(5))
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        res = cli(src, "--output", folder / "o.parquet", "--model", tiny_bundle)
        assert res.returncode == 1 and "Permission denied" in res.stderr and len(res.stderr.strip().splitlines()) == 1
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def disk_full_at_third_part(monkeypatch) -> None:
    """The scorer's third Parquet write fails with ENOSPC (a disk that fills up mid-run)."""
    import reportguard.serve.score as scoring
    real = scoring.pq.write_table
    calls = {"n": 0}

    def fills_up(table, where, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(where))
        return real(table, where, *args, **kw)
    monkeypatch.setattr(scoring.pq, "write_table", fills_up)


def test_a_full_disk_leaves_no_partial_output_and_the_rerun_resumes(tiny_bundle, tmp_path, monkeypatch):
    rows = [dict(r, listing_id=f"{r['listing_id']}-{k}") for k in range(2) for r in corpus_rows(100)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    reference = tmp_path / "ref.parquet"
    score([str(src)], reference, opts(tiny_bundle, chunk_size=50))
    out = tmp_path / "o.parquet"
    disk_full_at_third_part(monkeypatch)
    with pytest.raises(ScoreError) as failure:
        score([str(src)], out, opts(tiny_bundle, chunk_size=50))
    message = str(failure.value)
    assert ".chunk-000002.parquet.tmp: cannot write the output: No space left on device" in message
    assert "2 committed chunk(s) kept" in message and "\n" not in message
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
    parts = Path(f"{out}.parts")
    assert sorted(p.name for p in parts.iterdir() if p.suffix == ".parquet") == ["chunk-000000.parquet", "chunk-000001.parquet"]
    assert not [p for p in parts.iterdir() if p.name.startswith((".", "rg-spill"))]
    monkeypatch.undo()
    manifest = score([str(src)], out, opts(tiny_bundle, chunk_size=50))
    assert manifest["resumed_chunks"] == 2
    assert pq.read_table(out).equals(pq.read_table(reference))


def test_a_full_disk_while_assembling_leaves_no_output(tiny_bundle, tmp_path, monkeypatch):
    import pyarrow.csv as pacsv
    src = write_jsonl(tmp_path / "in.jsonl", corpus_rows(20))
    out = tmp_path / "o.csv"

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pacsv, "write_csv", full)
    with pytest.raises(ScoreError, match="No space left on device"):
        score([str(src)], out, opts(tiny_bundle))
    assert leftovers(tmp_path, "o.csv") == ["o.csv.parts"]  # the committed chunk, to resume from


# --- memory that stays flat ----------------------------------------------------------------------

def test_spilled_caches_give_byte_identical_output(tiny_bundle, tmp_path):
    rows = corpus_rows(120)
    reposts = [dict(rows[(i * 37) % 120], listing_id=f"re-{i}") for i in range(80)]
    dups = [dict(rows[i], title="重复编号") for i in range(0, 120, 10)]
    src = write_jsonl(tmp_path / "in.jsonl", rows + reposts + dups)
    a = score([str(src)], tmp_path / "a.parquet", opts(tiny_bundle, chunk_size=30))
    b = score([str(src)], tmp_path / "b.parquet", opts(tiny_bundle, chunk_size=30, memory_texts=7, memory_ids=11))
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))
    assert (tmp_path / "a.parquet.rejects.jsonl").read_text() == (tmp_path / "b.parquet.rejects.jsonl").read_text()
    assert a["rows"] == b["rows"] and b["rows"]["unique"] == 120 and b["rows"]["rejected"] == 12
