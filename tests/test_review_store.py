"""The verdict store: real migrations, restart persistence, concurrent reviewers, injection stays data,
kappa and adjudication."""
import threading

import pytest
from sqlalchemy import inspect

from reportguard.review.agreement import agreement, cohen_kappa, disagreements, final_labels
from reportguard.review.queue import make_queue
from reportguard.review.samples import sample_rows, write_run
from reportguard.review.store import Store, current_revision


@pytest.fixture
def queue(tmp_path):
    return make_queue(write_run(sample_rows(40), tmp_path / "run.parquet"), 12, "stratified", seed=1)


@pytest.fixture
def store(tmp_path, queue):
    s = Store(f"sqlite:///{tmp_path / 'verdicts.sqlite'}")
    s.load_queue(queue)
    return s


def test_migrations_create_exactly_the_models_schema(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from reportguard.review.schema import VERSION_TABLE, Base

    store = Store(f"sqlite:///{tmp_path / 'm.sqlite'}")
    assert current_revision(store.engine) == "0001"
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], diff
    tables = set(inspect(store.engine).get_table_names())
    assert {"queues", "items", "verdicts", "verdict_history", "reportguard_review_version"} <= tables


def test_db_upgrade_command_is_idempotent(tmp_path, capsys):
    from reportguard.review.cli import main
    url = f"sqlite:///{tmp_path / 'u.sqlite'}"
    assert main(["review", "db", "upgrade", "--db", url]) == 0
    assert main(["review", "db", "upgrade", "--db", url]) == 0
    assert "revision 0001" in capsys.readouterr().out


def test_loading_a_queue_twice_is_harmless(store, queue):
    assert store.load_queue(queue) is False
    assert len(store.items(queue.queue_id)) == 12


def test_verdicts_survive_a_restart(tmp_path, store, queue):
    store.save_verdict(queue.queue_id, 0, "alice", ["false_ad"], "looks fake")
    store.close()
    again = Store(f"sqlite:///{tmp_path / 'verdicts.sqlite'}")
    [v] = again.verdicts()
    assert (v["reviewer"], v["labels"], v["comment"], v["queue_id"]) == ("alice", ["false_ad"], "looks fake", queue.queue_id)
    assert v["model_version"] == "rg-test-0001"


def test_a_verdict_records_decisions_against_the_model(store, queue):
    item = store.item(queue.queue_id, 3)
    v = store.save_verdict(queue.queue_id, 3, "alice", ["report_sale"])
    for label in item.predicted:
        assert v["decisions"][label] == ("accept" if label == "report_sale" else "reject")
    if "report_sale" not in item.predicted:
        assert v["decisions"]["report_sale"] == "add"


def test_saving_again_updates_the_reviewers_own_row_and_keeps_history(store, queue):
    store.save_verdict(queue.queue_id, 0, "alice", ["false_ad"])
    store.save_verdict(queue.queue_id, 0, "alice", [], "changed my mind")
    [v] = store.verdicts()
    assert v["labels"] == [] and v["comment"] == "changed my mind"
    assert [h["labels"] for h in store.history()] == [["false_ad"], []]


def test_injection_in_reviewer_name_and_comment_stays_data(store, queue):
    evil = "x'); DROP TABLE verdicts; --"
    comment = "'; DELETE FROM items WHERE '1'='1"
    store.save_verdict(queue.queue_id, 1, evil, ["report_sale"], comment)
    [v] = store.verdicts()
    assert v["reviewer"] == evil and v["comment"] == comment
    assert len(store.items(queue.queue_id)) == 12
    assert store.verdict(queue.queue_id, 1, evil)["comment"] == comment
    assert store.reviewed_positions(queue.queue_id, "x' OR '1'='1") == set()


def test_bad_verdicts_are_refused(store, queue):
    with pytest.raises(ValueError):
        store.save_verdict(queue.queue_id, 0, "alice", ["made_up"])
    with pytest.raises(ValueError):
        store.save_verdict(queue.queue_id, 0, "  ", ["false_ad"])
    with pytest.raises(LookupError):
        store.save_verdict(queue.queue_id, 999, "alice", [])


