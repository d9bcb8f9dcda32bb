"""`reportguard report RUN`: the notice's statistics form and a report page. Its parser, handler and
help are serve/report/command.py's; here it joins the registry and gets the CLI's conventions."""
from __future__ import annotations

from . import adopt_output_flags


def register(subparsers) -> None:
    from reportguard.serve.report import add_report_command  # no pyarrow or openpyxl until a run is read or written
    adopt_output_flags(add_report_command(subparsers))
