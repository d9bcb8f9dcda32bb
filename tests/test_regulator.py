"""The report's detailed table (附：明细) and page: counts with known answers (verdicts included), file
outputs, escaping of hostile listing text, defensive precision reading, and the page in a real browser.
The notice's form itself (table.csv, the first sheet) is tested in test_report_form.py."""
import argparse
import csv
import json
import os
import tempfile
from pathlib import Path

import pytest
from openpyxl import load_workbook

from reportguard.serve.report import add_report_command, make_report, read_precision, read_verdicts, tally_run
from reportguard.serve.report.detail import HEADER, MIXED, MODEL
from reportguard.serve.report.detail import TITLE_ZH as DETAIL_TITLE
from reportguard.serve.report.detail import detail_table
from reportguard.serve.report.form import TITLE as FORM_TITLE
from reportguard.serve.report.page import highlight
from reportguard.serve.report.tally import clip, spans_for

from test_sellers import ROOT, ROWS, listing, write_csv_run, write_jsonl

# Verdicts for the ROWS of test_sellers: r1 cleared, r4 gains false_ad, r6 stays a testing service without a
# credential (credential_missing re-derived), r7 shows CNAS (no credential_missing), r99 is not in the run.
VERDICTS = [{"listing_id": "r1", "labels": []}, {"listing_id": "r4", "labels": ["false_ad"]},
            {"listing_id": "r6", "labels": ["testing_service"]}, {"listing_id": "r7", "labels": ["testing_service"]},
            {"listing_id": "r99", "labels": ["report_sale"]}]
PAYLOAD = "<script>window.__pwned=1</script>"
ATTRIBUTE = '" onmouseover="window.__pwned=2'


def hand_run(tmp_path: Path, fmt: str = "jsonl") -> Path:
    rows = json.loads(json.dumps(ROWS))
    rows[5]["title"] = "第三方检测 寄样检测"
    rows[6].update(title="第三方检测服务", qualification="CNAS L1234")
    if fmt == "csv":
        return write_csv_run(tmp_path / "run.csv", rows)
    return write_jsonl(tmp_path / "run.jsonl", rows)


def by_zh(table) -> dict:
    return {r.zh: (r.total, r.confirmed, r.model_only) for r in table}


def test_table_with_verdicts_has_known_answers(tmp_path):
    verdicts = read_verdicts(write_jsonl(tmp_path / "verdicts.jsonl", VERDICTS))
    t = tally_run(hand_run(tmp_path), verdicts)
    table = detail_table(t, with_verdicts=True)
    got = by_zh(table)
    # (total, reviewer-confirmed, model-only); None where the split does not apply
    assert got["检查平台数"] == (3, None, None)
    assert got["涉及平台数"] == (3, 2, 1)
    assert got["检查经营者/店铺数"] == (5, None, None)  # the unknown-shop listing is in the note, not a seller
    assert got["发现问题经营者数"] == (3, 2, 1)
    assert got["检查条目数"] == (7, None, None)
    assert got["发现问题条目数"] == (4, 2, 2)
    assert got["买卖/伪造检验检测报告：条目数"] == (1, 0, 1)  # r1's report_sale was overturned by its reviewer
    assert got["买卖/伪造检验检测报告：经营者数"] == (0, 0, 0)  # r5 has no shop: no seller to count
    assert got["虚假广告宣传：虚假宣传条目数"] == (2, 1, 1)
    assert got["虚假广告宣传：经营者数"] == (2, 1, 1)
    assert got["未公示资质：条目数"] == (2, 1, 1)  # r6 re-derived by rule; r7 shows CNAS
    assert got["未公示资质：经营者数"] == (2, 1, 1)
    assert got["检验检测服务：条目数"] == (4, 2, 2)
    assert got["检验检测服务：经营者数"] == (4, 2, 2)
    assert got["拦截条目数"] == (1, None, None)
    assert got["待复核条目数"] == (2, None, None)  # r3, r5; r6 was reviewed
    assert got["已复核条目数"] == (4, None, None)
    assert got["复核无问题条目数"] == (2, None, None)  # r1 and r7
    notes = {r.zh: r.note for r in table}
    assert "1 listings without shop id or name" in notes["检查经营者/店铺数"]
    assert "1 verdicts for listings not in this run" in notes["已复核条目数"]
    assert "reviewers removed 1, added 1" in notes["虚假广告宣传：虚假宣传条目数"]
    assert all(r.basis == MIXED for r in table if r.confirmed is not None)
    assert [r.no for r in table] == list(range(1, 19))


