"""The export gate: which of the exported graphs ships, checked against PyTorch.

Every graph export.py made (fused fp32 and the int8 flavours) scores validation and test; each
int8 graph is also scored with an fp32 fallback (listings whose int8 score lies within the
largest int8 error seen on validation of a decision threshold are re-scored in fp32, as
`Bundle.predict_proba` does). Among the variants that lose at most `export.max_f1_drop` test
macro-F1 and agree with PyTorch on at least `export.min_agreement` of label sets (validation and
test), the fastest ships, if it is faster than fp32; otherwise fp32, with the reason. The fused
fp32 graph itself must agree with PyTorch, or training stops.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reportguard.core.calibration import calibrated, decision_cuts, label_array, label_sets, near_a_cut
from reportguard.core.encoding import Encoded, pool_max
from reportguard.core.labels import MODEL_LABELS

from .config import ExportConfig, section
from .metrics import per_label

SPLITS = ("validation", "test")
FALLBACK_RULE = ("re-score in fp32 when a calibrated int8 logit is within the margin of a flag or block threshold; "
                 "margin = largest int8 error on validation")


@dataclass
class GateResult:
    precision: str  # the variant that ships: "fp32", an int8 flavour, or "<flavour>+fp32_fallback"
    reason: str
    results: dict  # per variant: agreement with PyTorch, macro-F1, seconds (summary["export"], metrics.json)
    graph: Path  # the ONNX file of the shipped variant (its int8 graph for a fallback variant)
    fallback: dict | None  # bundle.json's `fallback` section, for a fallback variant


def run_gate(graphs: dict[str, Path], torch_logits: dict[str, np.ndarray], labels: dict[str, np.ndarray],
             encoded: dict[str, Encoded], calibration: dict, export: ExportConfig, pad_id: int, threads: int) -> GateResult:
    """Score every graph on validation and test, add the fallback variants, check the fused fp32
    graph, and choose what ships (see the module docstring)."""
    results, logits = score_graphs(graphs, torch_logits, labels, encoded, calibration, pad_id, threads)
    for name in [n for n in graphs if n != "fp32"]:
        results[f"{name}+fp32_fallback"] = with_fallback(name, logits, results, torch_logits, labels, calibration)
    cfg = section(export, "export")
    if results["fp32"]["test"]["label_set_agreement"] < cfg["min_agreement"]:
        raise RuntimeError(f"fused fp32 ONNX disagrees with PyTorch: {results['fp32']['test']}")
    reference_f1 = per_label(labels["test"], label_sets(torch_logits["test"], calibration))["macro_f1"]
    precision, reason = choose_precision(results, reference_f1, cfg)
    print(f"shipping {precision}: {reason}", flush=True)
    graph, _, with_fallback_pass = precision.partition("+")
    fallback = {"file": "model_fp32.onnx", "margin": results[precision]["margin"], "rule": FALLBACK_RULE} if with_fallback_pass else None
    return GateResult(precision, reason, results, graphs[graph], fallback)


def score_graphs(graphs: dict[str, Path], torch_logits: dict, labels: dict, encoded: dict, calibration: dict,
                 pad_id: int, threads: int) -> tuple[dict, dict]:
    """Per graph: its per-listing logits on each split (every window scored, the maximum kept, as
    the scorer does) compared with PyTorch's; and those logits."""
    from .export import onnx_logits
    results, logits = {}, {}
    for name, path in graphs.items():
        result = {"file_mb": round(path.stat().st_size / 2**20, 1)}
        logits[name] = {}
        for split in SPLITS:
            window_logits, seconds = onnx_logits(path, encoded[split].ids, pad_id, threads=threads)
            logits[name][split] = pool_max(window_logits, encoded[split].owner, len(encoded[split].truncated))
            result[split] = compare(torch_logits[split], logits[name][split], labels[split], calibration)
            result[f"{split}_seconds"] = seconds
        results[name] = result
        print(f"{name}: test macro-F1 {result['test']['macro_f1']:.4f}, agreement {result['test']['label_set_agreement']:.4f}, "
              f"max prob diff {result['test']['max_abs_prob_diff']:.4f}, {result['file_mb']} MB", flush=True)
    return results, logits


