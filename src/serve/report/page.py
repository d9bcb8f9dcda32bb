"""`report.html`: one self-contained page — the form first, then 附：明细 (the detailed table, the
run's manifest, precision, charts, top sellers and the most severe flagged listings).

No scripts, external CSS, fonts or network: the page's Content-Security-Policy forbids them.
Listing text, shop names and evidence are written by sellers: every piece is escaped, and
highlight markup is built around escaped segments only, never by editing escaped or raw HTML.
"""
from __future__ import annotations

import html
from pathlib import Path

from reportguard.core.labels import BY_NAME, MODEL_LABELS

from ..sellers import LABEL_NAMES, UNKNOWN_PLATFORM, VIOLATION_LABELS
from .charts import COLOURS, bar_chart_svg, histogram_svg, platform_bars, seller_name
from .detail import HEADER, TITLE_EN as DETAIL_TITLE_EN, TITLE_ZH as DETAIL_TITLE, TableRow
from .form import BLANK, COLUMNS, TITLE as FORM_TITLE, FormRow
from .tally import Tally


def highlight(clipped: tuple[str, list, bool, bool]) -> str:
    """Escaped text with each evidence span in <mark class="ev ev-LABEL">.

    The text is cut at span boundaries first, each piece escaped, and only then wrapped: markup is
    never inserted into raw or escaped text. Class names come from the fixed label list.

    >>> highlight(('<b>包过</b>"', [(3, 5, "false_ad")], False, False))
    '&lt;b&gt;<mark class="ev ev-false_ad" title="虚假广告宣传 false_ad">包过</mark>&lt;/b&gt;&quot;'
    """
    text, spans, before, after = clipped
    cuts = sorted({0, len(text), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    pieces = ["…" if before else ""]
    for a, b in zip(cuts, cuts[1:]):
        piece = html.escape(text[a:b])
        covering = [x for x in LABEL_NAMES if any(s <= a and b <= e and lab == x for s, e, lab in spans)]
        if covering:
            worst = covering[0]
            tip = html.escape(" ".join(f"{BY_NAME[x].zh} {x}" for x in covering))
            piece = f'<mark class="ev ev-{worst}" title="{tip}">{piece}</mark>'
        pieces.append(piece)
    pieces.append("…" if after else "")
    return "".join(pieces)



CSS = """
:root { --ink:#1f2328; --muted:#59636e; --line:#d1d9e0; --soft:#f6f8fa; }
* { box-sizing: border-box; }
body { margin:0; background:#eef1f5; color:var(--ink);
  font:14px/1.55 "PingFang SC","Hiragino Sans GB","Microsoft YaHei","Noto Sans CJK SC","Source Han Sans SC","WenQuanYi Zen Hei",system-ui,sans-serif; }
main { max-width:1120px; margin:0 auto; padding:24px 28px 48px; background:#fff; min-height:100vh; }
h1 { font-size:22px; margin:0 0 2px; } h1 + .en { color:var(--muted); margin:0 0 14px; }
h2 { font-size:17px; margin:34px 0 10px; padding-bottom:5px; border-bottom:2px solid var(--line); }
h3 { font-size:16px; margin:30px 0 8px; padding-bottom:4px; border-bottom:1px solid var(--line); }
.meta { display:grid; grid-template-columns:max-content 1fr; gap:2px 16px; margin:0; }
.meta dt { color:var(--muted); } .meta dd { margin:0; overflow-wrap:anywhere; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { border:1px solid var(--line); padding:5px 8px; vertical-align:top; text-align:left; }
th { background:#e9eef5; font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.section td { background:var(--soft); font-weight:600; }
table.fixed { table-layout:fixed; }
th .en, td .en { font-weight:400; font-size:11px; color:var(--muted); }
td.note { color:var(--muted); font-size:12px; overflow-wrap:anywhere; }
.basis { font-size:12px; }
.na { color:#9aa4ae; }
.callout { background:#fff8e6; border-left:4px solid #e8a600; padding:8px 12px; margin:10px 0; font-size:13px; }
.charts { display:flex; flex-wrap:wrap; gap:10px 18px; }
.chart { margin:0; } .chart figcaption { font-size:13px; font-weight:600; }
svg .grid { stroke:#e3e8ee; } svg .axis { stroke:#8c959f; }
svg text { font-size:11px; fill:#424a53; font-family:inherit; }
svg text.name { font-size:12px; } svg text.value { font-size:11px; fill:#1f2328; }
.legend { display:flex; flex-wrap:wrap; gap:4px 16px; font-size:12px; margin:4px 0 8px; }
.swatch { display:inline-block; width:11px; height:11px; border-radius:2px; margin-right:5px; vertical-align:-1px; }
.badge { display:inline-block; padding:0 7px; border-radius:10px; font-size:12px; color:#fff; margin:0 4px 2px 0; white-space:nowrap; }
.badge.plain { color:var(--ink); background:#e9eef5; }
.badge.struck { opacity:.5; text-decoration:line-through; }
.card { border:1px solid var(--line); border-radius:6px; padding:10px 14px; margin:10px 0; }
.card .head { display:flex; flex-wrap:wrap; gap:4px 14px; align-items:baseline; font-size:12px; color:var(--muted); }
.card .head .id { font-family:ui-monospace,Menlo,Consolas,monospace; color:var(--ink); }
.card .title { font-size:15px; font-weight:600; margin:6px 0 2px; overflow-wrap:anywhere; }
.card .desc { color:#3d444d; overflow-wrap:anywhere; white-space:pre-wrap; }
.card .scores { font-size:12px; color:var(--muted); font-variant-numeric:tabular-nums; }
mark.ev { padding:0 1px; border-radius:2px; }
mark.ev-report_sale { background:#f8d0cc; box-shadow:inset 0 -2px #b3261e; }
mark.ev-false_ad { background:#fde2c4; box-shadow:inset 0 -2px #e8710a; }
mark.ev-credential_missing { background:#f7ecb0; box-shadow:inset 0 -2px #c9a100; }
mark.ev-testing_service { background:#d6e6f8; box-shadow:inset 0 -2px #3b78c3; }
footer { margin-top:36px; font-size:12px; color:var(--muted); }
#form h1 { text-align:center; font-size:24px; margin:8px 0 14px; letter-spacing:2px; }
#form .fields { display:flex; flex-wrap:wrap; gap:4px 32px; margin:0 0 10px; }
#form-table { font-size:15px; } #form-table th, #form-table td { padding:10px 12px; border-color:#8c959f; }
#form-table thead th { text-align:center; } #form-table tbody th { background:#fff; font-weight:600; }
#form-table .filled { font-variant-numeric:tabular-nums; padding:0 2px; }
#form-table .blank { color:var(--muted); }
#form .notes { font-size:12px; color:var(--muted); padding-left:22px; margin:8px 0 0; }
h2#detail { margin-top:48px; font-size:20px; } h2#detail + .en { color:var(--muted); margin:0 0 10px; }
"""



def render_html(t: Tally, form: list[FormRow], header: dict[str, str], notes: list[str], detail: list[TableRow],
                meta: dict, manifest: dict, precision: dict) -> str:
    """The whole page, the form first; every value from the run or the files passes through html.escape."""
    e = html.escape
    body = [
        _form_html(form, header, notes),
        f'<h2 id="detail">{e(DETAIL_TITLE)}</h2><p class="en">{e(DETAIL_TITLE_EN)}</p>',
        _meta_list([("填报期间 Period", meta["period"]), ("模型版本 Model version", meta["model_version"]),
                    ("数据 Run", meta["run"]), ("复核结论 Verdicts", meta["verdicts"] or "无 none — all counts are the model's"),
                    ("执法数据 Cases", meta.get("cases") or "无 none — tasks 3-5 left blank"),
                    ("生成时间 Generated", meta["generated"])]),
        *(f'<p class="callout">{e(w)}</p>' for w in meta["warnings"]),
        "<h3>统计明细 Detailed counts</h3>", _detail_html(detail, bool(meta["verdicts"])),
        _precision_html(precision) if (precision["rows"] or precision["notes"]) else "",
        "<h3>运行概况 Scoring run</h3>", _manifest_html(t, manifest),
        "<h3>分数分布 Score distributions</h3>", _legend(MODEL_LABELS),
        '<div class="charts">' + "".join(
            f'<figure class="chart"><figcaption>{e(BY_NAME[x].zh)} {e(x)}</figcaption>{histogram_svg(x, t.histograms[x])}</figure>'
            for x in MODEL_LABELS) + "</div>",
        '<p class="note">每个概率区间的条目数（对数坐标），模型原始分数，未经复核修正。 / Listings per probability bin, '
        'log scale; the model\'s scores, before any verdict.</p>',
        "<h3>各平台问题条目 Flagged listings per platform</h3>", _legend(VIOLATION_LABELS),
        '<p class="note">按每个条目最严重的标签着色 / coloured by each listing\'s most severe label</p>',
        _chart_or_empty(platform_bars(t)),
        "<h3>重点经营者 Top sellers</h3>", _top_sellers_html(t),
        "<h3>问题条目示例 Most severe flagged listings</h3>", _legend(LABEL_NAMES, "证据高亮 evidence: "),
        _samples_html(t),
        f'<footer>reportguard · {e(meta["generated"])} · 本页不含脚本与外部资源 / no scripts or external resources</footer>',
    ]
    return ("<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{e(FORM_TITLE)} · {e(meta['period'])}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n")


def _form_html(form: list[FormRow], header: dict[str, str], notes: list[str]) -> str:
    """The notice's form: title, header fields, 重点任务 | 落实情况, notes. Filled values in bold,
    blanks as the form's own ____."""
    e = html.escape
    fields = "".join(f'<span class="field"><b>{e(name)}：</b>{e(value)}</span>' for name, value in header.items())
    rows = []
    for row in form:
        sentence = "".join(
            e(literal) + ('<span class="blank">' + e(BLANK) + "</span>" if blank == BLANK
                          else f'<b class="filled">{e(blank)}</b>' if blank else "")
            for literal, blank in row.parts())
        rows.append(f"<tr><th scope=\"row\">{e(row.label)}</th><td>{sentence}</td></tr>")
    note_items = "".join(f"<li>{e(n)}</li>" for n in notes)
    return (f'<section id="form"><h1>{e(FORM_TITLE)}</h1><div class="fields">{fields}</div>'
            f'<table id="form-table"><colgroup><col style="width:34%"><col></colgroup>'
            f"<thead><tr><th>{e(COLUMNS[0])}</th><th>{e(COLUMNS[1])}</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f'<ol class="notes">{note_items}</ol></section>')


def _meta_list(items: list[tuple[str, str]]) -> str:
    return '<dl class="meta">' + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items) + "</dl>"


def _detail_html(rows: list[TableRow], with_verdicts: bool) -> str:
    e = html.escape
    # Fixed column widths: left to itself the browser squeezes the row names into three-line
    # cells and gives the space to the wide English headers of the number columns.
    widths = ("44px", "170px", "196px", "80px", "108px", "80px", "118px", "auto")
    head = "".join(f'<th class="{"num" if 3 <= k <= 5 else ""}">{_two_lines(h)}</th>'
                   for k, h in enumerate(h for j, h in enumerate(HEADER) if j != 1))
    out = ['<table id="detail-table" class="fixed"><colgroup>' + "".join(f'<col style="width:{w}">' for w in widths)
           + f"</colgroup><thead><tr>{head}</tr></thead><tbody>"]
    section = None
    for r in rows:
        if r.section != section:
            section = r.section
            out.append(f'<tr class="section"><td colspan="{len(widths)}">{e(section)}</td></tr>')
        nums = "".join(f'<td class="num">{_num(v)}</td>' for v in (r.total, r.confirmed, r.model_only))
        out.append(f'<tr><td class="num">{r.no}</td><td>{e(r.zh)}</td><td>{e(r.en)}</td>{nums}'
                   f'<td class="basis">{_two_lines(r.basis)}</td><td class="note">{e(r.note)}</td></tr>')
    out.append("</tbody></table>")
    if not with_verdicts:
        out.append('<p class="callout">未提供复核结论：所有标签计数均为模型结果（未公示资质由规则判定）。 / No verdicts given: '
                   "every label count is the model's (credential_missing by rule); none is reviewer-confirmed.</p>")
    return "".join(out)


def _two_lines(text: str) -> str:
    """'中文 English' -> the Chinese, and the English below it in smaller type (both escaped)."""
    zh, _, en = text.partition(" ")
    return html.escape(zh) + (f'<br><span class="en">{html.escape(en)}</span>' if en else "")


def _num(value) -> str:
    return '<span class="na">—</span>' if value is None else f"{value:,}"


def _precision_html(precision: dict) -> str:
    e = html.escape
    level = f"{precision['confidence'] * 100:g}% " if precision["confidence"] else ""
    out = [f"<h3>复核精确率 Precision from review ({e(precision['source'])})</h3>",
           "<p class=\"note\">仅供参考，不改变上表计数 / shown for context; it changes no count above</p>"]
    if precision["rows"]:
        out.append(f'<table id="precision-table"><thead><tr><th>模型 Model</th><th>标签 Label</th><th class="num">精确率 Precision</th>'
                   f'<th class="num">{e(level)}置信区间 interval</th><th class="num">复核 Reviewed</th><th class="num">确认 Confirmed</th>'
                   "<th>说明 Note</th></tr></thead><tbody>")
        for r in precision["rows"]:
            interval = f"{r['low']:.1%} – {r['high']:.1%}" if r["low"] is not None and r["high"] is not None else "—"
            out.append(f"<tr><td>{e(r['model'])}</td><td>{e(BY_NAME[r['label']].zh)} {e(r['label'])}</td>"
                       f'<td class="num">{r["estimate"]:.1%}</td><td class="num">{e(interval)}</td>'
                       f'<td class="num">{_num(r["reviewed"])}</td><td class="num">{_num(r["confirmed"])}</td>'
                       f'<td class="note">{e(r["note"])}</td></tr>')
        out.append("</tbody></table>")
    out += [f'<p class="callout">{e(n)}</p>' for n in precision["notes"]]
    return "".join(out)


def _manifest_html(t: Tally, manifest: dict) -> str:
    if not manifest:
        return (f'<p class="callout">没有找到运行清单（RUN.manifest.json），以下仅为从数据统计的结果。 / No manifest beside the run: '
                f"{t.listings:,} listings read.</p>")
    rows = manifest.get("rows") or {}
    seconds = (manifest.get("seconds") or {}).get("total")
    items = [("输入行数 Rows in", _fmt(rows.get("in"))), ("已评分 Accepted", _fmt(rows.get("accepted"))),
             ("拒收 Rejected", _fmt(rows.get("rejected"))), ("去重后文本 Unique texts", _fmt(rows.get("unique"))),
             ("模型 Model", f"{manifest.get('model_version', '?')} ({manifest.get('precision') or '?'})"),
             ("耗时 Time", f"{seconds:,.1f} s" if isinstance(seconds, (int, float)) else "?"),
             ("吞吐 Throughput", f"{_fmt(manifest.get('rows_per_second'))} rows/s"),
             ("判定 Decisions", ", ".join(f"{k} {v:,}" for k, v in sorted((manifest.get("decisions") or {}).items())))]
    for source in ((manifest.get("state") or {}).get("inputs") or [])[:10]:
        if isinstance(source, dict):
            items.append(("输入文件 Input", f"{Path(str(source.get('path', '?'))).name} · {_fmt(source.get('bytes'))} bytes · "
                                              f"sha256 {str(source.get('sha256', ''))[:16]}…"))
    return _meta_list(items)


def _fmt(value) -> str:
    return f"{value:,}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def _legend(labels, prefix: str = "") -> str:
    return ('<div class="legend">' + html.escape(prefix) + "".join(
        f'<span><span class="swatch" style="background:{COLOURS[x]}"></span>{html.escape(BY_NAME[x].zh)} {x}</span>'
        for x in labels) + "</div>")


def _chart_or_empty(bars) -> str:
    return bar_chart_svg(bars) if bars else '<p class="note">没有问题条目 / no flagged listings</p>'


def _top_sellers_html(t: Tally, limit: int = 15) -> str:
    e = html.escape
    top = [s for s in t.known_sellers() if s.flagged][:limit]
    if not top:
        return '<p class="note">没有问题经营者 / no seller has a flagged listing</p>'
    chart = bar_chart_svg([(seller_name(s), [(s.max_label, s.flagged)]) for s in top])
    head = "".join(f'<th class="num">{e(BY_NAME[x].zh)}</th>' for x in LABEL_NAMES)
    with_ids = any(s.shop_id for s in top)  # runs keyed by shop name only would show an empty column
    rows = "".join(
        f"<tr><td>{e(s.platform or UNKNOWN_PLATFORM)}</td><td>{e(s.shop_name)}</td>"
        + (f"<td>{e(s.shop_id)}</td>" if with_ids else "") +
        f'<td class="num">{s.listings:,}</td><td class="num">{s.flagged:,}</td>'
        + "".join(f'<td class="num">{s.labels[x]:,}</td>' for x in LABEL_NAMES)
        + f'<td><span class="badge" style="background:{COLOURS[s.max_label]}">{e(BY_NAME[s.max_label].zh)}</span></td></tr>'
        for s in top)
    return (_legend(VIOLATION_LABELS, "最严重标签 worst label: ") + chart +
            '<table id="sellers-table"><thead><tr><th>平台 Platform</th><th>店铺 Shop</th>'
            + ("<th>店铺ID Shop id</th>" if with_ids else "") +
            f'<th class="num">条目 Listings</th><th class="num">问题 Flagged</th>{head}<th>最严重 Worst</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _samples_html(t: Tally) -> str:
    e = html.escape
    samples = [item[3] for item in sorted(t.top, key=lambda item: item[:3], reverse=True)]
    if not samples:
        return '<p class="note">没有问题条目 / no flagged listings</p>'
    cards = []
    for s in samples:
        badges = "".join(f'<span class="badge" style="background:{COLOURS[x]}">{e(BY_NAME[x].zh)}</span>' for x in s["labels"])
        if s["reviewed"]:
            badges += '<span class="badge plain">复核确认 reviewed</span>'
            badges += "".join(f'<span class="badge plain struck" title="model label removed by a reviewer">{e(BY_NAME[x].zh)}</span>'
                              for x in s["model_labels"] if x not in s["labels"])
        scores = " · ".join(f"p_{x} {s['probs'][x]:.2f}" for x in MODEL_LABELS)
        desc = s["fields"]["description"]
        cards.append(
            f'<div class="card"><div class="head"><span class="id">{e(s["listing_id"])}</span>'
            f'<span>{e(s["platform"] or UNKNOWN_PLATFORM)}</span><span>{e(s["shop"] or "(unknown shop)")}</span>'
            f'<span>模型判定 model decision: {e(s["decision"])}</span></div><div>{badges}</div>'
            f'<div class="title">{highlight(s["fields"]["title"])}</div>'
            + (f'<div class="desc">{highlight(desc)}</div>' if desc[0] else "")
            + f'<div class="scores">{e(scores)}</div></div>')
    return "".join(cards)

