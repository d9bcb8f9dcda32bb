"""Scored runs are read the same in all three formats, and review queues pick and weight as promised."""
import json

import pytest

from reportguard.review.cli import main as review_main
from reportguard.review.queue import (allocate, build_queue, make_queue, read_queue, read_thresholds, stratum_of,
                                      write_queue)
from reportguard.review.runs import RunError, read_run
from reportguard.review.samples import sample_rows, write_run


@pytest.fixture(params=["parquet", "jsonl", "csv"])
def run_path(request, tmp_path):
    return write_run(sample_rows(60), tmp_path / f"run.{request.param}")


def test_the_three_formats_read_back_identically(tmp_path):
    rows = sample_rows(30)
    runs = {fmt: read_run(write_run(rows, tmp_path / f"run.{fmt}")) for fmt in ("parquet", "jsonl", "csv")}
    for fmt, run in runs.items():
        assert [r["listing_id"] for r in run.rows] == [r["listing_id"] for r in rows], fmt
        assert [r["labels"] for r in run.rows] == [r["labels"] for r in rows], fmt
        assert [r["evidence"] for r in run.rows] == [json.loads(r["evidence"]) for r in rows], fmt
        assert all(isinstance(r["p_false_ad"], float) for r in run.rows)
        assert run.model_version == "rg-test-0001"
        assert run.manifest["rows"]["in"] == 30


def test_csv_pipe_convention_and_empty_labels(tmp_path):
    path = tmp_path / "run.csv"
    path.write_text("listing_id,p_report_sale,p_false_ad,p_testing_service,labels,decision,evidence,model_version,title\n"
                    "a,0.9,0.8,0.7,report_sale|false_ad|testing_service,block,[],m1,t\n"
                    "b,0.1,0.1,0.1,,pass,,m1,t\n", encoding="utf-8")
    rows = read_run(path).rows
    assert rows[0]["labels"] == ["report_sale", "false_ad", "testing_service"]
    assert rows[1]["labels"] == [] and rows[1]["evidence"] == []


@pytest.mark.parametrize("change, message", [
    ({"labels": ["not_a_label"]}, "unknown label"),
    ({"p_false_ad": 1.5}, "outside"),
    ({"decision": "maybe"}, "decision"),
    ({"evidence": "{broken"}, "evidence"),
])
def test_bad_rows_stop_the_run_with_file_row_and_column(tmp_path, change, message):
    rows = sample_rows(3)
    rows[1].update(change)
    with pytest.raises(RunError, match=message) as err:
        read_run(write_run(rows, tmp_path / "run.jsonl"))
    assert "row 2" in str(err.value) and "run.jsonl" in str(err.value)


def test_a_missing_column_is_named(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "p_false_ad"} for r in sample_rows(3)]
    with pytest.raises(RunError, match="p_false_ad"):
        read_run(write_run(rows, tmp_path / "run.jsonl"))


def test_stratified_weights_are_inverse_inclusion_probabilities(run_path):
    queue = make_queue(run_path, 20, "stratified", seed=3)
    strata = queue.header["weights"]["strata"]
    run = read_run(run_path)
    populations = {}
    for row in run.rows:
        populations[stratum_of(row)] = populations.get(stratum_of(row), 0) + 1
    assert {k: v["population"] for k, v in strata.items()} == populations
    assert all(v["sampled"] >= 1 for v in strata.values()), "every stratum sampled: recall is estimable"
    assert queue.header["weights"]["coverage"] == "complete"
    assert len(queue.items) == 20
    for item in queue.items:
        s = strata[item["stratum"]]
        assert item["inclusion_probability"] == pytest.approx(s["sampled"] / s["population"])
        assert item["weight"] == pytest.approx(1 / item["inclusion_probability"])
    # The weights of a stratum's items add up to its population: Horvitz-Thompson totals are unbiased.
    for key, s in strata.items():
        assert sum(i["weight"] for i in queue.items if i["stratum"] == key) == pytest.approx(s["population"])


def test_stratified_sampling_is_reproducible_and_independent_of_row_order(tmp_path):
    rows = sample_rows(60)
    a = make_queue(write_run(rows, tmp_path / "a.jsonl"), 15, "stratified", seed=7)
    b = make_queue(write_run(list(reversed(rows)), tmp_path / "b.jsonl"), 15, "stratified", seed=7)
    c = make_queue(write_run(rows, tmp_path / "a.jsonl"), 15, "stratified", seed=8)
    assert sorted(i["listing_id"] for i in a.items) == sorted(i["listing_id"] for i in b.items)
    assert sorted(i["listing_id"] for i in a.items) != sorted(i["listing_id"] for i in c.items)


