"""Verdicts out: corpus-format records for retraining, unbiased precision/recall estimates with
intervals, and the Label Studio round trip."""
import json
import random

import pytest

from reportguard.core.labels import MODEL_LABELS
from reportguard.review.cli import main as review_main
from reportguard.review.exporters import CORPUS_FIELDS, FORMAT, estimate, estimate_precision, export_labelled, wilson
from reportguard.review.labelstudio import LABEL_CONFIG, export_tasks, field_offsets, import_annotations, task_of
from reportguard.review.queue import build_queue, make_queue, read_queue, write_queue
from reportguard.review.runs import read_run
from reportguard.review.samples import sample_rows, write_run
from reportguard.review.store import Store


@pytest.fixture
def reviewed(tmp_path):
    """A stratified queue, every item reviewed by alice; items 0-1 also by bob, who disagrees on item 1."""
    queue = make_queue(write_run(sample_rows(50), tmp_path / "run.csv"), 15, "stratified", seed=2)
    store = Store(f"sqlite:///{tmp_path / 'v.sqlite'}")
    store.load_queue(queue)
    for item in queue.items:
        store.save_verdict(queue.queue_id, item["position"], "alice", item["record"]["labels"])
    store.save_verdict(queue.queue_id, 0, "bob", queue.items[0]["record"]["labels"])
    store.save_verdict(queue.queue_id, 1, "bob", ["false_ad"] if "false_ad" not in queue.items[1]["record"]["labels"] else [])
    return store, queue, tmp_path


def test_labelled_export_is_in_the_corpus_format(reviewed):
    from reportguard.train.corpus import FIELDS
    store, queue, tmp = reviewed
    counts = export_labelled(store, tmp / "labelled.jsonl", labelled_dir=None)
    rows = [json.loads(x) for x in (tmp / "labelled.jsonl").read_text(encoding="utf-8").splitlines()]
    assert CORPUS_FIELDS == FIELDS
    assert counts["written"] == len(rows) == 14  # item 1 is an open disagreement
    assert queue.items[1]["listing_id"] not in {r["listing_id"] for r in rows}
    for row in rows:
        assert tuple(row) == FIELDS
        assert row["tags"] == []
        assert row["labels"] == [x for x in MODEL_LABELS if x in row["labels"]], "model labels, model order"
        assert "credential_missing" not in row["labels"]
        assert all(isinstance(row[f], str) for f in FIELDS[:6])


