"""`reportguard distill` end to end on the tiny teacher (configs/distill_tiny.yaml): a tiered
bundle that loads, routes as its gate's simulation says, and keeps the teacher's route exact."""
import json
import random
import shutil

import numpy as np
import pytest

from reportguard.core.hashed_ngrams import HashedNgramModel, load_tier1, ngram_ids, save_tier1
from reportguard.core.normalize import listing_text
from reportguard.train.distill import routing
from reportguard.train.distill.transfer import build_transfer_set, transfer_hash

ROWS = [{"title": "检测报告 当天出 不送样", "description": "包过，加微信。质检报告可加急！", "labels": ["report_sale", "false_ad"]},
        {"title": "纯棉毛巾 三条装", "description": "柔软吸水，不掉毛。全国包邮", "labels": []},
        {"title": "第三方检测机构 CMA资质", "description": "寄样检测，出具报告。周期五个工作日", "labels": ["testing_service"]}]


def test_transfer_set_is_seeded_a_prefix_and_keeps_gold_only_where_meaning_is_kept():
    small, large = build_transfer_set(ROWS, 40, seed=3), build_transfer_set(ROWS, 80, seed=3)
    assert [t.text for t in small] == [t.text for t in large[:len(small)]]  # a smaller set is a prefix
    assert transfer_hash(small) == transfer_hash(build_transfer_set(ROWS, 40, seed=3))
    assert len({t.text for t in large}) == len(large)
    assert all(t.gold is None for t in large if t.source in ("drop", "shuffle", "mask", "splice"))
    assert [t.gold for t in large[:3]] == [["report_sale", "false_ad"], [], ["testing_service"]]


def test_hashed_ngrams_round_trip_and_windows_take_the_maximum(tmp_path):
    rng = np.random.default_rng(0)
    config = {"buckets": 512, "ngram_min": 1, "ngram_max": 2, "window_chars": 8, "stride_chars": 6}
    model = HashedNgramModel(rng.normal(size=(512, 3)).astype(np.float32), np.zeros(3, np.float32), config)
    loaded = load_tier1(save_tier1(tmp_path / "tier1.npz", model), config)
    text = "毛巾" * 3 + "包过报告" + "毛巾" * 5
    assert np.allclose(loaded.logits([text]), model.logits([text]))
    windows = [text[s:s + 8] for s in (0, 6, 12)] + [text[-8:]]
    assert np.allclose(model.logits([text])[0], np.max(model.logits(windows), axis=0))
    assert (ngram_ids("包过", 512, 1, 2) < 512).all()
    with pytest.raises(ValueError, match="tier1.npz"):
        load_tier1(tmp_path / "tier1.npz", dict(config, buckets=1024))


def test_margins_keep_every_fitting_decision():
    rng = np.random.default_rng(1)
    teacher = rng.normal(scale=4, size=(500, 3))
    student = teacher + rng.normal(scale=1.5, size=teacher.shape)
    cuts = [np.array([0.0, 3.0]), np.array([1.0]), np.array([-0.5])]
    margins = routing.fit_margins(student, teacher, cuts, min_margin=0.1, slack=1.0)
    ok = routing.settled(student, cuts, margins)
    assert 0 < ok.sum() < len(ok)
    for j, label_cuts in enumerate(cuts):
        for c in label_cuts:
            assert ((student[ok, j] >= c) == (teacher[ok, j] >= c)).all()
    route, where = routing.cascade([student], teacher, cuts, [margins])
    assert (route[where == 1] == teacher[where == 1]).all() and (route[where == 0] == student[where == 0]).all()


@pytest.fixture(scope="module")
def tiered(tiny_bundle, tmp_path_factory):
    from reportguard.train.distill.config import load_distill_config
    from reportguard.train.distill.pipeline import distill
    out = tmp_path_factory.mktemp("distill")
    config = load_distill_config("configs/distill_tiny.yaml", [
        f"teacher={tiny_bundle}", f"output.models_dir={out / 'models'}", f"output.reports_dir={out / 'reports'}",
        f"transfer.cache_dir={out / 'cache'}"])
    return distill(config), out


def test_distill_writes_a_sealed_tiered_bundle_with_its_gate(tiered, tiny_bundle):
    from reportguard.serve.bundle import load_bundle
    bundle_dir, out = tiered
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    route = meta["route"]
    assert [t["name"] for t in route["tiers"]] == ["tier1", "tier2"]
    assert route["default"] in ("auto", "teacher") and route["reason"].startswith("gate ")
    assert all(t["file"] in meta["files"] for t in route["tiers"])
    assert all(np.isfinite(list(t["margin"].values())).all() for t in route["tiers"])
    assert {"validation", "test", "ordinary"} <= set(route["gate"])
    assert (out / "models" / "current").resolve() == bundle_dir.resolve()
    assert (out / "reports" / "distill" / f"{meta['model_version']}.md").exists()
    assert load_bundle(bundle_dir).model_version == meta["model_version"] != load_bundle(tiny_bundle).model_version