def test_allocation_never_exceeds_a_stratum_and_spends_the_budget():
    populations = {"report_sale/0.95-1.00": 2, "false_ad/0.80-0.95": 30, "none/0.00-0.50": 900}
    alloc = allocate(50, populations)
    assert sum(alloc.values()) == 50
    assert all(alloc[k] <= populations[k] for k in populations)
    assert alloc["report_sale/0.95-1.00"] == 2
    assert allocate(10_000, populations) == populations  # a census


def test_a_batch_smaller_than_the_strata_is_marked_partial(run_path):
    queue = make_queue(run_path, 2, "stratified")
    assert queue.header["weights"]["coverage"] == "partial"
    assert "recall is not estimable" in queue.header["weights"]["note"]


def test_uncertainty_picks_the_items_nearest_a_threshold(run_path):
    queue = make_queue(run_path, 5, "uncertainty")
    margins = sorted(min(abs(r[f"p_{x}"] - 0.5) for x in ("report_sale", "false_ad", "testing_service"))
                     for r in read_run(run_path).rows)
    picked = [min(abs(i["record"][f"p_{x}"] - 0.5) for x in ("report_sale", "false_ad", "testing_service"))
              for i in queue.items]
    assert sorted(picked) == margins[:5]
    assert all(i["weight"] is None for i in queue.items) and queue.header["weights"]["kind"] is None


def test_uncertainty_reads_thresholds_from_the_bundle(tmp_path, run_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text(json.dumps({"thresholds": {"report_sale": 0.9, "false_ad": 0.9,
                                                                   "testing_service": 0.9}}))
    assert read_thresholds(bundle)[0]["false_ad"] == 0.9
    queue = make_queue(run_path, 3, "uncertainty", model_dir=bundle)
    assert queue.header["thresholds"]["report_sale"] == 0.9
    assert str(bundle / "bundle.json") in queue.header["threshold_source"]
    assert all(min(abs(i["record"][f"p_{x}"] - 0.9) for x in ("report_sale", "false_ad", "testing_service")) < 0.1
               for i in queue.items)


def test_top_takes_the_most_severe_first(run_path):
    queue = make_queue(run_path, 15, "top")
    from reportguard.core.labels import severity
    levels = [severity(i["record"]["labels"]) for i in queue.items]
    assert levels == sorted(levels, reverse=True)
    assert levels[0] == 4  # report_sale
    first_scores = [i["record"]["p_report_sale"] for i in queue.items if severity(i["record"]["labels"]) == 4]
    assert first_scores == sorted(first_scores, reverse=True)


def test_queue_file_round_trip_and_stable_id(tmp_path, run_path):
    queue = make_queue(run_path, 10, "stratified")
    path = write_queue(queue, tmp_path / "q.jsonl")
    back = read_queue(path)
    assert back.header == queue.header and back.items == queue.items
    assert back.header["run"] == str(run_path.resolve())
    assert back.header["model_version"] == "rg-test-0001" and back.header["strategy"] == "stratified"
    assert make_queue(run_path, 10, "stratified").queue_id == queue.queue_id
    assert all(i["queue_id"] == queue.queue_id for i in back.items)
    # A truncated file is refused rather than read short.
    path.write_text("\n".join(path.read_text(encoding="utf-8").splitlines()[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="truncated"):
        read_queue(path)


def test_build_queue_refuses_nonsense(run_path):
    run = read_run(run_path)
    with pytest.raises(ValueError):
        build_queue(run, 0, "top")
    with pytest.raises(ValueError):
        build_queue(run, 5, "random")


def test_queue_command(tmp_path, run_path, capsys):
    out = tmp_path / "q.jsonl"
    assert review_main(["review", "queue", str(run_path), "--size", "8", "--strategy", "stratified",
                        "--seed", "1", "--out", str(out)]) == 0
    assert "weight" in capsys.readouterr().out
    assert len(read_queue(out).items) == 8
    assert review_main(["review", "queue", str(tmp_path / "missing.csv"), "--size", "8", "--out", str(out)]) == 2


@pytest.mark.parametrize("module", ["queue", "highlight", "store", "agreement", "exporters", "labelstudio"])
def test_review_doctests(module):
    """`make test` collects doctests from src/core only; the review modules' examples run here."""
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(f"reportguard.review.{module}"))
    assert result.attempted and not result.failed
