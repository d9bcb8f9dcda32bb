"""附：明细 — the detailed table that backs the form: 18 rows, each split reviewer-confirmed / model-only.

The form (form.py) is what the notice asks for; this table is how the run got there, and what a
reviewer or an analyst reads: the table's second sheet in `table.xlsx` and the page's section
附：明细.

## The rows

| # | 指标 | indicator | counted as |
|---|---|---|---|
| 1 | 检查平台数 | platforms checked | distinct non-empty `platform` values in the run |
| 2 | 涉及平台数 | platforms involved | platforms with at least one flagged listing |
| 3 | 检查经营者/店铺数 | sellers checked | distinct sellers (platform + shop_id, else shop_name; see sellers.py); listings with neither are counted in the note, not as sellers |
| 4 | 发现问题经营者数 | sellers with problems found | sellers with at least one flagged listing. The notice's "sellers handled" means action taken, which a run cannot know: this is the number to be handled |
| 5 | 检查条目数 | listings checked | rows of the run (the manifest's rejected rows are in the note) |
| 6 | 发现问题条目数 | listings flagged | listings with a violation label |
| 7-14 | per label: 买卖/伪造检验检测报告, 虚假广告宣传 (虚假宣传条目数), 未公示资质, 检验检测服务 | listings, sellers | listings carrying the label; sellers with at least one such listing. 检验检测服务 is information, not a violation |
| 15 | 拦截条目数 | listings blocked | model decision `block` |
| 16 | 待复核条目数 | listings awaiting review | model decision `review`, no verdict yet |
| 17 | 已复核条目数 | listings reviewed | listings of the run with a verdict |
| 18 | 复核无问题条目数 | reviewed and cleared | reviewed listings whose verdict has no violation label |

"Flagged" means carrying a violation label: report_sale, false_ad or credential_missing
(testing_service alone is the information label of an honest lab).

## Model-only vs reviewer-confirmed

Without verdicts, every label count is the model's (plus the credential rule), and the table says
so. With verdicts (tally.py), each label-based count is split into columns that add up:
- 复核确认 reviewer-confirmed: counted from reviewed listings' verdicts;
- 仅模型 model-only: counted from listings nobody has reviewed yet;
and a seller or platform is reviewer-confirmed when at least one of its flagged listings is.
Counts of platforms, sellers and listings checked come from the input itself; blocked and
awaiting-review counts are the model's decisions.
"""
from __future__ import annotations

from dataclasses import dataclass

from reportguard.core.labels import ALL_LABELS, TESTING_SERVICE

from .tally import Tally

TITLE_ZH = "附：明细"
TITLE_EN = "Appendix: the detailed counts behind the form"
HEADER = ("序号 No.", "类别 Section", "指标", "Indicator", "合计 Total", "复核确认 Reviewer-confirmed",
          "仅模型 Model-only", "口径 Basis", "说明 Note")
INPUT, MODEL, MIXED, DECISION, REVIEW = ("输入数据 input data", "模型 model only", "模型+复核 model + reviewers",
                                         "模型判定 model decision", "复核结论 reviewer verdicts")
TASK_EN = {"report_sale": "Selling or forging test reports", "false_ad": "False advertising",
           "credential_missing": "Credentials not disclosed", "testing_service": "Testing services (information only)"}


@dataclass
class TableRow:
    no: int
    section: str
    zh: str
    en: str
    total: int
    confirmed: int | None  # None: not applicable, or no verdicts were given
    model_only: int | None
    basis: str
    note: str = ""

    def cells(self) -> list:
        return [self.no, self.section, self.zh, self.en, self.total, self.confirmed, self.model_only, self.basis, self.note]


