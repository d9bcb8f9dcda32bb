"""The files: `table.csv` (the form) and `table.xlsx` (the form, then 附：明细, then precision).

Both are written to a temporary name and renamed, so a reader never sees half a file. The CSV is
UTF-8 with a BOM (without it Excel opens the Chinese as mojibake) and has exactly two columns on
every row: the title, the header fields, 重点任务 | 落实情况, the five tasks, then notes (注1, 注2, …).
Text from flags or files that Excel would run as a formula (= + - @) is kept as text.
"""
from __future__ import annotations

import csv
from pathlib import Path

from reportguard.core.atomic import atomic_path

from .detail import HEADER as DETAIL_HEADER
from .detail import TITLE_ZH as DETAIL_TITLE
from .detail import TableRow
from .form import COLUMNS, TITLE, FormRow

FORM_SHEET, DETAIL_SHEET, PRECISION_SHEET = "统计表", "附：明细", "精确率 precision"


def form_csv_rows(form: list[FormRow], header: dict[str, str], notes: list[str]) -> list[list[str]]:
    """The form as rows of two cells (what table.csv holds, and the first sheet's layout)."""
    return ([[TITLE, ""]] + [[name, value] for name, value in header.items()] + [list(COLUMNS)]
            + [row.cells() for row in form] + [[f"注{k}", note] for k, note in enumerate(notes, start=1)])


def write_form_csv(form: list[FormRow], header: dict[str, str], notes: list[str], path: Path) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        for row in form_csv_rows(form, header, notes):
            writer.writerow([_defuse(cell) for cell in row])
    return path


def _defuse(value: str) -> str:
    """A cell Excel shows as text: a leading = + - @ would make it a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def write_xlsx(form: list[FormRow], header: dict[str, str], notes: list[str], detail: list[TableRow], path: Path,
               meta: dict, precision: dict) -> Path:
    """Sheet 1 the form, sheet 2 the detailed table (附：明细), sheet 3 precision when given."""
    from openpyxl import Workbook

    wb = Workbook()
    _form_sheet(wb.active, form, header, notes)
    _detail_sheet(wb.create_sheet(DETAIL_SHEET), detail, meta)
    if precision["rows"]:
        _precision_sheet(wb.create_sheet(PRECISION_SHEET), precision)
    with atomic_path(path) as tmp:
        wb.save(tmp)
    return path


def _form_sheet(ws, form: list[FormRow], header: dict[str, str], notes: list[str]) -> None:
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side

    ws.title = FORM_SHEET
    rows = form_csv_rows(form, header, notes)
    thin = Side(style="thin", color="808080")
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    table_start = 1 + len(header) + 1  # the 重点任务 | 落实情况 row
    for r, cells in enumerate(rows, start=1):
        for c, value in enumerate(cells, start=1):
            cell = _put(ws, r, c, value)
            cell.alignment = Alignment(wrap_text=True, vertical="center" if r <= table_start else "top")
            if table_start <= r < table_start + 1 + len(form):
                cell.border = box
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=2)
    ws.cell(row=1, column=1).font = Font(bold=True, size=16)
    ws.cell(row=1, column=1).alignment = Alignment(horizontal="center", vertical="center")
    for c in (1, 2):
        head = ws.cell(row=table_start, column=c)
        head.font = Font(bold=True)
        head.fill = PatternFill("solid", fgColor="DDE4EE")
        head.alignment = Alignment(horizontal="center", vertical="center")
    for r in range(2, table_start):
        ws.cell(row=r, column=1).font = Font(bold=True)
    for r in range(table_start + 1, table_start + 1 + len(form)):
        ws.row_dimensions[r].height = 48
    ws.column_dimensions["A"].width = 40
    ws.column_dimensions["B"].width = 96


def _detail_sheet(ws, rows: list[TableRow], meta: dict) -> None:
    """The detailed table under its title and the report's context."""
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    _put(ws, 1, 1, DETAIL_TITLE).font = Font(bold=True, size=14)
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(DETAIL_HEADER))
    context = [("填报期间 Period", meta["period"]), ("模型版本 Model version", meta["model_version"]),
               ("数据 Run", meta["run"]), ("复核结论 Verdicts", meta["verdicts"] or "无 none"),
               ("生成时间 Generated", meta["generated"])]
    for k, (name, value) in enumerate(context, start=2):
        _put(ws, k, 1, name).font = Font(bold=True)
        _put(ws, k, 3, value)
    header_row = len(context) + 3
    for c, name in enumerate(DETAIL_HEADER, start=1):
        cell = _put(ws, header_row, c, name)
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDE4EE")
        cell.alignment = Alignment(wrap_text=True, vertical="center")
    for k, r in enumerate(rows, start=header_row + 1):
        for c, value in enumerate(r.cells(), start=1):
            _put(ws, k, c, value).alignment = Alignment(wrap_text=c in (3, 4, 9), vertical="top")
    for c, width in enumerate((7, 26, 34, 44, 10, 14, 12, 22, 60), start=1):
        ws.column_dimensions[get_column_letter(c)].width = width
    ws.freeze_panes = ws.cell(row=header_row + 1, column=1)


def _put(ws, row: int, column: int, value):
    """Set a cell; strings stay strings (openpyxl would treat a leading '=' as a formula)."""
    cell = ws.cell(row=row, column=column, value=value)
    if isinstance(value, str):
        cell.data_type = "s"
    return cell


def _precision_sheet(ws, precision: dict) -> None:
    columns = ("模型 Model", "标签 Label", "精确率 Precision", "下限 Low", "上限 High", "复核数 Reviewed", "确认数 Confirmed", "说明 Note")
    for c, name in enumerate(columns, start=1):
        _put(ws, 1, c, name)
    for k, r in enumerate(precision["rows"], start=2):
        for c, value in enumerate((r["model"], r["label"], r["estimate"], r["low"], r["high"], r["reviewed"], r["confirmed"], r["note"]), start=1):
            cell = _put(ws, k, c, value)
            if 3 <= c <= 5:
                cell.number_format = "0.0%"
    for c, width in enumerate((28, 22, 14, 10, 10, 14, 14, 50), start=1):
        ws.column_dimensions[chr(64 + c)].width = width
