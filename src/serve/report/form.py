"""专项整治行动情况统计表: the notice's own form, filled in from a scored run.

The notice (市监检测发〔2021〕54号, 《市场监管总局办公厅关于开展打击网售假冒检验检测报告违法行为专项整治行动
的通知》) asks for its 附件, 专项整治行动情况统计表: a two-column form, 重点任务 | 落实情况, one
fill-in-the-blanks sentence per task. `table.csv` and the first sheet of `table.xlsx` are that form:
title, the header fields 填报单位 / 填报期间 / 填报日期, the two columns, five task rows, notes.

## What is verified and what is reconstructed

The notice's text was found (http://cnqlr.com/m/view.php?aid=5512, a copy of the SAMR notice
dated 2021-07-17): its number, title and six 重点任务 in the body — (一)严厉打击网售假冒检验检测报告违法
行为, (二)压实网络交易平台审核责任, (三)清理整顿虚假广告宣传信息, (四)落实检验检测机构主体责任, (五)加强政府部门公开
查询信息与网络交易平台数据交互贯通, (六)加强责任追究和行刑衔接(… 及时依法移送公安司法机关). Its 附件 (the form
itself) was not found in any source searched: the title 专项整治行动情况统计表, the header fields and the
two columns are as issue 13 describes them, and the rows are built as follows:

| row | 重点任务 | 落实情况 sentence | status |
|---|---|---|---|
| 1 | 清理网络销售不合格经营者和违法违规信息 | 涉及网络交易平台__家，共核验相关平台内经营者资质__家，处置违法违规平台内经营者__家，涉及销售信息__件。 | sentence as issue 13 quotes it (not checked against the 附件, which was not found); task name from the brief |
| 2 | 查处虚假广告宣传 | 涉及网络交易平台__家，共处置发布虚假广告宣传信息的平台内经营者__家，涉及虚假广告宣传信息__件。 | reconstructed in the style of row 1 (covers the body's task 三) |
| 3 | 严厉查处违法违规检验检测行为 | 共立案查处违法违规检验检测案件__件，涉及检验检测机构及相关经营主体__家。 | reconstructed (covers the body's tasks 一 and 四) |
| 4 | 加大处罚力度 | 共作出行政处罚__件，涉及当事人__家，罚没款__元。 | reconstructed; the name is the body's own phrase (task 一: 加大处罚力度) |
| 5 | 加强责任追究和行刑衔接 | 移送公安司法机关案件__件，涉及当事人__家。 | the name is the body's task 六, verbatim; the sentence is reconstructed from its wording |

Replace TASKS when the 附件 is at hand: nothing else depends on the wording.

## Counts (issue 13's table)

| task | blank | counted as |
|---|---|---|
| 1 | platforms | distinct non-empty platforms with a listing labelled report_sale or credential_missing |
| 1 | sellers_checked | sellers with a testing_service listing: the listings whose credentials the rule checked |
| 1 | sellers_handled | sellers with a reviewer-confirmed report_sale or credential_missing (needs --verdicts) |
| 1 | listings | listings labelled report_sale or credential_missing |
| 2 | platforms | platforms with a false_ad listing |
| 2 | sellers_handled | sellers with a reviewer-confirmed false_ad (needs --verdicts) |
| 2 | listings | false_ad listings |
| 3-5 | cases, entities, fines (yuan), referrals | from `--cases FILE` (read_cases) |

A seller is platform + shop_id, else platform + shop_name (sellers.seller_key); a listing with
neither is not a seller. With verdicts, reviewed listings count by their verdicts (tally.py).
Without them the "handled" blanks stay ____: a run cannot know what was handled, and the notes
give the model's block count instead. Tasks 3-5 stay ____ without `--cases`.
"""
from __future__ import annotations

import csv
import io
import math
import re
import string
from dataclasses import dataclass
from pathlib import Path

from reportguard.core.errors import InputError
from reportguard.core.labels import CREDENTIAL_MISSING, FALSE_AD, REPORT_SALE, TESTING_SERVICE

from .tally import Tally

TITLE = "专项整治行动情况统计表"
HEADER_FIELDS = ("填报单位", "填报期间", "填报日期")
COLUMNS = ("重点任务", "落实情况")
BLANK = "____"
NUMERALS = "一二三四五六七八九十"
#: Labels behind tasks 1 and 2.
TASK1_LABELS = (REPORT_SALE.name, CREDENTIAL_MISSING.name)
TASK2_LABELS = (FALSE_AD.name,)
#: The columns of a --cases file; tasks 3-5 only.
CASE_COLUMNS = ("task", "cases", "entities", "fines", "referrals")
CASE_TASKS = (3, 4, 5)


@dataclass(frozen=True)
class Task:
    no: int
    name: str      # 重点任务
    sentence: str  # 落实情况, each blank a {field}

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for _, f, _, _ in string.Formatter().parse(self.sentence) if f)