def with_fallback(name: str, logits: dict, results: dict, torch_logits: dict, labels: dict, calibration: dict) -> dict:
    """The int8 graph `name` with an fp32 fallback near the thresholds. The margin comes from
    validation, so test measures it on listings it was not sized on."""
    margin = fallback_margin(logits[name]["validation"], logits["fp32"]["validation"], calibration)
    result = {"margin": dict(zip(MODEL_LABELS, map(float, margin))), "fallback_share": {}}
    for split in SPLITS:
        combined, near = fallback_logits(logits[name][split], logits["fp32"][split], margin, calibration)
        result[split] = compare(torch_logits[split], combined, labels[split], calibration)
        result["fallback_share"][split] = float(near.mean())
        result[f"{split}_seconds"] = results[name][f"{split}_seconds"]
    result["estimated_test_seconds"] = results[name]["test_seconds"] + result["fallback_share"]["test"] * results["fp32"]["test_seconds"]
    print(f"{name}+fp32_fallback: test macro-F1 {result['test']['macro_f1']:.4f}, agreement {result['test']['label_set_agreement']:.4f}, "
          f"re-scored in fp32: {result['fallback_share']['validation']:.1%} validation, {result['fallback_share']['test']:.1%} test", flush=True)
    return result


def compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray, calibration: dict) -> dict:
    """Agreement of a candidate's logits with the reference (PyTorch) and its macro-F1."""
    ref_sets, cand_sets = label_sets(reference, calibration), label_sets(candidate, calibration)
    t = label_array(calibration["temperature"])
    pr, pc = calibrated(reference, t), calibrated(candidate, t)
    return {"label_set_agreement": float((ref_sets == cand_sets).all(axis=1).mean()),
            "max_abs_prob_diff": float(np.abs(pr - pc).max()),
            "macro_f1": per_label(labels, cand_sets)["macro_f1"]}


def fallback_logits(int8: np.ndarray, fp32: np.ndarray, margin: np.ndarray, calibration: dict) -> tuple[np.ndarray, np.ndarray]:
    """What the scorer computes with an fp32 fallback (Bundle.predict_proba): int8 logits, except
    rows whose calibrated int8 logit lies within `margin` of a cut, which take the fp32 logits."""
    t = label_array(calibration["temperature"])
    near = near_a_cut(int8 / t, decision_cuts(calibration["thresholds"], calibration["decision"]["block"]), margin)
    return np.where(near[:, None], fp32, int8), near


def fallback_margin(int8_validation: np.ndarray, fp32_validation: np.ndarray, calibration: dict) -> np.ndarray:
    """Per label, the largest int8 error (calibrated logits) seen on validation: a listing whose
    int8 score is farther than this from every cut cannot change decision by that much error."""
    t = label_array(calibration["temperature"])
    return np.abs(int8_validation - fp32_validation).max(axis=0) / t


def choose_precision(results: dict, reference_f1: float, export: ExportConfig) -> tuple[str, str]:
    """(chosen variant, reason) by the int8 quality gate, under the config's `export` section (a
    whole config works too)."""
    cfg = section(export, "export")
    if not cfg.get("quantize", True):
        return "fp32", "int8 disabled in the config"
    candidates = []
    for name, r in results.items():
        if name == "fp32":
            continue
        drop = reference_f1 - r["test"]["macro_f1"]
        agreement = min(r["test"]["label_set_agreement"], r["validation"]["label_set_agreement"])
        # Time: int8's plus, for a fallback, the share of listings re-scored in fp32 times fp32's
        # (on test). A variant no faster than fp32 has no reason to ship.
        seconds = r.get("estimated_test_seconds", r["test_seconds"])
        if drop <= cfg["max_f1_drop"] and agreement >= cfg["min_agreement"] and seconds < results["fp32"]["test_seconds"]:
            candidates.append((-seconds, agreement, name))
    if not candidates:
        worst = {n: (round(reference_f1 - r["test"]["macro_f1"], 4), round(r["test"]["label_set_agreement"], 4))
                 for n, r in results.items() if n != "fp32"}
        return "fp32", (f"no int8 variant passed the gate (F1 drop <= {cfg['max_f1_drop']}, agreement >= {cfg['min_agreement']}, "
                        f"faster than fp32): {worst}")
    best = max(candidates)
    r = results[best[2]]
    extra = f", {r['fallback_share']['test']:.1%} of test listings re-scored in fp32" if "fallback_share" in r else ""
    return best[2], f"{best[2]} passed the gate with label-set agreement {best[1]:.4f}{extra}"
