"""Calibration and thresholds, fitted on validation only.

- Temperature scaling per label: p = sigmoid(logit / T), T minimising validation BCE. It changes
  probabilities, never the ranking, so PR-AUC is unaffected.
- A flag threshold per label on the calibrated probability: the F1-maximising one, or the lowest
  reaching a target precision; then raised, where needed, until no more than
  `max_ordinary_rate[label]` of the ordinary listings in validation carry the label. A real export
  is >99% ordinary goods, so a cut chosen on the labelled rows alone floods reviewers.
- A block threshold for the violation labels (report_sale, false_ad): the lowest probability at
  which validation precision reaches `block_precision` *at a realistic prevalence*: ordinary
  listings are weighted so that positives make up `block_prevalence` of the weighted rows. That
  puts block above the flag cut wherever ordinary listings score near it, which opens a review
  band between the two. Below block but above flag, a listing goes to review.
"""
from __future__ import annotations

import numpy as np

from reportguard.core.calibration import sigmoid  # noqa: F401  (the project's one sigmoid; importable from here)
from reportguard.core.labels import FALSE_AD, MODEL_LABELS, REPORT_SALE

from .config import ThresholdsConfig, section
from .metrics import best_f1_threshold


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises binary cross-entropy (bounded 1-D search)."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        p = np.clip(sigmoid(logits / np.exp(log_t)), 1e-7, 1 - 1e-7)
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def threshold_for_precision(y: np.ndarray, scores: np.ndarray, precision: float,
                            sample_weight: np.ndarray | None = None) -> float | None:
    """Lowest threshold whose (weighted) precision on (y, scores) is at least `precision` and stays
    so for every higher threshold; None if none is."""
    from sklearn.metrics import precision_recall_curve

    p, _, thresholds = precision_recall_curve(y, scores, sample_weight=sample_weight)
    bad = np.where(p[:-1] < precision)[0]
    start = bad[-1] + 1 if len(bad) else 0
    return float(thresholds[start]) if start < len(thresholds) else None


def ordinary_cut(scores: np.ndarray, max_rate: float) -> float:
    """The lowest cut that leaves at most `max_rate` of these (ordinary) scores at or above it:
    just above the (k+1)-th highest score, k = floor(max_rate * n). The 1e-6 step survives the
    float32 the scorer compares in.

    >>> round(ordinary_cut(np.array([0.1, 0.2, 0.9, 0.3]), 0.25), 6)
    0.300001
    >>> ordinary_cut(np.array([0.1, 0.2]), 1.0)
    0.0
    """
    allowed = int(np.floor(max_rate * len(scores) + 1e-9))
    if allowed >= len(scores):
        return 0.0
    return float(min(0.999999, np.sort(scores)[::-1][allowed] + 1e-6))  # a flag cut must stay below 1


def calibrate(val_logits: np.ndarray, val_labels: np.ndarray, thresholds: ThresholdsConfig,
              ordinary: np.ndarray | None = None) -> dict:
    """Temperatures, flag thresholds and block thresholds, as stored in bundle.json, by the
    config's `thresholds` section (a whole config works too).

    `ordinary` marks the validation rows that are ordinary listings (data/background): they bound
    the flag cuts and weight the block cuts to a realistic prevalence."""
    cfg = section(thresholds, "thresholds")
    ordinary = np.zeros(len(val_labels), dtype=bool) if ordinary is None else np.asarray(ordinary, dtype=bool)
    temperature, thresholds, block, ordinary_rate = {}, {}, {}, {}
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
        limit = (cfg.get("max_ordinary_rate") or {}).get(name)
        if ordinary.any() and limit is not None:
            thresholds[name] = max(thresholds[name], ordinary_cut(probs[ordinary], limit))
            ordinary_rate[name] = float((probs[ordinary] >= thresholds[name]).mean())
        if name in (REPORT_SALE.name, FALSE_AD.name):
            weight = _prevalence_weights(y, ordinary, cfg.get("block_prevalence"))
            thr = threshold_for_precision(y, probs, cfg["block_precision"], weight)
            # never block below the flag threshold; if no threshold is precise enough, block nothing
            block[name] = max(thr, thresholds[name]) if thr is not None else 1.01
    out = {"temperature": temperature, "thresholds": thresholds, "decision": {"block": block}}
    if ordinary_rate:
        out["validation_ordinary_rate"] = ordinary_rate
    return out


def _prevalence_weights(y: np.ndarray, ordinary: np.ndarray, prevalence: float | None) -> np.ndarray | None:
    """Weights that make the positives `prevalence` of the weighted rows, by up-weighting the
    ordinary listings (labelled negatives keep weight 1); None without ordinary rows."""
    if not prevalence or not ordinary.any() or not y.any():
        return None
    weight = np.ones(len(y))
    weight[ordinary] = y.sum() * (1 - prevalence) / (prevalence * ordinary.sum())
    return weight


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
