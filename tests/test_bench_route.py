"""`reportguard bench route` (train/bench/route.py) on the tiny bundle: both workloads built at a
tiny size, one round, the report's fields present and every row count reconciled. The tiny bundle
has no student tiers, so `--route auto` is the teacher; a second test puts tiers in a copy of it
(tier1.npz: random hashed n-grams; tier2.onnx: the teacher's own graph) and runs every route."""
import json
from pathlib import Path

import pytest

from reportguard.train.bench.route import (FIELDS, RouteBenchOptions, SECTION, VIOLATIONS, corpus_mix, prevalence,
                                           run, scorer_text)

from test_route import tiered  # noqa: E402  (a tiered copy of the tiny bundle)

VARIANT_FIELDS = {"listings_per_second", "seconds", "round_seconds", "ratio_vs_teacher", "round_ratios_vs_teacher",
                  "peak_rss_mb", "evidence", "macro_f1", "label_macro_f1", "label_set_agreement_with_teacher",
                  "decision_agreement_with_teacher", "decisions_moved_vs_teacher", "rows_by_tier", "share_by_tier",
                  "texts_by_tier", "evidence_by_tier", "reconciled"}


def options(tmp_path: Path, **kw) -> RouteBenchOptions:
    return RouteBenchOptions(**{"rounds": 1, "corpus_listings": 24, "ordinary": 40, "pipeline": False, "peak_seconds": 0.2,
                                "work_dir": str(tmp_path / "work"), **kw})


def test_workloads_are_what_the_issue_asks():
    a = corpus_mix(24)
    assert len(a.rows) == len(a.unique_texts) == 24 and len(a.gold) == 24
    b = prevalence(ordinary=40)
    p = b.params
    assert p["violations"] == 1 and p["rows"] == len(b.rows) == p["ordinary"] + p["violations"] + p["reposts"]
    assert abs(p["reposts"] / p["rows"] - 0.30) < 0.02
    assert len({r["listing_id"] for r in b.rows}) == len(b.rows)  # reposts carry new ids
    assert len(b.unique_texts) == p["ordinary"] + p["violations"]
    first = {}
    for k, (row, text) in enumerate(zip(b.rows, b.texts)):
        assert text == scorer_text(row)
        first.setdefault(text, k)
        if "-r" in row["listing_id"]:
            assert first[text] < k  # a repost repeats an *earlier* row's text
    assert sum(not o for o in b.ordinary) == sum(bool(set(g) & set(VIOLATIONS)) for g in b.gold) >= 1
    assert all(g == [] for g, o in zip(b.gold, b.ordinary) if o)
    assert prevalence(ordinary=40).rows == b.rows  # seeded


def test_route_bench_on_the_tiny_bundle(tiny_bundle, tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    (out / "bench.md").write_text(f"# Scorer benchmark\n\nbody\n\n{SECTION}\n\nstale\n", encoding="utf-8")
    summary = run(tiny_bundle, out, 2, options(tmp_path))
    saved = json.loads((out / "bench_route.json").read_text(encoding="utf-8"))
    assert saved["variants_run"] == ["auto", "teacher"] and set(saved["skipped"]) == {"tier1", "tier2", "pipeline"}
    assert saved["auto_runs"] == "teacher" and saved["matmul_peak_gflops"] > 0
    for name, w in saved["workloads"].items():
        dump = [json.loads(line) for line in (tmp_path / "work" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert w["rows"] == len(dump) and set(dump[0]) == set(FIELDS)
        for variant, r in w["variants"].items():
            assert VARIANT_FIELDS <= set(r), variant
            assert r["reconciled"]["ok"], (name, variant, r["reconciled"])
            assert r["rows_by_tier"] == {"teacher": w["rows"]} and r["share_by_tier"] == {"teacher": 1.0}
            assert r["peak_rss_mb"] is None or r["peak_rss_mb"] > 10
        auto, teacher = w["variants"]["auto"], w["variants"]["teacher"]
        assert auto["route"]["used"] == "teacher" and auto["route"]["requested"] == "auto"
        assert auto["label_set_agreement_with_teacher"] == auto["decision_agreement_with_teacher"] == 1.0  # auto is the teacher
        assert teacher["ratio_vs_teacher"] == 1.0 and 0 <= teacher["macro_f1"] <= 1
    prev = saved["workloads"]["prevalence"]
    b = prev["variants"]["teacher"]
    assert b["false_alarms"] == b["teacher_false_alarms"] <= b["ordinary_rows"]
    assert prev["params"]["ordinary"] <= b["ordinary_rows"] < prev["rows"]  # ordinary listings and their reposts
    assert set(saved["tiers_model_only"]["corpus_mix"]) == {"teacher"}
    t = saved["tiers_model_only"]["corpus_mix"]["teacher"]
    assert t["flops_per_listing"] > 0 and 0 < t["share_of_matmul_peak"]
    md = (out / "bench_route.md").read_text(encoding="utf-8")
    assert "same run" in md and f"{saved['machine']['cores']} cores" in md
    assert "**none**" not in md  # no pipeline row in this run
    bench = (out / "bench.md").read_text(encoding="utf-8")
    assert bench.count(SECTION) == 1 and "stale" not in bench and "bench_route.md" in bench and bench.startswith("# Scorer")
    assert summary["workloads"].keys() == saved["workloads"].keys()


def test_route_bench_with_student_tiers(tiny_bundle, tmp_path):
    try:
        bundle = tiered(tiny_bundle, tmp_path / "tiered", 0.3, 0.3)
        from reportguard.serve.bundle import load_bundle
        if [t.name for t in load_bundle(bundle).tiers] != ["tier1", "tier2"]:
            pytest.skip("this reportguard's bundle loader does not read route.tiers yet")
    except ImportError as exc:
        pytest.skip(f"tiers are not in this tree yet ({exc})")
    saved = run(bundle, tmp_path / "reports", 2, options(tmp_path, workloads=("prevalence",)))
    assert saved["variants_run"] == ["auto", "teacher", "tier1", "tier2"] and saved["auto_runs"] == "auto"
    w = saved["workloads"]["prevalence"]
    for variant, r in w["variants"].items():
        assert r["reconciled"]["ok"], (variant, r["reconciled"])
        assert abs(sum(r["share_by_tier"].values()) - 1) < 1e-9
    settled = {v: {k: n for k, n in r["rows_by_tier"].items() if n} for v, r in w["variants"].items()}
    assert settled["tier1"] == {"tier1": w["rows"]} and settled["tier2"] == {"tier2": w["rows"]}
    assert settled["teacher"] == {"teacher": w["rows"]} and set(settled["auto"]) <= {"tier1", "tier2", "teacher"}
    tiers = saved["tiers_model_only"]["prevalence"]
    assert set(tiers) == {"tier1", "tier2", "teacher"} and tiers["tier1"]["kind"] == "hashed_ngrams"
    # tier 2's entry keeps one of the teacher's two layers: its FLOPs are counted for one
    assert tiers["tier2"]["flops_per_listing"] < tiers["teacher"]["flops_per_listing"]
    assert 0 < tiers["tier1"]["flops_per_listing"] < tiers["tier2"]["flops_per_listing"]
    md = (tmp_path / "reports" / "bench_route.md").read_text(encoding="utf-8")
    assert "`--route tier1`" in md and "| prevalence | tier1 | hashed_ngrams |" in md
