"""The notice's form (专项整治行动情况统计表) that `reportguard report` writes: its layout, its task 1 and 2
counts against counts made here, independently, from the scored rows, the blanks a run cannot fill,
and `--cases` for tasks 3-5."""
import argparse
import csv
import json
import re
from pathlib import Path

import pytest
from openpyxl import load_workbook

from reportguard.core.credentials import credential_missing
from reportguard.serve.report import add_report_command, make_report, read_cases

from test_sellers import ROOT, listing, write_csv_run, write_jsonl

TASK_NAMES = ["一、清理网络销售不合格经营者和违法违规信息", "二、查处虚假广告宣传", "三、严厉查处违法违规检验检测行为",
              "四、加大处罚力度", "五、加强责任追究和行刑衔接"]
B = "____"

# A scored run with the cases that decide the counts: the same shop id under two names (one seller),
# the same shop name on two platforms (two sellers), a shop id beside a name (the id wins), listings
# without a shop or without a platform, whitespace around platforms, a clean listing on its own platform.
RUN = [
    listing("a1", ["report_sale", "false_ad", "testing_service"], "block", platform="淘宝", shop_id="t1", shop_name="代办店"),
    listing("a2", ["report_sale"], "review", platform="淘宝", shop_id="t1", shop_name="代办店改名"),
    listing("a3", ["credential_missing", "testing_service"], "review", platform=" 淘宝 ", shop_name="检测小铺",
            title="第三方检测 寄样"),
    listing("a4", ["testing_service"], "pass", platform="淘宝", shop_name="正规实验室", qualification="CNAS L1234",
            title="第三方检测服务"),
    listing("b1", ["false_ad", "testing_service"], "block", platform="京东", shop_name="检测小铺"),
    listing("b2", ["false_ad"], "review", platform="京东", shop_id="", shop_name=""),
    listing("c1", ["report_sale"], "block", platform="", shop_name="无平台店"),
    listing("c2", ["credential_missing", "testing_service"], "review", platform=None, shop_id="x9"),
    listing("d1", [], "pass", platform="拼多多", shop_name="普通店"),
    listing("d2", ["testing_service"], "pass", platform="拼多多", shop_name="普通店"),
]
TASK1 = {"report_sale", "credential_missing"}


def seller(row: dict):
    """platform + shop_id, else platform + shop_name; None for a listing with neither."""
    platform = (row.get("platform") or "").strip()
    shop_id, shop_name = (row.get("shop_id") or "").strip(), (row.get("shop_name") or "").strip()
    return (platform, "id", shop_id) if shop_id else (platform, "name", shop_name) if shop_name else None


def reviewed_labels(row: dict, confirmed: list[str]) -> list[str]:
    """A verdict's labels, credential_missing re-derived by the scorer's rule."""
    labels = list(confirmed)
    if credential_missing(labels, f"{row.get('title') or ''}\n{row.get('description') or ''}", row.get("qualification") or ""):
        labels.append("credential_missing")
    return labels


def independent_counts(rows: list[dict], verdicts: dict[str, list[str]] | None = None) -> dict:
    """The form's task 1 and 2 numbers, counted straight from the rows (issue 13's table)."""
    verdicts = verdicts or {}
    labelled = [(r, reviewed_labels(r, verdicts[r["listing_id"]]) if r["listing_id"] in verdicts else list(r["labels"]),
                 r["listing_id"] in verdicts) for r in rows]
    t1 = [(r, reviewed) for r, labels, reviewed in labelled if TASK1 & set(labels)]
    t2 = [(r, reviewed) for r, labels, reviewed in labelled if "false_ad" in labels]
    return {
        1: {"platforms": len({(r.get("platform") or "").strip() for r, _ in t1} - {""}),
            "sellers_checked": len({seller(r) for r, labels, _ in labelled if "testing_service" in labels} - {None}),
            "sellers_handled": len({seller(r) for r, reviewed in t1 if reviewed} - {None}),
            "listings": len(t1)},
        2: {"platforms": len({(r.get("platform") or "").strip() for r, _ in t2} - {""}),
            "sellers_handled": len({seller(r) for r, reviewed in t2 if reviewed} - {None}),
            "listings": len(t2)},
    }