def test_without_verdicts_every_label_count_is_model_only(tmp_path):
    table = detail_table(tally_run(hand_run(tmp_path)), with_verdicts=False)
    got = by_zh(table)
    assert got["发现问题条目数"] == (4, None, 4)  # r1, r3, r5, r6: the model's flags, r1 included
    assert got["买卖/伪造检验检测报告：条目数"] == (2, None, 2)
    assert got["发现问题经营者数"] == (3, None, 3)  # s1, 店B, 店D
    assert got["已复核条目数"] == (0, None, None)
    assert all(r.confirmed is None for r in table)
    assert {r.basis for r in table if r.model_only is not None} == {MODEL}


def test_csv_run_with_pipe_labels_gives_the_same_table(tmp_path):
    verdicts = read_verdicts(write_jsonl(tmp_path / "verdicts.jsonl", VERDICTS))
    from_jsonl = detail_table(tally_run(hand_run(tmp_path), verdicts), True)
    from_csv = detail_table(tally_run(hand_run(tmp_path, "csv"), verdicts), True)
    assert [r.cells() for r in from_csv] == [r.cells() for r in from_jsonl]


def test_bad_verdicts_are_refused_with_the_line(tmp_path):
    bad = tmp_path / "v.jsonl"
    bad.write_text('{"listing_id": "1", "labels": []}\n{"listing_id": "2", "labels": ["made_up"]}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        read_verdicts(bad)
    bad.write_text('{"labels": []}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="listing_id"):
        read_verdicts(bad)
    ok = write_jsonl(tmp_path / "ok.jsonl", [{"listing_id": 7, "labels": "false_ad|credential_missing"}])
    assert read_verdicts(ok) == {"7": ["false_ad"]}  # ids as strings; credential_missing is the rule's


def test_files_are_written_and_parse(tmp_path):
    precision = tmp_path / "precision.json"
    precision.write_text(json.dumps({"confidence": 0.95, "models": {"hand-1": {"method": "weighted", "labels": {
        "report_sale": {"precision": {"estimate": 0.9, "low": 0.8, "high": 0.95, "reviewed": 40, "confirmed": 36}}}}}}),
        encoding="utf-8")
    verdicts = write_jsonl(tmp_path / "verdicts.jsonl", VERDICTS)
    parser = argparse.ArgumentParser()
    add_report_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(hand_run(tmp_path)), "--verdicts", str(verdicts), "--precision", str(precision),
                              "--period", "2026年11月"])
    assert args.func(args) == 0
    out = tmp_path / "run.report"
    assert {p.name for p in out.iterdir()} == {"table.csv", "table.xlsx", "report.html"}

    assert (out / "table.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    with open(out / "table.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == FORM_TITLE  # the form; its layout is test_report_form.py's

    wb = load_workbook(out / "table.xlsx")
    assert wb.sheetnames == ["统计表", DETAIL_TITLE, "精确率 precision"]  # the detailed table moved to the second sheet
    ws = wb[DETAIL_TITLE]
    assert ws["A1"].value == DETAIL_TITLE
    values = [[c.value for c in row] for row in ws.iter_rows()]
    assert ["填报期间 Period", None, "2026年11月"] == values[1][:3]
    assert values[2][2] == "hand-1"
    header_at = next(k for k, row in enumerate(values) if row[0] == HEADER[0])
    assert tuple(values[header_at]) == HEADER
    assert values[header_at + 4][2:7] == ["发现问题经营者数", "Sellers with problems found (to be handled)", 3, 2, 1]
    assert values[header_at + 1][5:7] == [None, None]  # no split for input-data rows
    assert len([row for row in values[header_at + 1:] if row[0] is not None]) == 18
    assert ws.column_dimensions["C"].width > 20
    assert wb["精确率 precision"]["C2"].value == 0.9

    page = (out / "report.html").read_text(encoding="utf-8")
    assert "90.0%" in page and "80.0% – 95.0%" in page  # precision table with its interval
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def hostile_rows() -> list[dict]:
    """Hostile text in every field the page shows: title, description, shop name, platform, evidence."""
    title = f"代出检测报告{PAYLOAD}包过{ATTRIBUTE}"
    evidence = [{"label": "report_sale", "source": "lexicon", "field": "title", "text": "代出检测报告", "start": 0, "end": 6},
                {"label": "false_ad", "source": "lexicon", "field": "title", "text": f"{PAYLOAD}包过",
                 "start": 6, "end": 6 + len(PAYLOAD) + 2},
                {"label": "<img src=x onerror=alert(1)>", "field": "title", "text": "包过", "start": 0, "end": 2}]
    return [listing("x1", ["report_sale", "false_ad"], "block", platform=f"平台{PAYLOAD}", shop_name=f"店{PAYLOAD}{ATTRIBUTE}",
                    title=title, description=f"描述{ATTRIBUTE}<b>粗</b>", evidence=json.dumps(evidence, ensure_ascii=False)),
            listing(PAYLOAD, ["false_ad"], shop_id=ATTRIBUTE, shop_name=ATTRIBUTE, title="普通")]


def test_hostile_text_is_escaped_everywhere(tmp_path):
    run = write_jsonl(tmp_path / "run.jsonl", hostile_rows())
    result = make_report(run, out_dir=tmp_path / "out", period=f"{PAYLOAD}期间", unit=f"={ATTRIBUTE}{PAYLOAD}")
    page = result["paths"]["html"].read_text(encoding="utf-8")
    assert PAYLOAD not in page and "<script" not in page
    assert ATTRIBUTE not in page and 'onmouseover="' not in page
    assert "onerror" not in page.replace("onerror=alert(1)&gt;", "")  # an evidence label is never markup
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page
    # highlights wrap escaped pieces: the false_ad span contains the payload, shown as text
    assert '<mark class="ev ev-false_ad" title="虚假广告宣传 false_ad">&lt;script&gt;' in page
    # the XLSX keeps a formula-looking unit as text, on the form and the detail sheet alike
    wb = load_workbook(result["paths"]["xlsx"])
    form = wb["统计表"]
    assert form["B2"].value == f"={ATTRIBUTE}{PAYLOAD}" and form["B2"].data_type == "s"
    assert form["B3"].value == f"{PAYLOAD}期间"
    assert wb[DETAIL_TITLE]["C2"].value == f"{PAYLOAD}期间" and wb[DETAIL_TITLE]["C2"].data_type == "s"
    # and the CSV defuses it for Excel
    with open(result["paths"]["csv"], encoding="utf-8-sig", newline="") as fh:
        assert list(csv.reader(fh))[1] == ["填报单位", f"'={ATTRIBUTE}{PAYLOAD}"]


def test_highlight_cuts_then_escapes():
    text = "a<b>包过 不送样&"
    spans = spans_for(text, [{"label": "false_ad", "field": "title", "text": "包过", "start": 4, "end": 6},
                             {"label": "false_ad", "field": "title", "text": "不送样", "start": 99, "end": 120},  # re-anchored
                             {"label": "report_sale", "field": "title", "text": "没有这段", "start": 0, "end": 2},  # dropped
                             {"label": "false_ad", "field": "description", "text": "包过", "start": 4, "end": 6}], "title")
    assert spans == [(4, 6, "false_ad"), (7, 10, "false_ad")]
    out = highlight(clip(text, spans, 100))
    assert out == ('a&lt;b&gt;<mark class="ev ev-false_ad" title="虚假广告宣传 false_ad">包过</mark> '
                   '<mark class="ev ev-false_ad" title="虚假广告宣传 false_ad">不送样</mark>&amp;')
    long = "x" * 500 + "包过" + "y" * 500
    clipped = clip(long, [(500, 502, "false_ad")], 100)
    assert clipped[0][clipped[1][0][0]:clipped[1][0][1]] == "包过" and clipped[2] and clipped[3]
    assert highlight(clipped).startswith("…") and highlight(clipped).endswith("…")


def test_precision_is_read_defensively(tmp_path):
    path = tmp_path / "p.json"

    def read(doc, model="m1"):
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
        return read_precision(path, model)

    review_tool = {"confidence": 0.9, "models": {"m1": {"representative": False, "labels": {
        "false_ad": {"precision": {"estimate": 0.5, "low": 0.3, "high": 0.7, "reviewed": 10, "confirmed": 5}, "recall": None},
        "report_sale": {"precision": None}}}, "m0": {"labels": {"false_ad": {"precision": {"estimate": 0.1}}}}}}
    got = read(review_tool)
    assert [(r["model"], r["label"], r["estimate"], r["low"], r["high"], r["reviewed"]) for r in got["rows"]] == [("m1", "false_ad", 0.5, 0.3, 0.7, 10)]
    assert got["confidence"] == 0.9 and "reviewed items only" in got["rows"][0]["note"]
    other = read(review_tool, model="m9")
    assert {r["model"] for r in other["rows"]} == {"m1", "m0"} and "no entry for this run's model" in other["notes"][0]
    flat = read({"labels": {"report_sale": 0.8, "false_ad": {"value": 0.6, "ci": [0.5, 0.7], "n": 20}}})
    assert [(r["label"], r["estimate"], r["low"], r["reviewed"]) for r in flat["rows"]] == [("report_sale", 0.8, None, None), ("false_ad", 0.6, 0.5, 20)]
    assert read({"report_sale": {"precision": 7}})["rows"] == []  # not a probability: ignored
    assert "no per-label precision" in read({"something": 1})["notes"][0]
    assert "could not read" in read("{not json")["notes"][0]
    assert "expected a JSON object" in read("[1, 2]")["notes"][0]


def test_report_on_a_real_run(tiny_bundle, tmp_path):
    from reportguard.serve.score import ScoreOptions, score

    rows = [json.loads(line) for line in (ROOT / "data" / "labelled" / "test.jsonl").read_text(encoding="utf-8").splitlines()[:40]]
    rows[0].update(title=f"代出报告{PAYLOAD}", shop_name=f"店{ATTRIBUTE}")
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    run = tmp_path / "run.csv"
    manifest = score([str(src)], run, ScoreOptions(model=str(tiny_bundle), progress=False, threads=1))
    verdicts = write_jsonl(tmp_path / "v.jsonl", [{"listing_id": r["listing_id"], "labels": r["labels"]} for r in rows[:15]])
    result = make_report(run, verdicts)
    assert result["paths"]["html"].parent == tmp_path / "run.report"
    got = by_zh(result["table"])
    assert got["检查条目数"][0] == manifest["rows"]["accepted"] == 40
    assert got["已复核条目数"][0] == 15
    t = result["tally"]
    assert sum(sum(h) for h in t.histograms.values()) == 3 * 40
    page = result["paths"]["html"].read_text(encoding="utf-8")
    assert PAYLOAD not in page and ATTRIBUTE not in page
    assert manifest["model_version"] in page and f"{manifest['rows']['in']:,}" in page


# --- the page in a real browser -------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def browser():
    """Headless Chromium via selenium; skipped where there is none, but required under CI."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI is set but /usr/bin/chromium is missing: apt-get install -y chromium chromium-driver")
        pytest.skip("no /usr/bin/chromium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tempfile.mkdtemp()}",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def test_page_in_headless_chromium(tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    verdicts = write_jsonl(tmp_path / "v.jsonl", [{"listing_id": "x1", "labels": ["report_sale"]}])
    result = make_report(write_jsonl(tmp_path / "run.jsonl", hostile_rows() + json.loads(json.dumps(ROWS))), verdicts,
                         out_dir=tmp_path / "out", period="2026年11月")
    driver = browser()
    try:
        driver.get(result["paths"]["html"].resolve().as_uri())
        form = driver.find_element(By.ID, "form-table")
        assert form.is_displayed() and form.size["width"] > 800
        assert len(form.find_elements(By.CSS_SELECTOR, "tbody tr")) == 5 and "涉及网络交易平台" in form.text
        table = driver.find_element(By.ID, "detail-table")
        assert table.is_displayed() and table.location["y"] > form.location["y"]  # the form comes first
        assert "发现问题经营者数" in table.text and len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) >= 18
        for card in driver.find_elements(By.CSS_SELECTOR, ".card .title")[:2]:
            ActionChains(driver).move_to_element(card).perform()  # an injected onmouseover would fire here
        # The page's Content-Security-Policy alone would keep the sentinel undefined, so the two DOM
        # checks below are what prove the escaping: no injected element or handler exists at all.
        assert driver.execute_script("return typeof window.__pwned") == "undefined"
        assert driver.execute_script("return document.getElementsByTagName('script').length") == 0
        assert driver.execute_script("return document.querySelectorAll('[onmouseover],[onerror]').length") == 0
        body = driver.find_element(By.TAG_NAME, "body").text
        assert PAYLOAD in body  # shown as text, which is what escaping is for
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg rect")) > 10  # charts drew
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1200, min(height + 100, 8000))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
