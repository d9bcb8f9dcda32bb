"""Routing cuts for the tiers, and the gate that decides whether the route ships.

A tier *settles* a listing when none of its labels' calibrated logits lies within the tier's
margin of a decision cut (flag or block; core.calibration.near_a_cut), so the tier's side of
every cut is taken as the teacher's; anything else goes on to the next tier, and the teacher
settles the rest.

`fit_margins` applies the issue's rule, "no validation decision moves against the teacher-only
route": per label, the margin is just above the largest distance from a cut at which the tier
still put a fitting row on the other side of that cut from the teacher. A row settled under such
margins has, for every label and cut, the teacher's side, hence the teacher's labels and
decision. Fitting rows are validation (the corpus's and the ordinary listings') plus a held-out
slice of the transfer set that no student trained on: more rows can only widen a margin, so the
rule still holds on validation alone; `min_margin` is a floor for labels with no disagreement.

`cascade` simulates the route in numpy on precomputed logits (the serve side, serve/tiers.py,
runs the same rule on live texts; tests/test_route.py ties the two together). `gate` compares
route and teacher-only on every evaluation set: macro-F1 at most `max_f1_drop` below on the
label sets, no more ordinary-listing false alarms, and fewer teacher calls (the route is
faster); otherwise the bundle ships teacher-only, with the reason.
"""
from __future__ import annotations

import numpy as np

from reportguard.core.calibration import near_a_cut
from reportguard.core.labels import MODEL_LABELS

VIOLATIONS = [MODEL_LABELS.index(x) for x in ("report_sale", "false_ad")]


def flag_cuts(cuts: list[np.ndarray]) -> np.ndarray:
    """Per label, the flag cut: the lowest of its cuts (a block cut is never below the flag cut)."""
    return np.array([c.min() for c in cuts])


def moved(a: np.ndarray, b: np.ndarray, cuts: list[np.ndarray]) -> np.ndarray:
    """Rows on another side of any label's cut in `a` than in `b`: a label set or decision that moved."""
    out = np.zeros(len(a), dtype=bool)
    for j, label_cuts in enumerate(cuts):
        for c in label_cuts:
            out |= (a[:, j] >= c) != (b[:, j] >= c)
    return out


def fit_margins(tier: np.ndarray, teacher: np.ndarray, cuts: list[np.ndarray], min_margin: float = 0.25,
                slack: float = 1.1) -> np.ndarray:
    """Per label, the smallest margin (times `slack`, at least `min_margin`) under which no row
    settled by the tier is on another side of any cut than the teacher.

    >>> cuts = [np.array([0.0])]
    >>> fit_margins(np.array([[0.5], [-2.0]]), np.array([[-0.1], [-3.0]]), cuts, min_margin=0.1, slack=1.0).round(3).tolist()
    [0.5]
    """
    margins = np.full(len(cuts), float(min_margin))
    for j, label_cuts in enumerate(cuts):
        for c in label_cuts:
            wrong = (tier[:, j] >= c) != (teacher[:, j] >= c)
            if wrong.any():
                margins[j] = max(margins[j], float(np.abs(tier[wrong, j] - c).max()) * slack + 1e-6)
    return margins


def settled(logits: np.ndarray, cuts: list[np.ndarray], margin: np.ndarray) -> np.ndarray:
    return ~near_a_cut(logits, cuts, margin)


def cascade(tier_logits: list[np.ndarray], teacher: np.ndarray, cuts: list[np.ndarray],
            margins: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(logits, tier index per row; len(tier_logits) = the teacher) of the route over precomputed logits."""
    out = teacher.copy()
    where = np.full(len(teacher), len(tier_logits), dtype=np.int8)
    open_rows = np.ones(len(teacher), dtype=bool)
    for k, (logits, margin) in enumerate(zip(tier_logits, margins)):
        take = open_rows & settled(logits, cuts, margin)
        out[take], where[take] = logits[take], k
        open_rows &= ~take
    return out, where


def label_matrix(logits: np.ndarray, cuts_flag: np.ndarray) -> np.ndarray:
    return (logits >= cuts_flag).astype(np.int8)


def macro_f1(gold: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score
    return float(f1_score(gold, pred, average="macro", zero_division=0))


def gate(sets: dict[str, dict], flag_cuts: np.ndarray, n_tiers: int, max_f1_drop: float = 0.01) -> tuple[bool, str, dict]:
    """`sets`: name -> {"gold": (n, labels) 0/1 or None, "teacher": logits, "route": logits,
    "where": tier index, "ordinary": bool} for each evaluation set. Returns (passed, reason, numbers)."""
    numbers, problems = {}, []
    for name, s in sets.items():
        teacher_pred, route_pred = label_matrix(s["teacher"], flag_cuts), label_matrix(s["route"], flag_cuts)
        row = {"rows": int(len(teacher_pred)), "label_set_agreement": float((teacher_pred == route_pred).all(axis=1).mean()),
               "settled_by_tier": np.bincount(s["where"], minlength=n_tiers + 1).tolist()}
        if s.get("ordinary"):
            row["false_alarms_teacher"] = int(teacher_pred[:, VIOLATIONS].any(axis=1).sum())
            row["false_alarms_route"] = int(route_pred[:, VIOLATIONS].any(axis=1).sum())
            if row["false_alarms_route"] > row["false_alarms_teacher"]:
                problems.append(f"{name}: {row['false_alarms_route']} ordinary false alarms vs the teacher's {row['false_alarms_teacher']}")
        elif s.get("gold") is not None:
            row["macro_f1_teacher"], row["macro_f1_route"] = macro_f1(s["gold"], teacher_pred), macro_f1(s["gold"], route_pred)
            if row["macro_f1_route"] < row["macro_f1_teacher"] - max_f1_drop:
                problems.append(f"{name}: macro-F1 {row['macro_f1_route']:.3f} vs teacher {row['macro_f1_teacher']:.3f}")
        numbers[name] = row
    teacher_share = float(np.mean(np.concatenate([s["where"] for s in sets.values()]) == n_tiers))
    numbers["teacher_share"] = teacher_share
    if teacher_share >= 1.0:
        problems.append("no listing is settled before the teacher: the route is not faster")
    if problems:
        return False, "gate failed: " + "; ".join(problems), numbers
    return True, f"gate passed: macro-F1 within {max_f1_drop:.2f} of the teacher on every set, no more ordinary false alarms, " \
                 f"{1 - teacher_share:.0%} of evaluation listings settled before the teacher", numbers
