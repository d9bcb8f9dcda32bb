"""Calibration and thresholds, fitted on validation only.

- Temperature scaling per label: p = sigmoid(logit / T), T minimising validation BCE. It changes
  probabilities, never the ranking, so PR-AUC is unaffected.
- A flag threshold per label on the calibrated probability: the F1-maximising one, or the lowest
  reaching a target precision.
- A block threshold for the violation labels (report_sale, false_ad): the lowest probability at
  which validation precision reaches `block_precision`. Below it but above the flag threshold, a
  listing goes to review.
"""
from __future__ import annotations

import numpy as np

from reportguard.core.labels import FALSE_AD, MODEL_LABELS, REPORT_SALE

from .metrics import best_f1_threshold


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises binary cross-entropy (bounded 1-D search)."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        p = np.clip(sigmoid(logits / np.exp(log_t)), 1e-7, 1 - 1e-7)
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def threshold_for_precision(y: np.ndarray, scores: np.ndarray, precision: float) -> float | None:
    """Lowest threshold whose precision on (y, scores) is at least `precision`; None if none is."""
    from sklearn.metrics import precision_recall_curve

    p, _, thresholds = precision_recall_curve(y, scores)
    ok = np.where(p[:-1] >= precision)[0]
    return float(thresholds[ok[0]]) if len(ok) else None


def calibrate(val_logits: np.ndarray, val_labels: np.ndarray, config: dict) -> dict:
    """Temperatures, flag thresholds and block thresholds, as stored in bundle.json."""
    cfg = config["thresholds"]
    temperature, thresholds, block = {}, {}, {}
    for k, name in enumerate(MODEL_LABELS):
        y = val_labels[:, k]
        t = fit_temperature(val_logits[:, k], y)
        probs = sigmoid(val_logits[:, k] / t)
        temperature[name] = t
        if cfg["strategy"] == "target_precision":
            thr = threshold_for_precision(y, probs, cfg["target_precision"])
            thresholds[name] = thr if thr is not None else best_f1_threshold(y, probs)
        else:
            thresholds[name] = best_f1_threshold(y, probs)
        if name in (REPORT_SALE.name, FALSE_AD.name):
            thr = threshold_for_precision(y, probs, cfg["block_precision"])
            # never block below the flag threshold; if no threshold is precise enough, block nothing
            block[name] = max(thr, thresholds[name]) if thr is not None else 1.01
    return {"temperature": temperature, "thresholds": thresholds, "decision": {"block": block}}


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted, observed frequency, count) per probability bin."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probs, edges) - 1, 0, bins - 1)
    mean_p = np.array([probs[which == b].mean() if (which == b).any() else np.nan for b in range(bins)])
    freq = np.array([labels[which == b].mean() if (which == b).any() else np.nan for b in range(bins)])
    count = np.array([(which == b).sum() for b in range(bins)])
    return mean_p, freq, count


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    mean_p, freq, count = reliability(probs, labels, bins)
    ok = count > 0
    return float(np.sum(count[ok] * np.abs(mean_p[ok] - freq[ok])) / max(count.sum(), 1))
