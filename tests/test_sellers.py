"""Seller roll-ups: who counts as a seller, counts with known answers, every output format, a real run."""
import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reportguard.serve.sellers import (OUTPUT_COLUMNS, UNKNOWN_SHOP, add_sellers_command, default_output, iter_run,
                                       roll_up_sellers, seller_records, sellers)

ROOT = Path(__file__).resolve().parents[1]


def listing(listing_id, labels, decision="review", platform="淘宝", shop_id=None, shop_name=None, p=0.9, **extra):
    """A scored row as `reportguard score` writes it; probabilities are `p` for each model label given."""
    probs = {f"p_{x}": (p if x in labels else 0.05) for x in ("report_sale", "false_ad", "testing_service")}
    return {"listing_id": listing_id, **probs, "labels": labels, "decision": decision, "evidence": "[]",
            "model_version": "hand-1", "platform": platform, "shop_id": shop_id, "shop_name": shop_name, "title": f"标题{listing_id}",
            **extra}


ROWS = [
    listing("r1", ["report_sale", "false_ad"], "block", shop_id="s1", shop_name="店A"),
    listing("r2", ["testing_service"], "pass", shop_id="s1", shop_name="店A改名"),
    listing("r3", ["false_ad", "credential_missing", "testing_service"], shop_name="店B"),
    listing("r4", [], "pass", platform="京东", shop_name="店C"),
    listing("r5", ["report_sale"], platform="京东"),
    listing("r6", ["credential_missing", "testing_service"], platform="拼多多", shop_name="店D"),
    listing("r7", ["testing_service"], "pass", platform="拼多多", shop_id="", shop_name=" 店E "),
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv_run(path: Path, rows: list[dict]) -> Path:
    """A CSV run as the scorer writes one: labels pipe-separated, None as an empty cell."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, columns, restval="")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("|".join(v) if k == "labels" else ("" if v is None else v)) for k, v in r.items()})
    return path


def by_shop(records: list[dict]) -> dict:
    return {(r["platform"], r["shop_id"] or r["shop_name"]): r for r in records}


def test_known_answers_and_order():
    records = seller_records(roll_up_sellers(iter(json.loads(json.dumps(ROWS))), samples=5).sellers())
    # Worst first: severity, then flagged, then listings: the id-keyed shop beats the unknown group on listings.
    assert [(r["platform"], r["shop_id"] or r["shop_name"]) for r in records] == [
        ("淘宝", "s1"), ("京东", UNKNOWN_SHOP), ("淘宝", "店B"), ("拼多多", "店D"), ("拼多多", "店E"), ("京东", "店C")]
    s1 = by_shop(records)[("淘宝", "s1")]
    assert s1["shop_name"] == "店A"  # the first name seen for an id-keyed shop; a renamed listing stays the same seller
    assert (s1["listings"], s1["flagged"], s1["n_report_sale"], s1["n_false_ad"], s1["n_credential_missing"], s1["n_testing_service"]) == (2, 1, 1, 1, 0, 1)
    assert (s1["n_block"], s1["n_review"], s1["n_pass"]) == (1, 0, 1)
    assert (s1["max_severity"], s1["max_severity_label"], s1["max_severity_zh"]) == (4, "report_sale", "买卖/伪造检验检测报告")
    assert s1["sample_listing_ids"] == ["r1", "r2"]
    clean = by_shop(records)[("京东", "店C")]
    assert (clean["max_severity"], clean["max_severity_label"], clean["flagged"]) == (0, "", 0)
    assert by_shop(records)[("拼多多", "店E")]["shop_name"] == "店E"  # whitespace is not part of a name
    assert by_shop(records)[("拼多多", "店D")]["max_severity_label"] == "credential_missing"
    assert sum(r["listings"] for r in records) == len(ROWS)


def test_unknown_shops_group_per_platform_and_are_counted():
    rows = [listing("a", ["report_sale"], platform="闲鱼"), listing("b", [], platform="闲鱼", shop_id="", shop_name=""),
            listing("c", ["false_ad"], platform="QQ群", shop_name=None), listing("d", [], platform="闲鱼", shop_name="有名店")]
    rollup = roll_up_sellers(rows)
    unknown = [s for s in rollup.sellers() if not s.known]
    assert rollup.unknown_listings == 3
    assert sorted((s.platform, s.listings) for s in unknown) == [("QQ群", 1), ("闲鱼", 2)]
    assert all(s.shop_name == UNKNOWN_SHOP for s in unknown)
    assert [s.shop_name for s in rollup.sellers() if s.known] == ["有名店"]


def test_samples_are_worst_first_and_bounded():
    rows = [listing("clean1", [], shop_name="店"), listing("ts", ["testing_service"], shop_name="店"),
            listing("rs_low", ["report_sale"], shop_name="店", p=0.6), listing("fa", ["false_ad"], shop_name="店"),
            listing("rs_high", ["report_sale"], shop_name="店", p=0.99), listing("rs_low2", ["report_sale"], shop_name="店", p=0.6),
            listing("clean2", [], shop_name="店")]
    (seller,) = roll_up_sellers(rows, samples=4).sellers()
    # severity first, then the violation probability, then the earlier listing
    assert seller.sample_ids() == ["rs_high", "rs_low", "rs_low2", "fa"]
    (none,) = roll_up_sellers(rows, samples=0).sellers()
    assert none.sample_ids() == []


def test_csv_run_with_pipe_labels_and_every_output_format(tmp_path):
    run = write_csv_run(tmp_path / "run.csv", ROWS)
    parsed = list(iter_run(run))
    assert parsed[0]["labels"] == ["report_sale", "false_ad"] and parsed[3]["labels"] == []
    assert isinstance(parsed[0]["p_report_sale"], float)
    expected = seller_records(roll_up_sellers(json.loads(json.dumps(ROWS))).sellers())

    out, _ = sellers(run)  # default: beside RUN, stem + .sellers.csv
    assert out == tmp_path / "run.sellers.csv" == default_output(run)
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel shows the Chinese
    with open(out, encoding="utf-8-sig", newline="") as fh:
        read = list(csv.DictReader(fh))
    assert list(read[0]) == list(OUTPUT_COLUMNS)
    assert [(r["platform"], r["shop_name"], int(r["flagged"])) for r in read] == [(r["platform"], r["shop_name"], r["flagged"]) for r in expected]
    assert read[0]["sample_listing_ids"] == "r1|r2" and read[0]["shop_known"] == "true"

    out, _ = sellers(run, tmp_path / "s.parquet")
    assert pq.read_table(out).to_pylist() == expected
    out, _ = sellers(run, tmp_path / "s.jsonl")
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == expected


def test_parquet_run_is_streamed_in_batches(tmp_path):
    rows = [listing(f"id{k}", ["report_sale"] if k % 3 == 0 else [], shop_name=f"店{k % 4}") for k in range(50)]
    run = tmp_path / "run.parquet"
    pq.write_table(pa.Table.from_pylist(rows), run, row_group_size=7)
    assert sum(1 for _ in iter_run(run, batch_size=5)) == 50
    assert seller_records(roll_up_sellers(iter_run(run, batch_size=5)).sellers()) == seller_records(roll_up_sellers(rows).sellers())


def test_a_spark_output_directory_reads_like_a_file(tmp_path):
    """`score --engine spark` writes a directory of Parquet parts under decision=... partitions, with
    Spark's _SUCCESS marker; sellers, report and review read it through the same reader."""
    from reportguard.review.runs import read_run as review_read_run

    run = tmp_path / "scored.parquet"
    table = pa.Table.from_pylist(json.loads(json.dumps(ROWS)))
    pq.write_to_dataset(table, run, partition_cols=["decision"])
    (run / "_SUCCESS").write_bytes(b"")
    rows = list(iter_run(run))
    assert sorted(r["listing_id"] for r in rows) == sorted(r["listing_id"] for r in ROWS)
    assert {r["listing_id"]: r["decision"] for r in rows} == {r["listing_id"]: r["decision"] for r in ROWS}
    assert seller_records(roll_up_sellers(iter_run(run)).sellers()) == seller_records(roll_up_sellers(json.loads(json.dumps(ROWS))).sellers())
    assert sorted(r["listing_id"] for r in review_read_run(run).rows) == sorted(r["listing_id"] for r in ROWS)
    empty = tmp_path / "empty.parquet"
    empty.mkdir()
    with pytest.raises(ValueError, match="no Parquet files"):
        list(iter_run(empty))


def test_formula_looking_shop_names_are_defused_in_csv(tmp_path):
    run = write_jsonl(tmp_path / "run.jsonl", [listing("x", ["report_sale"], shop_name='=HYPERLINK("http://evil","点我")')])
    out, _ = sellers(run)
    with open(out, encoding="utf-8-sig", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["shop_name"] == "'" + '=HYPERLINK("http://evil","点我")'


def test_a_file_that_is_not_a_run_is_refused(tmp_path):
    bad = write_jsonl(tmp_path / "run.jsonl", [{"listing_id": "1", "title": "x"}])
    with pytest.raises(ValueError, match="labels"):
        sellers(bad)
    with pytest.raises(ValueError, match="parquet"):
        sellers(tmp_path / "run.txt")
    nan = write_jsonl(tmp_path / "nan.jsonl", [listing("n", ["report_sale"], p=float("nan"))])
    with pytest.raises(ValueError, match="not a probability"):
        sellers(nan)


def test_doctests():
    import doctest

    import reportguard.serve.regulator
    import reportguard.serve.sellers

    for module in (reportguard.serve.sellers, reportguard.serve.regulator):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed


def test_module_import_is_light():
    code = ("import sys, reportguard.serve.sellers, reportguard.serve.regulator; "
            "print(sorted(m for m in ('pyarrow', 'openpyxl', 'onnxruntime', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_on_a_real_run(tiny_bundle, tmp_path):
    from reportguard.serve.score import ScoreOptions, score

    rows = [json.loads(line) for line in (ROOT / "data" / "labelled" / "test.jsonl").read_text(encoding="utf-8").splitlines()[:30]]
    for k, r in enumerate(rows):
        r["shop_id"] = f"shop{k % 6}" if k % 5 else ""
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    run = tmp_path / "run.parquet"
    score([str(src)], run, ScoreOptions(model=str(tiny_bundle), progress=False, threads=1))

    parser = argparse.ArgumentParser()
    add_sellers_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sellers", str(run), "--samples", "3"])
    assert args.func(args) == 0
    with open(tmp_path / "run.sellers.csv", encoding="utf-8-sig", newline="") as fh:
        read = list(csv.DictReader(fh))
    assert sum(int(r["listings"]) for r in read) == 30
    assert all(len(r["sample_listing_ids"].split("|")) <= 3 for r in read)
    severities = [int(r["max_severity"]) for r in read]
    assert severities == sorted(severities, reverse=True)
    labels_in_run = sum(len(r["labels"]) for r in iter_run(run))
    assert sum(int(r[f"n_{x}"]) for r in read for x in ("report_sale", "false_ad", "credential_missing", "testing_service")) == labels_in_run