def detail_table(t: Tally, with_verdicts: bool) -> list[TableRow]:
    """The 18 rows described in the module docstring."""
    rows: list[TableRow] = []

    def add(section: str, zh: str, en: str, total: int, confirmed: int | None, basis: str, note: str = "") -> None:
        # Label-based counts (MIXED) split into reviewer-confirmed + model-only when verdicts exist;
        # without verdicts they are all model-only. Other rows have no such split.
        if basis == MIXED and with_verdicts:
            split = (confirmed, total - confirmed)
        elif basis == MIXED:
            split, basis = (None, total), MODEL
        else:
            split = (None, None)
        rows.append(TableRow(len(rows) + 1, section, zh, en, total, *split, basis, note))

    sellers = t.known_sellers()
    unknown_groups = [s for s in t.sellers.sellers() if not s.known]
    named_platforms = {p: s for p, s in t.platforms.items() if p}
    overall = "总体 Overall"
    add(overall, "检查平台数", "Platforms checked", len(named_platforms), None, INPUT,
        _unknown_platform_note(t))
    add(overall, "涉及平台数", "Platforms involved (with flagged listings)",
        sum(1 for s in named_platforms.values() if s.flagged), sum(1 for s in named_platforms.values() if s.confirmed_flagged),
        MIXED)
    add(overall, "检查经营者/店铺数", "Sellers (shops) checked", len(sellers), None, INPUT,
        f"另有 {t.sellers.unknown_listings} 条无店铺信息的条目（{len(unknown_groups)} 个平台），未计入 / "
        f"{t.sellers.unknown_listings} listings without shop id or name, not counted as sellers"
        if t.sellers.unknown_listings else "")
    add(overall, "发现问题经营者数", "Sellers with problems found (to be handled)", sum(1 for s in sellers if s.flagged),
        sum(1 for s in sellers if s.confirmed_flagged), MIXED,
        "待处置经营者；实际处置情况需平台填报 / action taken is the platform's to report")
    add(overall, "检查条目数", "Listings checked", t.listings, None, INPUT)
    add(overall, "发现问题条目数", "Listings flagged (any violation)", t.flagged, t.confirmed_flagged, MIXED,
        "含买卖/伪造报告、虚假宣传、未公示资质 / report_sale, false_ad or credential_missing")
    for label in ALL_LABELS:
        section = f"{label.zh} {label.name}"
        item = "虚假宣传条目数" if label.name == "false_ad" else "条目数"
        item_en = "false-ad items" if label.name == "false_ad" else "listings"
        note = "信息类，非违规 / information, not a violation" if label.name == TESTING_SERVICE.name else ""
        if label.derived:
            note = "由规则判定：检验检测服务且未公示CMA/CNAS资质或授权 / rule: testing service without a disclosed credential"
        add(section, f"{label.zh}：{item}", f"{TASK_EN[label.name]}: {item_en}", t.labels[label.name],
            t.confirmed[label.name], MIXED, _join(note, _review_changes(t, label.name, with_verdicts)))
        add(section, f"{label.zh}：经营者数", f"{TASK_EN[label.name]}: sellers",
            sum(1 for s in sellers if s.labels[label.name]), sum(1 for s in sellers if s.confirmed[label.name]), MIXED)
    handling = "处置 Handling"
    add(handling, "拦截条目数", "Listings blocked", t.decisions["block"], None, DECISION)
    add(handling, "待复核条目数", "Listings awaiting review", t.pending_review, None, DECISION,
        "模型判为待复核且尚无复核结论 / decision 'review' and no verdict yet")
    no_verdicts = "" if with_verdicts else "未提供复核结论 / no verdicts given"
    add(handling, "已复核条目数", "Listings reviewed", t.reviewed, None, REVIEW,
        _join(no_verdicts, f"另有 {t.verdicts_unmatched} 条复核结论不在本批数据中，未使用 / "
                           f"{t.verdicts_unmatched} verdicts for listings not in this run, unused" if t.verdicts_unmatched else ""))
    add(handling, "复核无问题条目数", "Reviewed and cleared", t.cleared, None, REVIEW, no_verdicts)
    return rows


def _unknown_platform_note(t: Tally) -> str:
    unknown = t.platforms.get("")
    return f"另有 {unknown.listings} 条条目无平台信息 / {unknown.listings} listings without a platform" if unknown else ""


def _review_changes(t: Tally, label: str, with_verdicts: bool) -> str:
    if not with_verdicts or not (t.overturned[label] or t.added[label]):
        return ""
    return f"复核撤销 {t.overturned[label]}，复核新增 {t.added[label]} / reviewers removed {t.overturned[label]}, added {t.added[label]}"


def _join(*parts: str) -> str:
    return "；".join(p for p in parts if p)

