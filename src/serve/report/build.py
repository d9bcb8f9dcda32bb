"""Putting it together: tally RUN once, fill the form and the detail table, write the three files."""
from __future__ import annotations

from datetime import date as _date
from datetime import datetime
from pathlib import Path

from reportguard.core.atomic import write_text_atomic

from ..sellers import run_stem
from .detail import detail_table
from .form import BLANK, HEADER_FIELDS, campaign_form, form_notes, read_cases
from .page import render_html
from .precision import read_precision
from .tally import Tally, read_verdicts, tally_run
from .writers import write_form_csv, write_xlsx


def default_out_dir(run: Path) -> Path:
    return run.with_name(f"{run_stem(run)}.report")


def read_manifest(run: Path) -> dict:
    """RUN.manifest.json when it is there and readable; a hand-made run has none."""
    import json

    path = run.with_name(run.name + ".manifest.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def make_report(run: str | Path, verdicts: str | Path | None = None, precision: str | Path | None = None,
                out_dir: str | Path | None = None, period: str | None = None, top: int = 20, *,
                unit: str | None = None, date: str | None = None, cases: str | Path | None = None) -> dict:
    """Tally RUN (with verdicts), write table.csv, table.xlsx and report.html; returns paths, form and counts.

    `unit`, `period` and `date` fill the form's 填报单位 / 填报期间 / 填报日期 (the unit stays ____
    when not given; the period defaults to this month, the date to today). `cases` is the --cases
    CSV for tasks 3-5.
    """
    run = Path(run)
    verdict_map = read_verdicts(verdicts) if verdicts else None
    case_map, case_warnings = read_cases(cases) if cases else (None, [])
    t = tally_run(run, verdict_map, top)
    manifest = read_manifest(run)
    model_version, warnings = _model_version(t, manifest)
    with_verdicts = verdict_map is not None
    form = campaign_form(t, with_verdicts, case_map)
    notes = form_notes(t, with_verdicts, Path(cases).name if cases else None)
    now = datetime.now()
    period = period or f"{now:%Y}年{now.month}月"
    today = _date.today()
    header = dict(zip(HEADER_FIELDS, (unit or BLANK, period, date or f"{today.year}年{today.month}月{today.day}日")))
    detail = detail_table(t, with_verdicts)
    meta = {"period": period, "model_version": model_version,
            "run": f"{run.name} ({t.listings:,} listings)", "generated": now.isoformat(timespec="seconds"),
            "verdicts": f"{Path(verdicts).name} ({t.verdicts_given:,} verdicts, {t.reviewed:,} in this run)" if verdicts else "",
            "cases": Path(cases).name if cases else "", "warnings": warnings + case_warnings}
    shown_precision = read_precision(precision, model_version)
    out = Path(out_dir) if out_dir else default_out_dir(run)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": write_form_csv(form, header, notes, out / "table.csv"),
             "xlsx": write_xlsx(form, header, notes, detail, out / "table.xlsx", meta, shown_precision)}
    page = out / "report.html"
    write_text_atomic(page, render_html(t, form, header, notes, detail, meta, manifest, shown_precision))
    paths["html"] = page
    return {"paths": paths, "form": form, "notes": notes, "header": header, "table": detail, "tally": t, "meta": meta}


def _model_version(t: Tally, manifest: dict) -> tuple[str, list[str]]:
    """The run's model version, with a warning when rows disagree (a run mixing models is suspect)."""
    versions = [v for v, _ in t.model_versions.most_common() if v]
    warnings = []
    if len(versions) > 1:
        warnings.append(f"rows carry {len(versions)} model versions {versions[:5]}; counts mix them")
    if versions and manifest.get("model_version") and manifest["model_version"] not in versions:
        warnings.append(f"manifest model {manifest['model_version']} differs from the rows' {versions[0]}")
    return (versions[0] if versions else str(manifest.get("model_version") or "unknown")), warnings
