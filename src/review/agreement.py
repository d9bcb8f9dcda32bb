"""Agreement between reviewers (Cohen's kappa), disagreements to adjudicate, and final labels.

An item reviewed by two or more reviewers is a double-reviewed item. For each label, the first two
reviewers' yes/no judgements over all double-reviewed items give one Cohen's kappa. Pairs of
reviewers vary from item to item in a shared queue, so this is the pooled kappa that annotation
teams report, not the agreement of one fixed pair; `pairs` lists who was paired how often.

The final labels of an item, used by the exporters:
1. an adjudication verdict, if there is one (the latest wins);
2. otherwise the review verdicts, if every reviewer gave the same labels;
3. otherwise none: an open disagreement waits in the adjudication view and is not exported.
"""
from __future__ import annotations

from collections import Counter

from reportguard.core.labels import ALL_LABEL_NAMES


def cohen_kappa(a: list[bool], b: list[bool]) -> float | None:
    """Cohen's kappa of two raters' yes/no judgements; None when chance agreement is total.

    >>> cohen_kappa([True, True, False, False], [True, True, False, False])
    1.0
    >>> round(cohen_kappa([True, True, False, False], [True, False, False, True]), 3)
    0.0
    >>> cohen_kappa([True, True], [True, True]) is None
    True
    """
    n = len(a)
    if n == 0 or n != len(b):
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected >= 1.0:
        return None  # both raters said the same thing every time: kappa is undefined
    return (observed - expected) / (1 - expected)


def final_labels(reviews: list[dict], adjudications: list[dict]) -> list[str] | None:
    """The labels an item is taken to have, or None while reviewers disagree unadjudicated."""
    if adjudications:
        return max(adjudications, key=lambda v: v["updated_at"])["labels"]
    if not reviews:
        return None
    sets = {tuple(v["labels"]) for v in reviews}
    return list(sets.pop()) if len(sets) == 1 else None


def agreement(by_item: dict[int, dict[str, list[dict]]]) -> dict:
    """Kappa per label and pooled over labels, from store.verdicts_by_item()."""
    pairs: Counter = Counter()
    judgements: dict[str, tuple[list[bool], list[bool]]] = {x: ([], []) for x in ALL_LABEL_NAMES}
    for roles in by_item.values():
        reviews = sorted(roles["review"], key=lambda v: (v["created_at"], v["id"]))
        if len(reviews) < 2:
            continue
        first, second = reviews[0], reviews[1]
        pairs[" & ".join(sorted((first["reviewer"], second["reviewer"])))] += 1
        for label in ALL_LABEL_NAMES:
            judgements[label][0].append(label in first["labels"])
            judgements[label][1].append(label in second["labels"])
    pooled_a = [x for label in ALL_LABEL_NAMES for x in judgements[label][0]]
    pooled_b = [x for label in ALL_LABEL_NAMES for x in judgements[label][1]]
    return {
        "double_reviewed": sum(pairs.values()),
        "kappa": {label: _round(cohen_kappa(*judgements[label])) for label in ALL_LABEL_NAMES},
        "kappa_pooled": _round(cohen_kappa(pooled_a, pooled_b)),
        "percent_agreement": {label: _round(_agree(*judgements[label])) for label in ALL_LABEL_NAMES},
        "pairs": dict(pairs),
    }


def disagreements(by_item: dict[int, dict[str, list[dict]]]) -> list[dict]:
    """Items whose reviewers gave different labels, with whether they have been adjudicated."""
    out = []
    for position, roles in sorted(by_item.items()):
        reviews = roles["review"]
        if len({tuple(v["labels"]) for v in reviews}) < 2:
            continue
        labels = {label for v in reviews for label in v["labels"]}
        contested = [x for x in ALL_LABEL_NAMES if x in labels and not all(x in v["labels"] for v in reviews)]
        out.append({"position": position, "listing_id": reviews[0]["listing_id"], "contested": contested,
                    "reviewers": [v["reviewer"] for v in reviews],
                    "adjudicated": bool(roles["adjudication"]),
                    "final": final_labels(reviews, roles["adjudication"])})
    return out


def _agree(a: list[bool], b: list[bool]) -> float | None:
    return sum(x == y for x, y in zip(a, b)) / len(a) if a else None


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