TASKS: tuple[Task, ...] = (
    Task(1, "清理网络销售不合格经营者和违法违规信息",
         "涉及网络交易平台{platforms}家，共核验相关平台内经营者资质{sellers_checked}家，"
         "处置违法违规平台内经营者{sellers_handled}家，涉及销售信息{listings}件。"),
    Task(2, "查处虚假广告宣传",
         "涉及网络交易平台{platforms}家，共处置发布虚假广告宣传信息的平台内经营者{sellers_handled}家，"
         "涉及虚假广告宣传信息{listings}件。"),
    Task(3, "严厉查处违法违规检验检测行为", "共立案查处违法违规检验检测案件{cases}件，涉及检验检测机构及相关经营主体{entities}家。"),
    Task(4, "加大处罚力度", "共作出行政处罚{cases}件，涉及当事人{entities}家，罚没款{fines}元。"),
    Task(5, "加强责任追究和行刑衔接", "移送公安司法机关案件{referrals}件，涉及当事人{entities}家。"),
)


@dataclass
class FormRow:
    task: Task
    values: dict  # field -> int | float | None (None: unknown, shown as ____)

    @property
    def label(self) -> str:
        """The 重点任务 cell: '一、清理…'."""
        return f"{NUMERALS[self.task.no - 1]}、{self.task.name}"

    def parts(self) -> list[tuple[str, str]]:
        """(literal, blank) pairs in order: the filled value, BLANK where unknown, '' after the last blank."""
        out = []
        for literal, name, _, _ in string.Formatter().parse(self.task.sentence):
            if not name:
                out.append((literal, ""))
            else:
                value = self.values.get(name)
                out.append((literal, BLANK if value is None else format_value(value)))
        return out

    @property
    def text(self) -> str:
        """The 落实情况 cell: the sentence with its blanks filled, or ____ where unknown.

        >>> FormRow(TASKS[4], {"referrals": 2}).text
        '移送公安司法机关案件2件，涉及当事人____家。'
        """
        return "".join(literal + blank for literal, blank in self.parts())

    def cells(self) -> list[str]:
        return [self.label, self.text]


def format_value(value) -> str:
    """Counts as plain digits (as a form is filled by hand); yuan with cents only when there are cents.

    >>> format_value(1886), format_value(314000.0), format_value(12.5)
    ('1886', '314000', '12.50')
    """
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}"
    return str(int(value))


# --- tasks 1 and 2: counted from the run ----------------------------------------------------------

def campaign_form(t: Tally, with_verdicts: bool, cases: dict[int, dict] | None = None) -> list[FormRow]:
    """The five rows of the form (see the module docstring for what each blank counts)."""
    sellers = [s for s in t.sellers.by_key.values() if s.known]

    def platforms(labels) -> int:
        return sum(1 for name, p in t.platforms.items() if name and any(p.labels[x] for x in labels))

    def sellers_with(labels, confirmed: bool = False) -> int:
        return sum(1 for s in sellers if any((s.confirmed if confirmed else s.labels)[x] for x in labels))

    handled = (lambda labels: sellers_with(labels, confirmed=True)) if with_verdicts else (lambda labels: None)
    counted = {
        1: {"platforms": platforms(TASK1_LABELS), "sellers_checked": sellers_with((TESTING_SERVICE.name,)),
            "sellers_handled": handled(TASK1_LABELS), "listings": t.listings_with_any(TASK1_LABELS)},
        2: {"platforms": platforms(TASK2_LABELS), "sellers_handled": handled(TASK2_LABELS),
            "listings": t.listings_with_any(TASK2_LABELS)},
    }
    cases = cases or {}
    return [FormRow(task, {f: (counted.get(task.no) or cases.get(task.no) or {}).get(f) for f in task.fields})
            for task in TASKS]


