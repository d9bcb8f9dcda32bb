"""Tiered scoring (serve/tiers.py, issue 14): the route in the bundle, the cascade, evidence at a
student's price. The tiny bundle is turned into a tiered one in a copy: tier1.npz holds small
random hashed-n-gram weights (core.hashed_ngrams) and tier2.onnx is a copy of the tiny bundle's
own fp32 graph (same inputs and output); both are hashed into `files` and the bundle re-sealed."""
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from reportguard.core.errors import UsageError
from reportguard.core.hashed_ngrams import HashedNgramModel, save_tier1
from reportguard.core.labels import MODEL_LABELS
from reportguard.serve.bundle import BundleError, load_bundle, seal_bundle, sha256_file
from reportguard.serve.outputs import read_run
from reportguard.serve.score import ScoreOptions, TextCache, score, score_records
from reportguard.serve.tiers import route_logits, route_texts

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "reportguard"
from test_hostile_scorer import disk_full_at_third_part  # noqa: E402  (the scorer tests' helpers)
from test_score import corpus_rows, kill_after_chunks, opts, write_jsonl  # noqa: E402

TIER1 = {"buckets": 4096, "ngram_min": 1, "ngram_max": 3, "window_chars": 64, "stride_chars": 48}


def margins(value: float) -> dict:
    return {x: value for x in MODEL_LABELS}


