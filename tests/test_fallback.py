"""int8 with an fp32 fallback near the thresholds (Bundle.predict_proba): the scorer re-scores
exactly the listings the margin says, the result equals fp32 where it falls back, and the
fallback model is held to the same hash checks as the rest of the bundle. Bundles edited here are
re-sealed (serve/bundle.py: an edited bundle.json refuses to load otherwise)."""
import json
import shutil

import numpy as np
import pytest

from reportguard.core.labels import MODEL_LABELS
from reportguard.serve.bundle import BundleError, load_bundle, seal_bundle, sha256_file
from reportguard.train.export import quantize

TEXTS = ["不送样检测，一天出报告，包过", "CMA资质实验室，送样检测，周期7个工作日", "纯棉T恤 夏季新款", "代办质检报告 加急 可加盖公章",
         "检测报告 不过全额退款", "食品检测 出具CMA报告 需寄送样品", "保健品 三天见效 根治失眠", "手机壳 硅胶 防摔"] * 4


def fallback_bundle(tiny_bundle, tmp_path, margin: float):
    """A copy of the tiny bundle shipping int8 with an fp32 fallback at `margin` for every label."""
    out = tmp_path / f"fb-{margin}"
    shutil.copytree(tiny_bundle, out)
    meta = json.loads((out / "bundle.json").read_text())
    if meta["precision"] == "fp32":
        shutil.copyfile(out / "model.onnx", out / "model_fp32.onnx")
        quantize(out / "model_fp32.onnx", out / "model.onnx", "qint8_per_channel")
    meta["precision"] = "qint8_per_channel+fp32_fallback"
    meta["fallback"] = {"file": "model_fp32.onnx", "margin": {x: margin for x in MODEL_LABELS}}
    meta["files"] = {name: sha256_file(out / name) for name in ("model.onnx", "tokenizer.json", "model_fp32.onnx")}
    (out / "bundle.json").write_text(json.dumps(meta))
    seal_bundle(out)
    return out


def fp32_only(path, tmp_path):
    """The same bundle's fp32 graph as a plain fp32 bundle."""
    out = tmp_path / "fp32"
    shutil.copytree(path, out)
    meta = json.loads((out / "bundle.json").read_text())
    shutil.copyfile(out / "model_fp32.onnx", out / "model.onnx")
    meta.pop("fallback")
    meta["precision"] = "fp32"
    meta["files"] = {name: sha256_file(out / name) for name in ("model.onnx", "tokenizer.json")}
    (out / "model_fp32.onnx").unlink()
    (out / "bundle.json").write_text(json.dumps(meta))
    seal_bundle(out)
    return load_bundle(out, threads=1)


def test_an_infinite_margin_is_fp32_and_a_zero_margin_is_int8(tiny_bundle, tmp_path):
    everything = load_bundle(fallback_bundle(tiny_bundle, tmp_path, 1e9), threads=1)
    probs, _ = everything.predict_proba(TEXTS)
    assert everything.fallback_rows == len(TEXTS)
    np.testing.assert_allclose(probs, fp32_only(everything.path, tmp_path).predict_proba(TEXTS)[0], atol=1e-6)

    nothing = load_bundle(fallback_bundle(tiny_bundle, tmp_path, 0.0), threads=1)
    ids, _ = nothing.encode(TEXTS)
    int8 = nothing.calibrate(np.concatenate([nothing.logits([x]) for x in ids]))
    np.testing.assert_allclose(nothing.predict_proba(TEXTS, batch_size=1)[0], int8, atol=1e-6)
    assert nothing.fallback_rows == 0


def test_exactly_the_listings_near_a_threshold_are_rescored(tiny_bundle, tmp_path):
    bundle = load_bundle(fallback_bundle(tiny_bundle, tmp_path, 0.5), threads=1)
    ids, _ = bundle.encode(TEXTS)
    int8 = np.concatenate([bundle.logits([x]) for x in ids])
    fp32 = np.concatenate([bundle.logits([x], bundle.fallback_session) for x in ids])
    z = int8 / bundle.temperature
    near = np.zeros(len(z), dtype=bool)
    for j, cuts in enumerate(bundle.cuts()):
        for c in cuts:
            near |= np.abs(z[:, j] - c) < 0.5
    probs, _ = bundle.predict_proba(TEXTS, batch_size=1)
    assert bundle.fallback_rows == int(near.sum())
    np.testing.assert_allclose(probs, bundle.calibrate(np.where(near[:, None], fp32, int8)), atol=1e-6)


def test_the_fallback_model_is_hash_checked(tiny_bundle, tmp_path):
    path = fallback_bundle(tiny_bundle, tmp_path, 0.5)
    with open(path / "model_fp32.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="model_fp32.onnx: SHA-256 differs"):
        load_bundle(path)
    meta = json.loads((path / "bundle.json").read_text())
    del meta["files"]["model_fp32.onnx"]
    (path / "bundle.json").write_text(json.dumps(meta))
    seal_bundle(path)
    with pytest.raises(BundleError, match="fallback model 'model_fp32.onnx' has no hash"):
        load_bundle(path)


def test_training_gates_every_int8_flavour_with_and_without_fallback(tiny_bundle):
    export = json.loads((tiny_bundle / "metrics.json").read_text())["export"]
    plain = [n for n in export if n != "fp32" and "+" not in n]
    assert "qint8_per_channel_fp32_ffn2" in plain
    for name in plain:
        r = export[f"{name}+fp32_fallback"]
        assert set(r["margin"]) == set(MODEL_LABELS) and all(m >= 0 for m in r["margin"].values())
        # Sized on validation: no validation listing can change decision.
        assert r["validation"]["label_set_agreement"] == pytest.approx(export["fp32"]["validation"]["label_set_agreement"])
        assert 0.0 <= r["fallback_share"]["test"] <= 1.0


def test_the_gate_ships_the_fastest_variant_that_passes_and_nothing_slower_than_fp32():
    from reportguard.train.export import choose_precision

    def variant(f1, agreement, seconds, estimated=None):
        r = {"test": {"macro_f1": f1, "label_set_agreement": agreement}, "validation": {"label_set_agreement": agreement},
             "test_seconds": seconds}
        return r | ({"estimated_test_seconds": estimated, "fallback_share": {"test": 0.1}} if estimated else {})
    config = {"export": {"max_f1_drop": 0.005, "min_agreement": 0.995}}
    results = {"fp32": variant(0.98, 1.0, 10.0),
               "a": variant(0.97, 0.99, 4.0),                        # fails: agreement and F1
               "a+fp32_fallback": variant(0.98, 1.0, 4.0, 5.0),      # passes, 5 s
               "b": variant(0.98, 0.999, 6.0),                       # passes, 6 s
               "c+fp32_fallback": variant(0.98, 1.0, 4.0, 10.5)}     # passes but slower than fp32
    assert choose_precision(results, 0.98, config)[0] == "a+fp32_fallback"
    del results["a+fp32_fallback"]
    assert choose_precision(results, 0.98, config)[0] == "b"
    del results["b"]
    precision, reason = choose_precision(results, 0.98, config)
    assert precision == "fp32" and "faster than fp32" in reason
