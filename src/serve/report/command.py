"""`reportguard report RUN`: the command line over build.make_report."""
from __future__ import annotations

import argparse

from .build import make_report

EXAMPLE = """examples:
  reportguard report runs/nov/scored.parquet --unit 某某市市场监督管理局 --period 2026年11月
  reportguard report runs/nov/scored.parquet --verdicts reviews/labelled.jsonl --cases cases_nov.csv

--cases FILE is a CSV with a header row: task,cases,entities,fines,referrals (tasks 3, 4, 5; fines in yuan;
several rows for one task add up; empty cells stay ____), e.g.
  task,cases,entities,fines,referrals
  3,12,10,,
  4,9,9,314000,
  5,,2,,2"""


def add_report_command(subparsers) -> argparse.ArgumentParser:
    """`reportguard report RUN [--unit TEXT] [--period TEXT] [--date TEXT] [--verdicts FILE] [--cases FILE] ...`."""
    p = subparsers.add_parser(
        "report", help="the notice's statistics form (CSV, XLSX) and an HTML report for a scored run",
        description="Fill in the campaign notice's form (专项整治行动情况统计表: 重点任务 | 落实情况, five tasks)\n"
                    "from a scored run. table.csv and the first sheet of table.xlsx are the form; the second sheet\n"
                    "and the page's section 附：明细 hold the detailed counts; report.html shows the form first.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="output of `reportguard score` (.parquet, .jsonl or .csv)")
    p.add_argument("--unit", metavar="TEXT", default=None, help="填报单位, the reporting authority (default: left as ____)")
    p.add_argument("--period", metavar="TEXT", default=None, help='填报期间, e.g. "2026年11月" (default: this month)')
    p.add_argument("--date", metavar="TEXT", default=None, help='填报日期, e.g. "2026年12月1日" (default: today)')
    p.add_argument("--verdicts", metavar="FILE", default=None, help="reviewer verdicts, JSONL from the review tool (listing_id, labels); "
                                                    "without them the form's 'handled' blanks stay ____")
    p.add_argument("--cases", metavar="FILE", default=None, help="enforcement figures for tasks 3-5, CSV: task,cases,entities,fines,referrals "
                                                 "(without it those tasks stay ____)")
    p.add_argument("--precision", metavar="FILE", default=None, help="precision JSON from the review tool, shown as a table")
    p.add_argument("--out-dir", metavar="DIR", default=None, help="output folder (default: <RUN stem>.report/ beside RUN)")
    p.add_argument("--top", metavar="N", type=int, default=20, help="flagged listings shown on the page (default 20)")
    p.set_defaults(func=_report_main)
    return p


def _report_main(args) -> int:
    result = make_report(args.run, args.verdicts, args.precision, args.out_dir, args.period, args.top,
                         unit=args.unit, date=args.date, cases=args.cases)
    t, paths = result["tally"], result["paths"]
    print(f"{paths['html'].parent}: table.csv (the form), table.xlsx, report.html — {t.listings:,} listings, "
          f"{t.flagged:,} flagged, {len(t.known_sellers()):,} sellers"
          + (f", {t.reviewed:,} reviewed" if args.verdicts else " (model only: no verdicts)"))
    for row in result["form"]:
        print(f"  {row.label}：{row.text}")
    for warning in result["meta"]["warnings"]:
        print(f"warning: {warning}")
    return 0