def tiered(tiny_bundle: Path, out: Path, margin1: float, margin2: float, default: str = "auto") -> Path:
    """A copy of the tiny bundle with tier1 (random hashed n-grams) and tier2 (the teacher's fp32
    graph, copied) in front of the teacher, at these margins, sealed."""
    shutil.copytree(tiny_bundle, out)
    meta = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    rng = np.random.default_rng(14)
    save_tier1(out / "tier1.npz", HashedNgramModel(rng.normal(0, 1.0, (TIER1["buckets"], 3)).astype(np.float32),
                                                   rng.normal(0, 0.5, 3).astype(np.float32), dict(TIER1)))
    shutil.copyfile(out / ("model.onnx" if meta["precision"] == "fp32" else "model_fp32.onnx"), out / "tier2.onnx")
    meta["route"] = {"default": default, "reason": "test bundle",
                     "tiers": [{"name": "tier1", "kind": "hashed_ngrams", "file": "tier1.npz", **TIER1, "margin": margins(margin1)},
                               {"name": "tier2", "kind": "transformer", "file": "tier2.onnx", "layers": [0],
                                "margin": margins(margin2)}],
                     "gate": {}}
    for name in ("tier1.npz", "tier2.onnx"):
        meta["files"][name] = sha256_file(out / name)
    (out / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    seal_bundle(out)
    return out


def model_texts(n: int) -> list[str]:
    from reportguard.serve.score import _prepare
    return [_prepare(r)[0] for r in corpus_rows(n)]


def distance_to_cuts(bundle, logits: np.ndarray) -> np.ndarray:
    """Per text, how far its nearest label logit lies from a cut: settled when >= the margin."""
    cuts = bundle.cuts()
    return np.min([np.abs(logits[:, j, None] - cuts[j][None, :]).min(axis=1) for j in range(len(MODEL_LABELS))], axis=0)


def mixed_margins(tiny_bundle: Path, scratch: Path) -> tuple[float, float]:
    """Margins at which tier 1 settles about 40% of the corpus texts and tier 2 about half of the
    rest: read off the students' own logits, so the split holds whatever the tiny teacher learnt."""
    bundle = load_bundle(tiered(tiny_bundle, scratch, 1e6, 1e6), threads=1)
    texts = model_texts(200)
    d1 = distance_to_cuts(bundle, route_logits(bundle, texts, "tier1", 32)[0])
    margin1 = float(np.quantile(d1, 0.6))
    rest = [t for t, d in zip(texts, d1) if d < margin1]
    margin2 = float(np.median(distance_to_cuts(bundle, route_logits(bundle, rest, "tier2", 32)[0])))
    return margin1, margin2


@pytest.fixture(scope="module")
def bundles(tiny_bundle, tmp_path_factory):
    """Tiered copies: huge margins (nothing settles before the teacher), zero margins (tier 1
    settles all), a mix (every tier settles some), and one whose gate failed (default teacher)."""
    root = tmp_path_factory.mktemp("tiered")
    return {"huge": tiered(tiny_bundle, root / "huge", 1e6, 1e6), "zero": tiered(tiny_bundle, root / "zero", 0.0, 0.0),
            "mixed": tiered(tiny_bundle, root / "mixed", *mixed_margins(tiny_bundle, root / "scratch")),
            "gate_failed": tiered(tiny_bundle, root / "gf", 0.0, 0.0, "teacher")}


def test_the_mixed_bundle_uses_every_tier(bundles):
    """The fixture itself: the mixed margins send texts to each tier (else the tests below test less)."""
    _, _, tier = route_logits(load_bundle(bundles["mixed"], threads=1), model_texts(200), "auto", 32)
    assert set(np.bincount(tier, minlength=3).nonzero()[0]) == {0, 1, 2}, np.bincount(tier, minlength=3)


# --- the bundle -----------------------------------------------------------------------------

def test_a_tampered_student_refuses_to_load_naming_the_file(bundles, tmp_path):
    for name in ("tier1.npz", "tier2.onnx"):
        b = tmp_path / name
        shutil.copytree(bundles["mixed"], b)
        with open(b / name, "ab") as fh:
            fh.write(b"\0")
        with pytest.raises(BundleError, match=rf"{name}: SHA-256 differs from bundle.json"):
            load_bundle(b)


@pytest.mark.parametrize("edit, message", [
    (lambda r, m: m["files"].pop("tier1.npz"), r"tiers\[0\].file = 'tier1.npz' has no hash in files"),
    (lambda r, m: r["tiers"][1].update(margin=margins(-1.0)), r"tiers\[1\].margin"),
    (lambda r, m: r["tiers"][0]["margin"].update(false_ad=float("nan")), r"tiers\[0\].margin"),
    (lambda r, m: r.update(default="tier1"), "route.default = 'tier1'"),
    (lambda r, m: r["tiers"][1].update(kind="lstm"), r"tiers\[1\].kind = 'lstm': not a tier kind"),
    (lambda r, m: r["tiers"][1].update(name="tier1"), r"tiers\[1\].name = 'tier1'"),
    (lambda r, m: r["tiers"][0].update(buckets=0), r"tiers\[0\].buckets = 0 is not a positive integer"),
])
def test_the_route_section_is_validated(bundles, tmp_path, edit, message):
    b = tmp_path / "b"
    shutil.copytree(bundles["mixed"], b)
    meta = json.loads((b / "bundle.json").read_text(encoding="utf-8"))
    edit(meta["route"], meta)
    (b / "bundle.json").write_text(json.dumps(meta), encoding="utf-8")
    seal_bundle(b)
    with pytest.raises(BundleError, match=message):
        load_bundle(b)


def test_tiers_open_lazily_and_never_travel_in_a_pickle(bundles):
    bundle = load_bundle(bundles["mixed"], threads=1)
    assert [t.name for t in bundle.tiers] == ["tier1", "tier2"] and not bundle._tier_models
    route_logits(bundle, ["检测报告代办 当天出", "纯棉T恤"], "auto", 8)
    assert bundle._tier_models
    copy = pickle.loads(pickle.dumps(bundle))
    assert copy._tier_models == {} and copy._session is None
    assert np.array_equal(route_logits(copy, ["检测报告代办"], "tier2", 8)[0], route_logits(bundle, ["检测报告代办"], "tier2", 8)[0])


def test_a_route_the_bundle_lacks_is_a_usage_error(tiny_bundle, tmp_path):
    with pytest.raises(UsageError, match="has no tier 'tier1'"):
        route_logits(load_bundle(tiny_bundle, threads=1), ["x"], "tier1", 8)
    src = write_jsonl(tmp_path / "in.jsonl", corpus_rows(2))
    res = subprocess.run([str(SCRIPT), "score", str(src), "--output", str(tmp_path / "o.parquet"), "--model", str(tiny_bundle),
                          "--route", "tier2", "--quiet"], capture_output=True, text=True)
    assert res.returncode == 2 and "--route tier2" in res.stderr and not (tmp_path / "o.parquet").exists()


# --- routing --------------------------------------------------------------------------------

def test_route_teacher_is_the_teachers_numbers_bit_for_bit(bundles, tiny_bundle):
    texts = model_texts(60)
    plain = load_bundle(tiny_bundle, threads=1)
    logits, truncated, tier = route_logits(load_bundle(bundles["mixed"], threads=1), texts, "teacher", 16)
    expected, expected_truncated = plain.calibrated_logits(texts, 16)
    assert logits.dtype == np.float32 and np.array_equal(logits, expected) and truncated == expected_truncated
    assert (tier == 2).all()


def test_the_cascade_settles_each_text_where_no_cut_is_near(bundles):
    bundle = load_bundle(bundles["mixed"], threads=1)
    texts = model_texts(120)
    routed = route_texts(bundle, texts, "auto", 16)
    tier1 = route_logits(bundle, texts, "tier1", 16)[0]
    assert np.array_equal(routed.scored[0][1], tier1)  # tier 1 reads every text
    settled1 = routed.tier == 0
    assert np.array_equal(routed.logits[settled1], tier1[settled1])
    assert np.array_equal(settled1, distance_to_cuts(bundle, tier1) >= bundle.tiers[0].margin[0])
    tier2 = route_logits(bundle, texts, "tier2", 16)[0]
    settled2 = routed.tier == 1
    assert np.allclose(routed.logits[settled2], tier2[settled2], atol=1e-5)
    teacher = route_logits(bundle, texts, "teacher", 16)[0]
    assert np.allclose(routed.logits[routed.tier == 2], teacher[routed.tier == 2], atol=1e-5)


def test_a_bundle_whose_gate_failed_scores_auto_with_the_teacher(bundles, tiny_bundle, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", corpus_rows(40))
    manifest = score([str(src)], tmp_path / "gf.parquet", opts(bundles["gate_failed"]))
    score([str(src)], tmp_path / "plain.parquet", opts(tiny_bundle))
    assert pq.read_table(tmp_path / "gf.parquet").equals(pq.read_table(tmp_path / "plain.parquet"))
    assert manifest["route"]["used"] == "teacher" and manifest["route"]["reason"] == "test bundle"
    assert manifest["route"]["rows_by_tier"] == {"tier1": 0, "tier2": 0, "teacher": 40}


# --- the scorer -----------------------------------------------------------------------------

def dump_rows(n: int = 150) -> list[dict]:
    """Corpus rows with reposts (the dedup cache serves them) and an id-duplicate (a reject)."""
    rows = corpus_rows(n)
    return rows + [dict(rows[(i * 7) % n], listing_id=f"re-{i}") for i in range(40)] + [dict(rows[3], title="重复编号")]


def test_route_teacher_equals_the_bundle_without_tiers_row_for_row(bundles, tiny_bundle, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", dump_rows())
    plain = score([str(src)], tmp_path / "plain.parquet", opts(tiny_bundle, chunk_size=50))
    for name in ("mixed", "huge"):
        teacher = score([str(src)], tmp_path / f"{name}-teacher.parquet", opts(bundles[name], chunk_size=50, route="teacher"))
        assert pq.read_table(tmp_path / f"{name}-teacher.parquet").equals(pq.read_table(tmp_path / "plain.parquet"))
        assert teacher["rows"] == plain["rows"] and teacher["route"]["used"] == "teacher"
    # huge margins: the cascade settles nothing before the teacher, so auto scores as the teacher;
    # only the evidence may differ, occluded through tier 1 wherever tier 1 agrees with the decision
    auto = score([str(src)], tmp_path / "huge-auto.parquet", opts(bundles["huge"], chunk_size=50))
    assert pq.read_table(tmp_path / "huge-auto.parquet").drop(["evidence"]).equals(pq.read_table(tmp_path / "plain.parquet").drop(["evidence"]))
    assert auto["route"]["used"] == "auto" and auto["route"]["rows_by_tier"]["teacher"] == auto["rows"]["accepted"]
    score([str(src)], tmp_path / "huge-none.parquet", opts(bundles["huge"], chunk_size=50, attribution="none"))
    score([str(src)], tmp_path / "plain-none.parquet", opts(tiny_bundle, chunk_size=50, attribution="none"))
    assert pq.read_table(tmp_path / "huge-none.parquet").equals(pq.read_table(tmp_path / "plain-none.parquet"))
    assert plain["route"] == {"requested": "auto", "used": "teacher", "tiers": ["teacher"], "reason": "the bundle has no student tiers",
                              "rows_by_tier": {"teacher": plain["rows"]["accepted"]}, "texts_by_tier": {"teacher": plain["rows"]["unique"]},
                              "evidence_by_tier": plain["route"]["evidence_by_tier"]}


def test_zero_margins_settle_everything_in_tier1_and_rows_reconcile(bundles, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", dump_rows())
    manifest = score([str(src)], tmp_path / "o.parquet", opts(bundles["zero"], chunk_size=50))
    rows, route = manifest["rows"], manifest["route"]
    assert rows["in"] == rows["accepted"] + rows["rejected"] and rows["rejected"] == 1
    assert route["used"] == "auto" and route["tiers"] == ["tier1", "tier2", "teacher"]
    assert route["rows_by_tier"] == {"tier1": rows["accepted"], "tier2": 0, "teacher": 0}
    assert route["texts_by_tier"] == {"tier1": rows["unique"], "tier2": 0, "teacher": 0}
    assert set(route["evidence_by_tier"]) == {"tier1", "tier2", "teacher"} and route["evidence_by_tier"]["tier2"] == 0
    assert route["evidence_by_tier"]["teacher"] == 0
    # the same rows as tier 1 alone
    alone = score([str(src)], tmp_path / "t1.parquet", opts(bundles["zero"], chunk_size=50, route="tier1"))
    assert pq.read_table(tmp_path / "o.parquet").equals(pq.read_table(tmp_path / "t1.parquet"))
    assert alone["route"]["used"] == "tier1" and alone["route"]["rows_by_tier"]["tier1"] == rows["accepted"]


def test_mixed_route_counts_reconcile_and_columns_stay(bundles, tiny_bundle, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", dump_rows())
    manifest = score([str(src)], tmp_path / "o.jsonl", opts(bundles["mixed"], chunk_size=50))
    plain = read_run(tmp_path / "o.jsonl")
    route = manifest["route"]
    assert sum(route["rows_by_tier"].values()) == manifest["rows"]["accepted"] == len(plain)
    assert sum(route["texts_by_tier"].values()) == manifest["rows"]["unique"]
    assert all(route["rows_by_tier"][t] >= route["texts_by_tier"][t] for t in route["rows_by_tier"])
    teacher = score([str(src)], tmp_path / "t.jsonl", opts(bundles["mixed"], chunk_size=50, route="teacher"))
    assert list(plain[0]) == list(read_run(tmp_path / "t.jsonl")[0])  # every output column as it is
    assert teacher["route"]["evidence_by_tier"]["tier1"] == 0


def test_occlusion_runs_through_the_cheapest_tier_that_keeps_the_decision(bundles, monkeypatch):
    """A text the teacher settled, on which tier 1 agrees, is occluded through tier 1; every
    variant of one tier goes in one call."""
    import reportguard.serve.score as scoring
    bundle = load_bundle(bundles["mixed"], threads=1)
    records = [dict(r, listing_id=str(i)) for i, r in enumerate(corpus_rows(150))]
    calls = []
    real = scoring.tier_proba

    def counting(b, index, texts, batch_size, **kw):
        calls.append((index, len(texts)))
        return real(b, index, texts, batch_size, **kw)
    monkeypatch.setattr(scoring, "tier_proba", counting)
    rows, info = score_records(records, bundle, TextCache(), ScoreOptions(min_drop=0.0))
    assert len({index for index, _ in calls}) == len(calls)  # one batched call per tier
    assert len(calls) == sum(1 for n in info["evidence_by_tier"] if n)
    assert [index for index, _ in calls] == sorted(index for index, _ in calls)
    routed = route_texts(bundle, [scoring._prepare(r)[0] for r in records], "auto", 32)
    from reportguard.serve.tiers import decision_signature, evidence_tiers
    probs = 1 / (1 + np.exp(-routed.logits))
    via, base = evidence_tiers(bundle, routed, probs)
    assert (via <= routed.tier).all() and (via < routed.tier).any()  # some evidence is cheaper than the text's score
    tier1_probs = 1 / (1 + np.exp(-routed.scored[0][1]))
    cheaper = via < routed.tier
    assert (decision_signature(tier1_probs[cheaper & (via == 0)], bundle) == decision_signature(probs[cheaper & (via == 0)], bundle)).all()
    assert np.array_equal(base[via == routed.tier], probs[via == routed.tier].astype(np.float32))


def test_under_auto_the_teachers_occlusion_variants_skip_the_fp32_fallback(tiny_bundle, tmp_path):
    """An int8 teacher with an fp32 fallback at an infinite margin re-scores every text in fp32.
    Under route teacher its occlusion variants are re-scored too (today's evidence, unchanged);
    under auto, where the huge student margins send every text to the teacher, only the texts are:
    a variant ranks a clause and decides nothing, so int8 alone scores it."""
    from test_fallback import fallback_bundle
    path = tiered(fallback_bundle(tiny_bundle, tmp_path, 1e9), tmp_path / "t", 1e6, 1e6)
    records = [dict(r, listing_id=str(i)) for i, r in enumerate(corpus_rows(80))]
    fp32_passes, evidence = {}, {}
    for route in ("teacher", "auto"):
        bundle = load_bundle(path, threads=1)
        rows, info = score_records(records, bundle, TextCache(), ScoreOptions(route=route, min_drop=0.0))
        fp32_passes[route] = bundle.fallback_rows
        evidence[route] = [r["evidence"] for r in rows]
        assert info["texts_by_tier"][-1] == info["new_texts"]  # the teacher settled every text on both routes
    new_texts = info["new_texts"]
    assert fp32_passes["auto"] == new_texts < fp32_passes["teacher"]
    assert sum(e != "[]" for e in evidence["auto"]) > 0


def test_evidence_points_into_the_original_text_on_every_route(bundles, tmp_path):
    rows = [{"listing_id": "a", "title": "【爆款】檢*測報告代辦 ＣＭＡ章", "description": "不送樣，包🔥过，當天出報告，加薇信"},
            *[dict(r, listing_id=str(i)) for i, r in enumerate(corpus_rows(60))]]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    by_id = {r["listing_id"]: r for r in rows}
    seen = 0
    for name, route in (("zero", "auto"), ("mixed", "auto"), ("mixed", "tier2")):
        out = tmp_path / f"{name}-{route}.jsonl"
        score([str(src)], out, opts(bundles[name], route=route, min_drop=0.0))
        for row in read_run(out):
            for ev in json.loads(row["evidence"]):
                assert (by_id[row["listing_id"]][ev["field"]] or "")[ev["start"]:ev["end"]] == ev["text"]
                assert ev["label"] in row["labels"]
                seen += ev["source"] == "occlusion"
    assert seen, "no occlusion evidence at all: the test would test nothing"


def test_an_interrupted_tiered_run_resumes_to_identical_output(bundles, tmp_path, monkeypatch):
    import reportguard.serve.score as scoring
    src = write_jsonl(tmp_path / "in.jsonl", dump_rows())
    reference = tmp_path / "ref.parquet"
    expected = score([str(src)], reference, opts(bundles["mixed"], chunk_size=40))
    out = tmp_path / "o.parquet"
    disk_full_at_third_part(monkeypatch)
    with pytest.raises(scoring.ScoreError):
        score([str(src)], out, opts(bundles["mixed"], chunk_size=40))
    monkeypatch.undo()
    assert "_tier" in pq.read_schema(Path(f"{out}.parts") / "chunk-000000.parquet").names
    manifest = score([str(src)], out, opts(bundles["mixed"], chunk_size=40))
    assert manifest["resumed_chunks"] == 2
    assert pq.read_table(out).equals(pq.read_table(reference))
    for what in ("rows_by_tier", "texts_by_tier", "evidence_by_tier"):
        assert manifest["route"][what] == expected["route"][what]


def test_another_route_starts_over_and_says_so(bundles, tmp_path, monkeypatch, capsys):
    import reportguard.serve.score as scoring
    src = write_jsonl(tmp_path / "in.jsonl", dump_rows(60))
    out = tmp_path / "o.parquet"
    real = scoring._score_chunk
    calls = {"n": 0}

    def dies(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kw)
    monkeypatch.setattr(scoring, "_score_chunk", dies)
    with pytest.raises(KeyboardInterrupt):
        score([str(src)], out, opts(bundles["mixed"], chunk_size=30))
    monkeypatch.setattr(scoring, "_score_chunk", real)
    capsys.readouterr()
    manifest = score([str(src)], out, opts(bundles["mixed"], chunk_size=30, route="teacher"))
    said = capsys.readouterr().out
    assert "another --route (auto; now teacher)" in said and "starting over" in said
    assert manifest["resumed_chunks"] == 0 and manifest["route"]["used"] == "teacher"


def test_spilled_caches_keep_the_tier(bundles, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", dump_rows(120))
    a = score([str(src)], tmp_path / "a.parquet", opts(bundles["mixed"], chunk_size=30))
    b = score([str(src)], tmp_path / "b.parquet", opts(bundles["mixed"], chunk_size=30, memory_texts=7))
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))
    assert a["route"]["rows_by_tier"] == b["route"]["rows_by_tier"]


def test_kill_minus_9_then_rerun_equals_an_uninterrupted_tiered_run(bundles, tmp_path):
    rows = corpus_rows()
    many = [dict(r, listing_id=f"{r['listing_id']}-{k}", title=f"{r['title']} {k}") for k in range(3) for r in rows]
    src = write_jsonl(tmp_path / "in.jsonl", many)
    args = [str(SCRIPT), "score", str(src), "--model", str(bundles["mixed"]), "--chunk-size", "150", "--threads", "1", "--quiet"]
    reference = tmp_path / "ref.parquet"
    subprocess.run(args + ["--output", str(reference)], check=True, capture_output=True)
    out = tmp_path / "out.parquet"
    assert kill_after_chunks(args, out, 2) >= 2 and not out.exists(), "the kill must land mid-run"
    res = subprocess.run(args + ["--output", str(out)], check=True, capture_output=True, text=True)
    assert "resuming" in res.stdout
    assert pq.read_table(out).equals(pq.read_table(reference))
    manifest = json.loads(Path(f"{out}.manifest.json").read_text(encoding="utf-8"))
    expected = json.loads(Path(f"{reference}.manifest.json").read_text(encoding="utf-8"))
    assert manifest["route"]["rows_by_tier"] == expected["route"]["rows_by_tier"]
    assert min(manifest["route"]["rows_by_tier"].values()) > 0
