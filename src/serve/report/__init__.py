"""`reportguard report RUN`: the campaign notice's statistics form, its detailed counts, and a report page.

The notice (市监检测发〔2021〕54号) asks each reporting period for its 附件, 专项整治行动情况统计表:
a two-column form, 重点任务 | 落实情况, with one fill-in-the-blanks sentence per task. A scoring
run (plus reviewers' verdicts and the enforcement side's case figures, when there are some) holds
what it takes to fill it in.

Outputs, in DIR (default `<RUN stem>.report/` beside RUN):
- `table.csv`: the form itself, two columns (form.py, writers.py), UTF-8 with a BOM for Excel;
- `table.xlsx`: sheet 1 the form, sheet 2 附：明细 (the 18-row detailed table, detail.py), sheet 3
  precision from review when `--precision` was given (precision.py);
- `report.html`: one self-contained page, the form first, then 附：明细 with the detailed table,
  the run's manifest, charts as inline SVG (charts.py), top sellers and the most severe flagged
  listings with their evidence highlighted (page.py).

The modules, along the seams of the work:
- tally.py: one streaming pass over the run (verdicts applied) into a Tally;
- form.py: the notice's form: its five tasks, what each blank counts, `--cases` for tasks 3-5;
- detail.py: the detailed table, reviewer-confirmed vs model-only;
- writers.py: CSV and XLSX; precision.py: the review tool's precision export, read defensively;
- charts.py: SVG charts; page.py: the HTML page and its CSS;
- build.py: make_report, which ties them together; command.py: the `report` subcommand.

Importing this package loads neither pyarrow nor openpyxl: they are imported when a Parquet run
is read or a workbook written.
"""
from .build import default_out_dir, make_report, read_manifest
from .command import add_report_command
from .detail import detail_table
from .form import TASKS, campaign_form, form_notes, read_cases
from .precision import read_precision
from .tally import Tally, read_verdicts, tally_run

__all__ = ["Tally", "TASKS", "add_report_command", "campaign_form", "default_out_dir", "detail_table", "form_notes",
           "make_report", "read_cases", "read_manifest", "read_precision", "read_verdicts", "tally_run"]