def test_labelled_export_trains_the_baseline(reviewed):
    """What `data.extra_train` does with the file (pipeline.load_data), then a fit."""
    from reportguard.train.baselines import TfidfBaseline
    from reportguard.train.metrics import to_matrix
    from reportguard.core.normalize import listing_text
    store, _, tmp = reviewed
    export_labelled(store, tmp / "labelled.jsonl", labelled_dir=None)
    rows = [json.loads(line) for line in (tmp / "labelled.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    y = to_matrix([r["labels"] for r in rows])
    model = TfidfBaseline().fit([listing_text(r["title"], r["description"]) for r in rows], y)
    assert model.predict_proba([listing_text("质检报告代办当天出", "")]).shape == (1, 3)


def test_labelled_export_skips_duplicates_of_held_out_rows(reviewed):
    store, queue, tmp = reviewed
    held = tmp / "labelled_dir"
    held.mkdir()
    record = queue.items[3]["record"]
    (held / "test.jsonl").write_text(json.dumps({"title": record["title"], "description": record["description"]},
                                                ensure_ascii=False) + "\n", encoding="utf-8")
    counts = export_labelled(store, tmp / "out.jsonl", labelled_dir=held)
    assert counts["skipped_held_out_duplicates"] == 1 and counts["written"] == 13


def test_adjudication_releases_a_disputed_item(reviewed):
    store, queue, tmp = reviewed
    store.save_verdict(queue.queue_id, 1, "carol", ["report_sale"], role="adjudication")
    export_labelled(store, tmp / "labelled.jsonl", labelled_dir=None)
    rows = {json.loads(x)["listing_id"]: json.loads(x) for x in (tmp / "labelled.jsonl").read_text(encoding="utf-8").splitlines()}
    assert rows[queue.items[1]["listing_id"]]["labels"] == ["report_sale"]


def test_wilson_interval():
    low, high = wilson(45, 50)
    assert low < 0.9 < high and 0.78 < low < 0.80 and 0.95 < high < 0.97
    assert wilson(10, 10)[1] == 1.0 and wilson(0, 10)[0] == 0.0
    e = estimate([(1.0, True)] * 8 + [(1.0, False)] * 2)
    assert (e["estimate"], e["reviewed"], e["confirmed"], e["effective_n"]) == (0.8, 10, 8, 10.0)
    # Unequal weights shrink the effective sample size and widen the interval.
    w = estimate([(1.0, True)] * 8 + [(9.0, False)] * 2)
    assert w["effective_n"] < 10 and w["high"] - w["low"] > e["high"] - e["low"]


def test_precision_document_schema(reviewed):
    store, queue, _ = reviewed
    doc = estimate_precision(store)
    assert doc["format"] == FORMAT and doc["confidence"] == 0.95
    model = doc["models"]["rg-test-0001"]
    assert model["method"] == "weighted" and model["representative"] is True and model["coverage"] == "complete"
    assert model["counts"] == {"items": 15, "reviewed": 15, "double_reviewed": 2, "final": 14,
                               "open_disagreements": 1, "adjudicated": 0}
    assert model["queues"][0]["queue_id"] == queue.queue_id and model["queues"][0]["used"]
    for label in ("report_sale", "false_ad", "credential_missing", "testing_service"):
        m = model["labels"][label]
        # alice accepted every model label: precision 1 and, since the model missed nothing she saw, recall 1.
        assert m["precision"]["estimate"] == 1.0 and m["precision"]["low"] < 1.0
        assert m["recall"]["estimate"] == 1.0
        assert set(m["bands"]) <= set(doc["bands"])
        assert sum(b["reviewed"] for b in m["bands"].values()) == m["precision"]["reviewed"]
    assert "kappa" in model["agreement"]


def test_stratified_weights_make_estimates_unbiased(tmp_path):
    """A population where the truth is known: a large `none` stratum hides most of the model's
    misses. Averaged over 20 stratified queues, the weighted estimates find the true precision and
    recall; an unweighted count of the same verdicts would overstate recall badly."""
    rng = random.Random(5)
    rows = sample_rows(400, seed=5)
    truth = {}
    for i, row in enumerate(rows):
        if i % 10 < 7:  # 70% of listings: nothing predicted
            row.update(labels=[], decision="pass", evidence="[]",
                       **{f"p_{x}": round(rng.uniform(0.01, 0.45), 3) for x in MODEL_LABELS})
        labels = set(row["labels"])
        if "report_sale" in labels and i % 4 == 0:
            labels.discard("report_sale")  # a false positive
        if not row["labels"] and i % 10 == 0:
            labels.add("report_sale")  # a miss, hidden in the big `none` stratum
        truth[row["listing_id"]] = sorted(labels)
    predicted = {r["listing_id"] for r in rows if "report_sale" in r["labels"]}
    actual = {k for k, v in truth.items() if "report_sale" in v}
    true_precision = len(predicted & actual) / len(predicted)
    true_recall = len(predicted & actual) / len(actual)

    run = read_run(write_run(rows, tmp_path / "run.parquet"))
    store = Store("sqlite://")
    weighted_p, weighted_r, naive_r = [], [], []
    for seed in range(20):
        queue = build_queue(run, 60, "stratified", seed=seed)
        store.load_queue(queue)
        for item in queue.items:
            store.save_verdict(queue.queue_id, item["position"], "alice", truth[item["listing_id"]])
        label = estimate_precision(store, [queue.queue_id])["models"]["rg-test-0001"]["labels"]["report_sale"]
        weighted_p.append(label["precision"]["estimate"])
        weighted_r.append(label["recall"]["estimate"])
        hits = [i for i in queue.items if i["listing_id"] in actual]
        naive_r.append(sum(i["listing_id"] in predicted for i in hits) / len(hits))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean(weighted_p) == pytest.approx(true_precision, abs=0.05)
    assert mean(weighted_r) == pytest.approx(true_recall, abs=0.08)
    assert mean(naive_r) - true_recall > 0.2, "the unweighted count is the biased one"


def test_uncertainty_queues_give_unweighted_non_representative_estimates(tmp_path):
    queue = make_queue(write_run(sample_rows(30), tmp_path / "run.jsonl"), 10, "uncertainty")
    store = Store("sqlite://")
    store.load_queue(queue)
    for item in queue.items:
        store.save_verdict(queue.queue_id, item["position"], "alice", [])
    model = estimate_precision(store)["models"]["rg-test-0001"]
    assert model["method"] == "unweighted" and model["representative"] is False
    assert all(m["recall"] is None and m["recall_note"] for m in model["labels"].values())


def test_export_command_writes_both_files(reviewed, capsys):
    store, _, tmp = reviewed
    assert review_main(["review", "export", "--db", store.url, "--labelled", str(tmp / "l.jsonl"),
                        "--precision", str(tmp / "p.json"), "--labelled-dir", ""]) == 0
    assert json.loads((tmp / "p.json").read_text(encoding="utf-8"))["format"] == FORMAT
    assert (tmp / "l.jsonl").read_text(encoding="utf-8").count("\n") == 14
    assert "precision" in capsys.readouterr().out


# -- Label Studio --------------------------------------------------------------------------------

def test_label_studio_tasks_carry_predictions_in_the_standard_result_format(tmp_path):
    queue = make_queue(write_run(sample_rows(12), tmp_path / "run.jsonl"), 12, "top")
    tasks_path, config_path = export_tasks(queue, tmp_path / "tasks.json")
    tasks = json.loads(tasks_path.read_text(encoding="utf-8"))
    assert config_path.read_text(encoding="utf-8") == LABEL_CONFIG
    assert len(tasks) == 12
    spans = 0
    for task, item in zip(tasks, queue.items):
        [prediction] = task["predictions"]
        assert prediction["model_version"] == "rg-test-0001"
        assert 0 <= prediction["score"] <= 1
        choices = [r for r in prediction["result"] if r["type"] == "choices"]
        assert choices == [{"id": choices[0]["id"], "from_name": "labels", "to_name": "text", "type": "choices",
                            "value": {"choices": item["record"]["labels"] and
                                      [x for x in ("report_sale", "false_ad", "credential_missing", "testing_service")
                                       if x in item["record"]["labels"]]}}]
        for r in prediction["result"]:
            if r["type"] == "labels":
                spans += 1
                assert (r["from_name"], r["to_name"]) == ("evidence", "text")
                v = r["value"]
                assert task["data"]["text"][v["start"]:v["end"]] == v["text"]
                field, start, end = field_offsets(task["data"]["title"], v["start"], v["end"])
                assert task["data"][field][start:end] == v["text"]
        assert task["data"]["queue_id"] == queue.queue_id and task["data"]["listing_id"] == item["listing_id"]
    assert spans > 0


def test_label_studio_round_trip(tmp_path):
    queue = make_queue(write_run(sample_rows(12), tmp_path / "run.jsonl"), 6, "top")
    write_queue(queue, tmp_path / "q.jsonl")
    tasks = json.loads(export_tasks(queue, tmp_path / "tasks.json")[0].read_text(encoding="utf-8"))
    # What Label Studio exports after two annotators worked: annotations beside the predictions.
    intended = {}
    for k, task in enumerate(tasks):
        result = [dict(r) for r in task["predictions"][0]["result"]]
        choice = next(r for r in result if r["type"] == "choices")
        labels = ["false_ad"] if k % 2 else choice["value"]["choices"]
        choice["value"] = {"choices": labels}
        result.append({"id": f"c{k}", "from_name": "comment", "to_name": "text", "type": "textarea",
                       "value": {"text": [f"note {k}"]}})
        task["annotations"] = [{"id": k, "completed_by": {"id": 7, "email": "ann@example.org"}, "result": result,
                                "was_cancelled": False},
                               {"id": 100 + k, "completed_by": 8, "result": [], "was_cancelled": True}]
        intended[task["data"]["listing_id"]] = (labels, f"note {k}")
    (tmp_path / "export.json").write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")

    url = f"sqlite:///{tmp_path / 'v.sqlite'}"
    assert review_main(["review", "labelstudio-import", str(tmp_path / "export.json"), "--queue",
                        str(tmp_path / "q.jsonl"), "--db", url]) == 0
    verdicts = Store(url).verdicts()
    assert len(verdicts) == 6
    for v in verdicts:
        assert v["reviewer"] == "labelstudio:ann@example.org" and v["source"] == "labelstudio"
        assert (v["labels"], v["comment"]) == intended[v["listing_id"]]
    # Importing the same export again updates, never duplicates.
    assert import_annotations(Store(url), tmp_path / "export.json")["verdicts"] == 6
    assert len(Store(url).verdicts()) == 6


def test_label_studio_export_command(tmp_path):
    queue = make_queue(write_run(sample_rows(5), tmp_path / "run.csv"), 5, "top")
    write_queue(queue, tmp_path / "q.jsonl")
    assert review_main(["review", "labelstudio-export", str(tmp_path / "q.jsonl"), "--out", str(tmp_path / "t.json")]) == 0
    assert len(json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))) == 5
    assert task_of(read_queue(tmp_path / "q.jsonl").items[0], "m")["predictions"][0]["model_version"] == "m"