def test_the_gate_simulation_is_what_the_scorer_routes(tiered):
    from reportguard.serve.bundle import load_bundle
    from reportguard.serve.tiers import route_logits
    bundle = load_bundle(tiered[0])
    rows = [json.loads(x) for x in open("data/labelled/validation.jsonl", encoding="utf-8")][:120]
    texts = [listing_text(r["title"], r["description"]) for r in rows]
    tiers = bundle.meta["route"]["tiers"]
    per_tier = [route_logits(bundle, texts, t["name"], 32)[0] for t in tiers]
    teacher = route_logits(bundle, texts, "teacher", 32)[0]
    margins = [np.array(list(t["margin"].values())) for t in tiers]
    simulated, where = routing.cascade(per_tier, teacher, bundle.cuts(), margins)
    if bundle.meta["route"]["default"] == "auto":
        served, _, served_where = route_logits(bundle, texts, "auto", 32)
        assert (served_where == where).all()
        assert np.allclose(served, simulated, atol=1e-6)
    # these rows are validation rows, which the margins were fitted on: a row settled before the
    # teacher keeps the teacher's labels (the rule "no validation decision moves")
    flag = np.array([c.min() for c in bundle.cuts()])
    early = where < len(tiers)
    assert (routing.label_matrix(simulated[early], flag) == routing.label_matrix(teacher[early], flag)).all()


def test_a_tampered_student_refuses_to_load(tiered, tmp_path):
    from reportguard.serve.bundle import BundleError, load_bundle
    copy = tmp_path / "bundle"
    shutil.copytree(tiered[0], copy)
    data = bytearray((copy / "tier1.npz").read_bytes())
    data[random.Random(0).randrange(100, len(data) - 100)] ^= 0xFF
    (copy / "tier1.npz").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="tier1.npz"):
        load_bundle(copy)


def test_refit_fits_the_margins_again_gates_and_reseals(tiered):
    from reportguard.serve.bundle import load_bundle
    from reportguard.train.distill.config import load_distill_config
    from reportguard.train.distill.pipeline import refit
    bundle_dir, out = tiered
    before = json.loads((bundle_dir / "bundle.json").read_text())
    config = load_distill_config("configs/distill_tiny.yaml", [
        f"output.models_dir={out / 'models'}", f"output.reports_dir={out / 'reports'}", "routing.min_margin=0.5"])
    assert refit(bundle_dir, config) == bundle_dir.resolve()
    after = json.loads((bundle_dir / "bundle.json").read_text())
    assert after["route"]["fitted_on"].startswith("validation (") and "held-out" not in after["route"]["fitted_on"]
    assert all(m >= 0.5 for t in after["route"]["tiers"] for m in t["margin"].values())
    assert after["content_sha256"] != before["content_sha256"] and after["files"] == before["files"]
    assert load_bundle(bundle_dir).model_version == before["model_version"]


def test_weighting_misses_up_makes_tier1_err_on_the_side_of_sending_texts_on():
    """`under_weight` > 1: the student's errors lean above the teacher (a text goes on to the next
    tier) rather than below it (a violation settled as clean), which is what sets the margin."""
    from reportguard.train.distill.tier1 import Tier1Config, train_tier1
    rng = random.Random(0)
    chars = "检测报告包过不送样毛巾纯棉加急出具资质第三方微信下单"
    texts = ["".join(rng.choice(chars) for _ in range(rng.randint(4, 20))) for _ in range(300)]
    target = np.random.default_rng(0).normal(scale=3, size=(300, 3)).astype(np.float32)  # noise: nothing fits it exactly
    gold = [None] * len(texts)

    def residual(weight):
        cfg = Tier1Config(buckets=256, epochs=6, batch_size=32, learning_rate=0.05, gold_weight=0.0, under_weight=weight, threads=1)
        return train_tier1(texts, target, gold, cfg).logits(texts) - target
    plain, leaning = residual(1.0), residual(8.0)
    assert (leaning < 0).mean() < (plain < 0).mean() - 0.1
    assert np.abs(leaning[leaning < 0]).max() < np.abs(plain[plain < 0]).max()


def test_students_are_reused_only_from_a_bundle_of_the_same_teacher(tiered, tiny_bundle, tmp_path):
    from reportguard.serve.bundle import load_bundle
    from reportguard.train.distill.pipeline import _reuse_tier2, _student_of
    bundle_dir, _ = tiered
    assert _student_of(bundle_dir, tiny_bundle, "hashed_ngrams")[1]["file"] == "tier1.npz"
    info = _reuse_tier2(bundle_dir, tiny_bundle, tmp_path)
    assert info["reused_from"] == load_bundle(bundle_dir).model_version
    assert (tmp_path / info["file"]).read_bytes() == (bundle_dir / info["file"]).read_bytes()
    other = tmp_path / "other"
    shutil.copytree(bundle_dir, other)
    meta = json.loads((other / "bundle.json").read_text())
    meta["route"]["teacher_version"] = "someone-else"
    from reportguard.core.bundle_format import dump, seal
    (other / "bundle.json").write_text(dump(seal({k: v for k, v in meta.items() if k != "content_sha256"}, other)))
    with pytest.raises(ValueError, match="someone-else"):
        _reuse_tier2(other, tiny_bundle, tmp_path / "x")


def test_a_tiered_bundle_logged_as_pyfunc_carries_its_students(tiered):
    from reportguard.serve.pyfunc import scorer_files
    bundle_dir, _ = tiered
    files = scorer_files(bundle_dir)
    assert {"bundle.json", "model.onnx", "tokenizer.json", "tier1.npz", "tier2.onnx"} <= set(files)
    assert not any(f.startswith("hf/") for f in files)
