"""`reportguard bench int8` on a tiny bundle: every variant measured, numbers in range, report written."""
import json

from reportguard.train.bench.int8 import CLASSES, run


def test_int8_study_measures_every_variant(tiny_bundle, tmp_path):
    summary = run(tiny_bundle, tmp_path, threads=1)
    variants = summary["variants"]
    assert {f"only_{c}" for c in CLASSES} | {"all_but_ffn2", "all (qint8_per_channel)"} <= set(variants)
    for name, r in variants.items():
        if name == "fp32" or "skipped" in r:
            continue
        assert 0.0 <= r["mean_abs_logit_error"] <= r["p99_abs_logit_error"] + 1e-6 <= r["max_abs_logit_error"] + 2e-6
        assert 0.0 <= r["label_set_agreement"] <= 1.0 and r["speed_vs_fp32"] > 0
    # Quantising every matmul perturbs the logits; it is not the fp32 graph under another name.
    assert variants["all (qint8_per_channel)"]["max_abs_logit_error"] > 0
    # Every matmul class of the fused graph was found, and its outlier ratio is >= 1 by definition.
    assert set(summary["activation_outliers"]) == set(CLASSES)
    assert all(r["median_over_layers"] >= 1.0 for r in summary["activation_outliers"].values())
    assert json.loads((tmp_path / "int8_study.json").read_text())["rows"] == summary["rows"]
    assert "| only_ffn2 |" in (tmp_path / "int8_study.md").read_text()