def test_two_reviewers_writing_at_once_lose_nothing(tmp_path, store, queue):
    """Two reviewers (each with their own Store, as two server processes would) save every item
    at the same time; every verdict of both must be there afterwards."""
    url = f"sqlite:///{tmp_path / 'verdicts.sqlite'}"
    errors = []

    def review(name, labels):
        try:
            mine = Store(url)
            for position in range(12):
                mine.save_verdict(queue.queue_id, position, name, labels, f"{name} {position}")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=review, args=("alice", ["report_sale"])),
               threading.Thread(target=review, args=("bob", ["false_ad"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    verdicts = store.verdicts()
    assert len(verdicts) == 24
    assert {(v["reviewer"], v["position"]) for v in verdicts} == {(r, p) for r in ("alice", "bob") for p in range(12)}
    assert all(v["comment"] == f"{v['reviewer']} {v['position']}" for v in verdicts)


def test_next_unreviewed_skips_what_the_reviewer_did(store, queue):
    store.save_verdict(queue.queue_id, 0, "alice", [])
    store.save_verdict(queue.queue_id, 1, "alice", [])
    assert store.next_unreviewed(queue.queue_id, "alice") == 2
    assert store.next_unreviewed(queue.queue_id, "bob") == 0
    assert store.next_unreviewed(queue.queue_id, "alice", after=5) == 6
    for p in range(12):
        store.save_verdict(queue.queue_id, p, "alice", [])
    assert store.next_unreviewed(queue.queue_id, "alice") is None


def test_cohen_kappa_matches_scikit_learn():
    from sklearn.metrics import cohen_kappa_score
    a = [True, True, False, False, True, False, True, True, False, False]
    b = [True, False, False, False, True, False, True, True, True, False]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_kappa_disagreements_and_adjudication(store, queue):
    q = queue.queue_id
    # Items 0-5: alice and bob agree; item 6 and 7: they disagree on false_ad.
    for p in range(6):
        labels = ["report_sale"] if p % 2 else []
        store.save_verdict(q, p, "alice", labels)
        store.save_verdict(q, p, "bob", labels)
    store.save_verdict(q, 6, "alice", ["false_ad", "testing_service"])
    store.save_verdict(q, 6, "bob", ["testing_service"])
    store.save_verdict(q, 7, "alice", [])
    store.save_verdict(q, 7, "bob", ["false_ad"])
    store.save_verdict(q, 8, "alice", ["report_sale"])  # single review

    by_item = store.verdicts_by_item(q)
    stats = agreement(by_item)
    assert stats["double_reviewed"] == 8
    assert stats["kappa"]["report_sale"] == 1.0
    assert stats["kappa"]["false_ad"] == pytest.approx(cohen_kappa([False] * 6 + [True, False], [False] * 6 + [False, True]), abs=1e-4)
    assert stats["pairs"] == {"alice & bob": 8}

    open_items = disagreements(by_item)
    assert [(d["position"], d["contested"], d["adjudicated"]) for d in open_items] == [
        (6, ["false_ad"], False), (7, ["false_ad"], False)]
    assert final_labels(by_item[6]["review"], by_item[6]["adjudication"]) is None
    assert final_labels(by_item[8]["review"], []) == ["report_sale"]

    store.save_verdict(q, 6, "carol", ["false_ad", "testing_service"], "no-sample claim", role="adjudication")
    by_item = store.verdicts_by_item(q)
    assert final_labels(by_item[6]["review"], by_item[6]["adjudication"]) == ["false_ad", "testing_service"]
    assert [d["adjudicated"] for d in disagreements(by_item)] == [True, False]
    # The adjudicator's verdict is not a third review: it does not change kappa.
    assert agreement(by_item)["kappa"] == stats["kappa"]


def test_the_same_store_runs_on_postgresql(tmp_path):
    """Opt-in: set REPORTGUARD_TEST_POSTGRES_URL=postgresql+psycopg://user@host/emptydb (needs the
    psycopg driver). Migrations, verdicts, two concurrent reviewers and kappa on a team database."""
    import os
    url = os.environ.get("REPORTGUARD_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set REPORTGUARD_TEST_POSTGRES_URL to an empty PostgreSQL database to run this")
    from sqlalchemy import text
    queue = make_queue(write_run(sample_rows(20), tmp_path / "run.jsonl"), 8, "stratified")
    store = Store(url)
    with store.engine.begin() as connection:  # a clean slate for reruns
        for table in ("verdict_history", "verdicts", "items", "queues"):
            connection.execute(text(f"DELETE FROM {table}"))
    assert current_revision(store.engine) == "0001"
    assert store.load_queue(queue)
    threads = [threading.Thread(target=lambda n=name: [Store(url, migrate=False).save_verdict(
        queue.queue_id, p, n, ["report_sale"] if n == "alice" else []) for p in range(8)]) for name in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.verdicts(queue.queue_id)) == 16
    store.save_verdict(queue.queue_id, 0, "alice", ["false_ad"], "x'); DROP TABLE verdicts;--")
    assert store.verdict(queue.queue_id, 0, "alice")["comment"] == "x'); DROP TABLE verdicts;--"
    assert agreement(store.verdicts_by_item(queue.queue_id))["double_reviewed"] == 8
    from reportguard.review.exporters import estimate_precision
    assert estimate_precision(store)["models"]["rg-test-0001"]["counts"]["double_reviewed"] == 8