def form_notes(t: Tally, with_verdicts: bool, cases_source: str | None) -> list[str]:
    """The notes under the form: counting basis, why blanks are blank, the model's block count."""
    unknown_platform = t.platforms.get("")
    no_platform = unknown_platform.listings if unknown_platform else 0
    basis = ("任务一、二由本批评分数据统计，标签为模型判定（未公示资质由规则判定）"
             if not with_verdicts else "任务一、二由本批评分数据统计，已复核条目按复核结论计，其余为模型判定")
    notes = [
        f"{basis}。平台数为有相关条目的平台；经营者按“平台+店铺ID”（无ID时“平台+店铺名称”）计；"
        f"核验资质的经营者为有检验检测服务条目的经营者。{t.sellers.unknown_listings} 条无店铺信息的条目不计入经营者数，"
        f"{no_platform} 条无平台信息的条目不计入平台数。 / Tasks 1-2 are counted from this run "
        f"({'model labels, credential_missing by rule' if not with_verdicts else 'reviewed listings by their verdicts'}); "
        f"a seller is platform + shop id, else platform + shop name; {t.sellers.unknown_listings} listings without a shop "
        f"and {no_platform} without a platform are not counted as sellers or platforms.",
    ]
    blocked = t.decisions["block"]
    block1, block2 = t.listings_with_any(TASK1_LABELS, "block"), t.listings_with_any(TASK2_LABELS, "block")
    if with_verdicts:
        notes.append(
            f"“处置违法违规平台内经营者”按复核确认计：有复核确认的相关条目的经营者；本批已复核 {t.reviewed} 条，未复核条目不计入。"
            f"供参考：模型判定拦截（block）{blocked} 条，其中任务一相关 {block1} 条、任务二相关 {block2} 条。 / "
            f"\"Sellers handled\" counts sellers with a reviewer-confirmed listing ({t.reviewed} listings reviewed). "
            f"For reference, the model blocked {blocked} listings ({block1} for task 1, {block2} for task 2).")
    else:
        notes.append(
            f"“处置违法违规平台内经营者”未填：实际处置情况无法从评分数据得知，须依复核结论（--verdicts）或平台处置记录填写。"
            f"供参考：模型判定拦截（block）{blocked} 条，其中任务一相关 {block1} 条、任务二相关 {block2} 条。 / "
            f"\"Sellers handled\" is left blank: a scoring run cannot know what was handled (give --verdicts). "
            f"The model blocked {blocked} listings ({block1} for task 1, {block2} for task 2).")
    if cases_source:
        notes.append(f"任务三至五依 {cases_source} 填写，文件未给出的项未填。 / Tasks 3-5 from {cases_source}; "
                     "what it does not give stays blank.")
    else:
        notes.append("任务三至五为执法办案数据，评分数据中没有，未填（可用 --cases 文件提供）。 / Tasks 3-5 are enforcement "
                     "figures a run does not hold: blank unless --cases FILE gives them.")
    return notes


# --- tasks 3 to 5: from the enforcement side (--cases) ----------------------------------------------

def read_cases(path: str | Path) -> tuple[dict[int, dict], list[str]]:
    """`--cases FILE`: task -> {cases, entities, fines, referrals}, plus warnings.

    A CSV with a header row of `task` and any of `cases`, `entities`, `fines` (yuan) and
    `referrals`. Tasks are 3, 4 or 5 (三/四/五, 任务三 also read). Several rows for one task add up
    (one per district, say); a cell left empty everywhere stays ____. UTF-8 (with or without a BOM)
    or GB18030, which is what Excel on a Chinese Windows saves. Errors name the line and column;
    a value in a column its task's sentence has no blank for is ignored with a warning.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("gb18030")
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    unknown = [h for h in header if h and h not in CASE_COLUMNS]
    if "task" not in header or unknown:
        raise InputError(f"{path}: expected a header row with task and any of {list(CASE_COLUMNS[1:])}"
                         + (f"; unknown column(s) {unknown}" if unknown else "; no 'task' column"))
    fields = {task.no: task.fields for task in TASKS}
    totals: dict[int, dict] = {}
    warnings: list[str] = []
    for line_no, cells in enumerate(reader, start=2):
        row = {h: (cells[k].strip() if k < len(cells) else "") for k, h in enumerate(header) if h}
        if not any(row.values()):
            continue  # spreadsheets leave empty rows behind
        task = _case_task(row["task"], path, line_no)
        entry = totals.setdefault(task, dict.fromkeys(fields[task]))
        for column in CASE_COLUMNS[1:]:
            value = _case_number(row.get(column, ""), column, path, line_no)
            if value is None:
                continue
            if column not in fields[task]:
                warnings.append(f"{path.name} line {line_no}: task {task} has no blank for {column}; ignored")
                continue
            entry[column] = value + (entry[column] or 0)
    return totals, warnings


def _case_task(value: str, path: Path, line_no: int) -> int:
    match = re.fullmatch(r"(?:任务)?\s*([0-9]+|[一二三四五六七八九十])", value)
    task = (int(match.group(1)) if match.group(1).isdigit() else NUMERALS.index(match.group(1)) + 1) if match else None
    if task not in CASE_TASKS:
        raise InputError(f"{path}: line {line_no}: task {value!r}: --cases gives tasks 3, 4 and 5 "
                         "(tasks 1 and 2 are counted from the run)")
    return task


def _case_number(value: str, column: str, path: Path, line_no: int) -> int | float | None:
    value = value.replace(",", "").replace(" ", "")
    if not value:
        return None
    try:
        number = float(value) if column == "fines" else int(value)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or number < 0:
        kind = "a non-negative amount in yuan" if column == "fines" else "a non-negative whole number"
        raise InputError(f"{path}: line {line_no}: {column} = {value!r} is not {kind}")
    return number
