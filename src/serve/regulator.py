"""Where `reportguard report` used to live: now the package reportguard.serve.report (tally, form,
detail, writers, precision, charts, page). This module re-exports its names so that older imports
keep working; new code imports from reportguard.serve.report.

>>> from reportguard.serve import regulator, report
>>> regulator.make_report is report.make_report and regulator.campaign_table is report.detail_table
True
>>> regulator.TITLE_ZH
'专项整治行动情况统计表'
"""
from .report import add_report_command, default_out_dir, make_report, read_manifest
from .report.charts import COLOURS, bar_chart_svg, histogram_svg, platform_bars, seller_name, shorten
from .report.detail import DECISION, HEADER, INPUT, MIXED, MODEL, REVIEW, TableRow, detail_table
from .report.form import TITLE as TITLE_ZH
from .report.form import FormRow, campaign_form, read_cases
from .report.page import highlight, render_html
from .report.precision import read_precision
from .report.tally import PlatformStats, Tally, clip, read_verdicts, spans_for, tally_run, verdict_labels

__all__ = ["COLOURS", "DECISION", "FormRow", "HEADER", "INPUT", "MIXED", "MODEL", "PlatformStats", "REVIEW", "TITLE_ZH",
           "TableRow", "Tally", "add_report_command", "bar_chart_svg", "campaign_form", "campaign_table", "clip",
           "default_out_dir", "detail_table", "highlight", "histogram_svg", "make_report", "platform_bars", "read_cases",
           "read_manifest", "read_precision", "read_verdicts", "render_html", "seller_name", "shorten", "spans_for",
           "tally_run", "verdict_labels"]

#: The detailed table was called the campaign table before the notice's own form took that place.
campaign_table = detail_table
