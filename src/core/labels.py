"""The label schema: one list, read by training, scoring, review and reports alike.

Definitions live in ../shared/TAXONOMY.md. The order of MODEL_LABELS is the order of the
model's output columns, so it is part of every bundle and is checked when a bundle loads.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Label:
    name: str
    zh: str
    severity: int  # higher is worse; used for review queues and seller roll-ups
    derived: bool = False  # True: computed by rule, never predicted by the model


REPORT_SALE = Label("report_sale", "买卖/伪造检验检测报告", severity=4)
FALSE_AD = Label("false_ad", "虚假广告宣传", severity=3)
CREDENTIAL_MISSING = Label("credential_missing", "未公示资质", severity=2, derived=True)
TESTING_SERVICE = Label("testing_service", "检验检测服务", severity=1)

#: What the model predicts, in output-column order.
MODEL_LABELS: tuple[str, ...] = (REPORT_SALE.name, FALSE_AD.name, TESTING_SERVICE.name)
#: Every label a listing can carry, most severe first.
ALL_LABELS: tuple[Label, ...] = (REPORT_SALE, FALSE_AD, CREDENTIAL_MISSING, TESTING_SERVICE)
#: Their names, most severe first: what a scored listing or a reviewer's verdict can carry.
ALL_LABEL_NAMES: tuple[str, ...] = tuple(label.name for label in ALL_LABELS)
BY_NAME: dict[str, Label] = {label.name: label for label in ALL_LABELS}


def prob_column(label: str) -> str:
    """The scored output's column holding a model label's calibrated probability.

    >>> prob_column("false_ad")
    'p_false_ad'
    """
    return f"p_{label}"


#: The probability columns of a scored run, in model-output order.
PROB_COLUMNS: tuple[str, ...] = tuple(prob_column(name) for name in MODEL_LABELS)

#: Slice tags a corpus row may carry (see data/README.md).
TAGS: tuple[str, ...] = (
    "hard_negative", "obfuscated", "traditional", "honest_lab", "product_with_report",
    "news_or_warning", "job_or_equipment", "contact_lure", "short", "long",
)


def severity(labels: list[str] | tuple[str, ...]) -> int:
    """The highest severity among `labels`, 0 for a clean listing.

    >>> severity(["testing_service", "false_ad"])
    3
    >>> severity([])
    0
    """
    return max((BY_NAME[name].severity for name in labels), default=0)


def check_model_labels(labels: list[str]) -> list[str]:
    """Return `labels` if every name is a model label and none repeats, else raise ValueError."""
    unknown = [name for name in labels if name not in MODEL_LABELS]
    if unknown:
        raise ValueError(f"unknown label(s) {unknown}; model labels are {list(MODEL_LABELS)}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"repeated label in {labels}")
    return labels