def expected_sentences(c: dict, handled: bool) -> list[str]:
    h1, h2 = (c[1]["sellers_handled"], c[2]["sellers_handled"]) if handled else (B, B)
    return [f"涉及网络交易平台{c[1]['platforms']}家，共核验相关平台内经营者资质{c[1]['sellers_checked']}家，"
            f"处置违法违规平台内经营者{h1}家，涉及销售信息{c[1]['listings']}件。",
            f"涉及网络交易平台{c[2]['platforms']}家，共处置发布虚假广告宣传信息的平台内经营者{h2}家，涉及虚假广告宣传信息{c[2]['listings']}件。"]


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_report_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", *argv])
    return args.func(args)


def read_form_csv(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


def task_rows(rows: list[list[str]]) -> list[list[str]]:
    start = rows.index(["重点任务", "落实情况"]) + 1
    return rows[start:start + 5]


def test_the_csv_is_the_form(tmp_path):
    run = write_jsonl(tmp_path / "run.jsonl", RUN)
    assert run_cli(str(run), "--unit", "某某市市场监督管理局", "--period", "2026年11月", "--date", "2026年12月1日") == 0
    rows = read_form_csv(tmp_path / "run.report" / "table.csv")
    assert all(len(r) == 2 for r in rows)  # exactly two columns, everywhere
    assert rows[:5] == [["专项整治行动情况统计表", ""], ["填报单位", "某某市市场监督管理局"], ["填报期间", "2026年11月"],
                        ["填报日期", "2026年12月1日"], ["重点任务", "落实情况"]]
    assert [r[0] for r in rows[5:10]] == TASK_NAMES  # five tasks, in the notice's order
    assert rows[10:] and all(re.fullmatch(r"注\d+", r[0]) for r in rows[10:])  # then only notes
    assert [r[1] for r in rows[5:7]] == expected_sentences(independent_counts(RUN), handled=False)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_task_1_and_2_equal_counts_made_from_the_rows(tmp_path, fmt):
    run = write_jsonl(tmp_path / "run.jsonl", RUN) if fmt == "jsonl" else write_csv_run(tmp_path / "run.csv", RUN)
    result = make_report(run)
    counts = independent_counts(RUN)
    # The known answers too, so that a mistake shared by both counts cannot hide. Task 1: a1-a3 on 淘宝
    # (" 淘宝 " is 淘宝), c1 and c2 have no platform; testing services at t1, 检测小铺@淘宝, 正规实验室,
    # 检测小铺@京东 (same name, another platform), x9 (an id, no platform) and 普通店.
    assert counts[1] == {"platforms": 1, "sellers_checked": 6, "sellers_handled": 0, "listings": 5}
    assert counts[2] == {"platforms": 2, "sellers_handled": 0, "listings": 3}
    form = result["form"]
    assert [form[0].values[k] for k in ("platforms", "sellers_checked", "listings")] == [1, 6, 5]
    assert [form[1].values[k] for k in ("platforms", "listings")] == [2, 3]
    assert [row.text for row in form[:2]] == expected_sentences(counts, handled=False)


def test_verdicts_fill_the_handled_blanks(tmp_path):
    # a1 confirmed as it was (seller t1, both tasks); a2 confirmed as report_sale (t1 again); a3 cleared;
    # b1 confirmed as a testing service without a credential (credential_missing by rule: task 1, no longer
    # false_ad); b2 confirmed false_ad but has no shop, so no seller; zz is not in the run.
    verdicts = {"a1": ["report_sale", "false_ad", "testing_service"], "a2": ["report_sale"], "a3": [],
                "b1": ["testing_service"], "b2": ["false_ad"], "zz": ["report_sale"]}
    path = write_jsonl(tmp_path / "v.jsonl", [{"listing_id": k, "labels": v} for k, v in verdicts.items()])
    result = make_report(write_jsonl(tmp_path / "run.jsonl", RUN), path)
    counts = independent_counts(RUN, verdicts)
    assert counts[1]["sellers_handled"] == 2 and counts[2]["sellers_handled"] == 1  # t1 and 检测小铺@京东; t1
    assert counts[1]["platforms"] == 2 and counts[2]["listings"] == 2  # b1 now task 1 (京东); a3 and b1 lose their flags
    assert [row.text for row in result["form"][:2]] == expected_sentences(counts, handled=True)
    assert "复核确认" in result["notes"][1] and "已复核 5 条" in result["notes"][1]


def test_without_verdicts_or_cases_the_blanks_stay_blank(tmp_path):
    result = make_report(write_jsonl(tmp_path / "run.jsonl", RUN))
    form = {row.task.no: row for row in result["form"]}
    assert form[1].values["sellers_handled"] is None and form[2].values["sellers_handled"] is None
    assert "处置违法违规平台内经营者____家" in form[1].text
    assert "共处置发布虚假广告宣传信息的平台内经营者____家" in form[2].text
    assert form[3].text == "共立案查处违法违规检验检测案件____件，涉及检验检测机构及相关经营主体____家。"
    assert form[4].text == "共作出行政处罚____件，涉及当事人____家，罚没款____元。"
    assert form[5].text == "移送公安司法机关案件____件，涉及当事人____家。"
    # the footnote gives the model's block count instead: a1, b1, c1 (a1 and c1 are task 1, a1 and b1 task 2)
    blocked = sum(r["decision"] == "block" for r in RUN)
    assert f"模型判定拦截（block）{blocked} 条，其中任务一相关 2 条、任务二相关 2 条" in result["notes"][1]
    assert "--cases" in result["notes"][2]
    assert result["header"]["填报单位"] == B


def test_cases_fill_tasks_3_to_5(tmp_path):
    cases = tmp_path / "cases.csv"
    # GB18030, as Excel on a Chinese Windows saves it; two rows for task 5 add up; 四 is task 4.
    cases.write_bytes("task,cases,entities,fines,referrals\n3,12,10,,\n四,9,9,\"314,000\",\n5,,2,,2\n任务五,,1,,1\n,,,,\n"
                      .encode("gb18030"))
    result = make_report(write_jsonl(tmp_path / "run.jsonl", RUN), cases=cases)
    form = {row.task.no: row.text for row in result["form"]}
    assert form[3] == "共立案查处违法违规检验检测案件12件，涉及检验检测机构及相关经营主体10家。"
    assert form[4] == "共作出行政处罚9件，涉及当事人9家，罚没款314000元。"
    assert form[5] == "移送公安司法机关案件3件，涉及当事人3家。"
    assert "cases.csv" in result["notes"][2] and result["meta"]["warnings"] == []
    rows = read_form_csv(result["paths"]["csv"])
    assert [r[1] for r in task_rows(rows)[2:]] == [form[3], form[4], form[5]]


def test_cases_partial_and_unused_columns(tmp_path):
    cases = tmp_path / "cases.csv"
    cases.write_text("\ufefftask,fines,cases\n4,1250.5,\n5,,7\n", encoding="utf-8")
    totals, warnings = read_cases(cases)
    assert totals == {4: {"cases": None, "entities": None, "fines": 1250.5}, 5: {"referrals": None, "entities": None}}
    assert warnings == ["cases.csv line 3: task 5 has no blank for cases; ignored"]
    result = make_report(write_jsonl(tmp_path / "run.jsonl", RUN), cases=cases)
    assert result["form"][3].text == "共作出行政处罚____件，涉及当事人____家，罚没款1250.50元。"
    assert result["form"][2].text.count(B) == 2  # task 3 is not in the file
    assert result["meta"]["warnings"] == warnings


@pytest.mark.parametrize("text, message", [
    ("task,cases,fine\n3,1,2\n", "unknown column"),
    ("cases,entities\n1,2\n", "no 'task' column"),
    ("task,cases\n1,5\n", "tasks 1 and 2 are counted from the run"),
    ("task,cases\n6,5\n", "line 2"),
    ("task,cases\n3,-1\n", "non-negative whole number"),
    ("task,cases\n3,1.5\n", "non-negative whole number"),
    ("task,fines\n4,很多\n", "amount in yuan"),
])
def test_bad_cases_are_refused(tmp_path, text, message):
    cases = tmp_path / "cases.csv"
    cases.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_cases(cases)


def test_xlsx_first_sheet_is_the_form(tmp_path):
    result = make_report(write_jsonl(tmp_path / "run.jsonl", RUN), unit="某局", period="2026年11月", date="2026年12月1日")
    wb = load_workbook(result["paths"]["xlsx"])
    assert wb.sheetnames[:2] == ["统计表", "附：明细"]
    sheet = [[c.value if c.value is not None else "" for c in row][:2] for row in wb.worksheets[0].iter_rows()]
    assert sheet == read_form_csv(result["paths"]["csv"])
    assert wb.worksheets[0].max_column == 2
    assert wb.worksheets[1]["A1"].value == "附：明细"


def test_page_shows_the_form_first(tmp_path):
    result = make_report(write_jsonl(tmp_path / "run.jsonl", RUN))
    page = result["paths"]["html"].read_text(encoding="utf-8")
    order = [page.index(x) for x in ('<h1>专项整治行动情况统计表</h1>', 'id="form-table"', '<h2 id="detail">附：明细</h2>',
                                     'id="detail-table"')]
    assert order == sorted(order)
    assert page.count("<tr><th scope=\"row\">") == 5
    assert '处置违法违规平台内经营者<span class="blank">____</span>家' in page
    assert f'涉及销售信息<b class="filled">{result["form"][0].values["listings"]}</b>件' in page


def test_form_on_a_tiny_model_run(tiny_bundle, tmp_path):
    """Score real listings with a tiny model, then count task 1 and 2 from the scored file itself."""
    from reportguard.serve.score import ScoreOptions, score

    rows = [json.loads(line) for line in (ROOT / "data" / "labelled" / "test.jsonl").read_text(encoding="utf-8").splitlines()[:60]]
    for k, r in enumerate(rows):
        r.pop("labels", None)
        r["shop_id"] = f"S{k % 7}" if k % 3 == 0 else ""  # some sellers by id, the rest by name
    run = tmp_path / "scored.csv"
    score([str(write_jsonl(tmp_path / "in.jsonl", rows))], run, ScoreOptions(model=str(tiny_bundle), progress=False, threads=1))
    with open(run, encoding="utf-8-sig", newline="") as fh:
        scored = [{**r, "labels": [x for x in r["labels"].split("|") if x]} for r in csv.DictReader(fh)]
    assert len(scored) == 60
    assert run_cli(str(run), "--period", "2026年11月") == 0
    got = [r[1] for r in task_rows(read_form_csv(tmp_path / "scored.report" / "table.csv"))]
    assert got[:2] == expected_sentences(independent_counts(scored), handled=False)


def test_doctests_of_the_report_modules():
    import doctest
    import importlib

    for name in ("form", "tally", "page"):  # the modules whose examples are their specification
        result = doctest.testmod(importlib.import_module(f"reportguard.serve.report.{name}"))
        assert result.attempted and not result.failed, name


@pytest.mark.parametrize("what, text, message", [
    ("--verdicts", '{"listing_id": "a1", "labels": ["report_sale"]}\n{"labels": []}\n', "line 2: a verdict needs a listing_id"),
    ("--verdicts", "not json\n", "line 1: invalid JSON"),
    ("--cases", "task,cases\n3,-1\n", "non-negative whole number"),
])
def test_a_bad_side_file_is_one_line_naming_it_not_a_traceback(tmp_path, capsys, what, text, message):
    from reportguard.cli import main
    side = tmp_path / ("v.jsonl" if what == "--verdicts" else "cases.csv")
    side.write_text(text, encoding="utf-8")
    assert main(["report", str(write_jsonl(tmp_path / "run.jsonl", RUN)), what, str(side)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("reportguard: error: ") and str(side) in err and message in err and "\n" not in err
