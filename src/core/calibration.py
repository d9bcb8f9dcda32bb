"""Calibrated probabilities and decision cuts: the one temperature sigmoid of the project.

A bundle stores, per model label, a temperature T and thresholds on the calibrated probability
p = sigmoid(logit / T). Training fits them (src/train/calibrate.py), the export gate compares
graphs with them, and the scorer applies them (src/serve/bundle.py); all three call this module.

>>> float(sigmoid(np.array(0.0)))
0.5
>>> calibrated(np.array([[2.0, -2.0]]), np.array([2.0, 1.0])).round(4).tolist()
[[0.7311, 0.1192]]
"""
from __future__ import annotations

import numpy as np

from .labels import MODEL_LABELS


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def calibrated(logits: np.ndarray, temperature: np.ndarray) -> np.ndarray:
    """p = sigmoid(logit / T), per label (columns in MODEL_LABELS order)."""
    return sigmoid(logits / temperature)


def label_array(values: dict[str, float]) -> np.ndarray:
    """A {label: value} mapping as an array in MODEL_LABELS order (never in the dict's own order).

    >>> label_array({"testing_service": 3.0, "report_sale": 1.0, "false_ad": 2.0}).tolist()
    [1.0, 2.0, 3.0]
    """
    return np.array([values[x] for x in MODEL_LABELS])


def label_sets(logits: np.ndarray, calibration: dict) -> np.ndarray:
    """Flagged labels (int8 0/1 per row and label) under a calibration's temperatures and
    thresholds (bundle.json's `temperature` and `thresholds`)."""
    probs = calibrated(logits, label_array(calibration["temperature"]))
    return (probs >= label_array(calibration["thresholds"])).astype(np.int8)


def decision_cuts(thresholds: dict[str, float], block: dict[str, float]) -> list[np.ndarray]:
    """Per model label, the calibrated logits at which a decision changes: the flag threshold and,
    for violation labels, the block threshold. Shared by the scorer and the export gate."""
    def logit(p: float) -> float:
        return float(np.log(p / (1.0 - p)))
    # A block threshold >= 1 blocks nothing: it is no cut.
    return [np.array(sorted({logit(thresholds[x])} | ({logit(block[x])} if x in block and 0.0 < block[x] < 1.0 else set())))
            for x in MODEL_LABELS]


def near_a_cut(calibrated_logits: np.ndarray, cuts: list[np.ndarray], margin: np.ndarray) -> np.ndarray:
    """Rows with any label's calibrated logit closer than that label's margin to one of its cuts."""
    near = np.zeros(len(calibrated_logits), dtype=bool)
    for j, label_cuts in enumerate(cuts):
        near |= (np.abs(calibrated_logits[:, j, None] - label_cuts[None, :]) < margin[j]).any(axis=1)
    return near
