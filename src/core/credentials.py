"""The credential rule behind `credential_missing` (TAXONOMY.md, notice task 二).

A seller of testing services must disclose a CMA certificate number (12 digits), a CNAS
registration (CNAS L/I/C + digits) or an explicit authorisation from a named lab. This module
finds such disclosures in the listing text and in the structured `qualification` field. It checks
that a credential is *shown*, not that it is genuine: verifying numbers against the CNCA/CNAS
registers is a reviewer's job.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .labels import CREDENTIAL_MISSING, MODEL_LABELS, TESTING_SERVICE
from .normalize import normalize_text

# In free text a bare 12-digit number could be anything (an order number, a barcode), so it
# counts as a CMA number only near a word that introduces one. In the qualification field the
# seller is answering "what is your credential", so the number alone suffices.
_CMA_CONTEXT = r"(?:cma|资质认定|计量认证|证书编号|证书号|认证编号|资质编号)"
_CMA_IN_TEXT = re.compile(_CMA_CONTEXT + r"[^0-9]{0,15}?(?<!\d)(\d{12})(?!\d)")
_CMA_BARE = re.compile(r"(?<!\d)(\d{12})(?!\d)")
_CNAS = re.compile(r"cnas\s*[:：]?\s*(?:no\.?|注册号|编号)?\s*[:：]?\s*([lic])\s*-?\s*(\d{4,5})(?!\d)")
# A named lab: some words ending in a lab-ish noun (XX检测技术有限公司, XX质检中心, XX研究院).
_LAB = r"[\u4e00-\u9fffa-z0-9()（）]{2,30}?(?:检测|检验|质检|计量|认证|测试|研究)[\u4e00-\u9fffa-z]{0,10}?(?:有限公司|公司|中心|研究院|研究所|实验室|站|所)"
_AUTH = re.compile(
    rf"(?:(?P<lab1>{_LAB})[^。;!?]{{0,8}}?(?:授权|委托)(?!.{{0,2}}(?:无|没有))"
    rf"|(?:获得?|取得|经|已获)(?P<lab2>{_LAB})[^。;!?]{{0,6}}?(?:授权|委托)"
    rf"|(?:授权|委托)(?:书|函)?[:：]?\s*(?P<lab3>{_LAB}))"
)


@dataclass(frozen=True)
class Credential:
    kind: str  # "cma", "cnas" or "authorisation"
    value: str
    field: str  # "text" or "qualification"


def find_credentials(text: str, qualification: str = "") -> list[Credential]:
    """Every credential disclosed in the listing text or the qualification field.

    Both arguments may be raw; they are normalised here (full-width digits, traditional script).

    >>> [c.kind for c in find_credentials("本中心CMA证书编号：161912345678，CNAS L1234")]
    ['cma', 'cnas']
    >>> find_credentials("订单号 202311280001 已发货")
    []
    """
    found: list[Credential] = []
    for field, raw in (("text", text), ("qualification", qualification)):
        if not raw:
            continue
        norm = normalize_text(raw)
        cma = _CMA_BARE if field == "qualification" else _CMA_IN_TEXT
        found += [Credential("cma", m.group(1), field) for m in cma.finditer(norm)]
        found += [Credential("cnas", f"CNAS {m.group(1).upper()}{m.group(2)}", field) for m in _CNAS.finditer(norm)]
        for m in _AUTH.finditer(norm):
            lab = m.group("lab1") or m.group("lab2") or m.group("lab3")
            found.append(Credential("authorisation", lab, field))
    return found


def credential_missing(predicted: list[str] | tuple[str, ...], text: str, qualification: str = "") -> bool:
    """The derived label: a testing service that discloses no credential.

    >>> credential_missing(["testing_service"], "专业第三方检测，寄样5个工作日出报告")
    True
    >>> credential_missing(["testing_service"], "寄样检测", qualification="CNAS L5678")
    False
    >>> credential_missing([], "任何文字")
    False
    """
    if TESTING_SERVICE.name not in predicted:
        return False
    return not find_credentials(text, qualification)


def with_derived_labels(predicted: list[str] | tuple[str, ...], title: str | None, description: str | None = "",
                        qualification: str | None = "") -> list[str]:
    """A listing's labels: the model labels in `predicted` plus `credential_missing` by the rule
    above, in ALL_LABELS (severity) order. The scorer applies it to predictions and the report
    tally to reviewers' verdicts, so both derive the label the same way.

    >>> with_derived_labels(["false_ad", "testing_service"], "不送样检测", "当天出报告")
    ['false_ad', 'credential_missing', 'testing_service']
    >>> with_derived_labels(["testing_service"], "寄样检测", "", qualification="CNAS L5678")
    ['testing_service']
    """
    labels = [name for name in MODEL_LABELS if name in predicted]
    if credential_missing(labels, f"{title or ''}\n{description or ''}", qualification or ""):
        labels.insert(labels.index(TESTING_SERVICE.name), CREDENTIAL_MISSING.name)
    return labels
