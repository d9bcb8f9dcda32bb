"""Multi-label metrics shared by the baselines and the model's evaluation."""
from __future__ import annotations

import numpy as np

from reportguard.core.labels import MODEL_LABELS
from reportguard.core.tfidf import best_f1_threshold  # noqa: F401  (core's; importable from here as before)


def to_matrix(label_lists: list[list[str]]) -> np.ndarray:
    """Rows of label names -> a 0/1 matrix with one column per model label."""
    return np.array([[name in labels for name in MODEL_LABELS] for labels in label_lists], dtype=np.int8)


def per_label(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray | None = None) -> dict:
    """precision, recall, F1 (and PR-AUC with scores) per label, plus macro-F1 over the model labels."""
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support

    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0,
                                                       labels=list(range(len(MODEL_LABELS))))
    out: dict = {}
    for k, name in enumerate(MODEL_LABELS):
        out[name] = {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(support[k])}
        if scores is not None and y_true[:, k].any():
            out[name]["pr_auc"] = float(average_precision_score(y_true[:, k], scores[:, k]))
    out["macro_f1"] = float(np.mean(f))
    return out


def slice_metrics(rows: list[dict], y_true: np.ndarray, y_pred: np.ndarray, tags: tuple[str, ...]) -> dict:
    """Per slice tag: exact label-set match, false-alarm rate, and macro-F1 over the labels that
    occur in the slice (None when none does: an all-clean slice has no F1, only false alarms)."""
    from sklearn.metrics import f1_score

    out = {}
    for tag in tags:
        idx = [i for i, r in enumerate(rows) if tag in r.get("tags", [])]
        if not idx:
            continue
        t, p = y_true[idx], y_pred[idx]
        present = [k for k in range(t.shape[1]) if t[:, k].any()]
        out[tag] = {"rows": len(idx),
                    "exact_match": float((t == p).all(axis=1).mean()),
                    "false_alarm_rate": float(((p == 1) & (t == 0)).any(axis=1).mean()),
                    "macro_f1": float(f1_score(t[:, present], p[:, present], average="macro", zero_division=0)) if present else None}
    return out
