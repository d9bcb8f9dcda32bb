"""The `reportguard` command: one registry of commands, one way to fail.

Commands: reportguard/commands/, one module per command (or group), each with
`register(subparsers)`; `commands.MODULES` is the list, in `--help` order. Building the parser
imports no torch, onnxruntime, tokenizers, FastAPI or scikit-learn: handlers import what they use
when they run, so `reportguard --help` and the commands of an installed extra work on an install
with only that extra (tests/test_cli.py and tests/test_core_weight.py check this).

Global options: `--home DIR` (the project home every default path is under, core/paths.py; else
$REPORTGUARD_HOME, else the current folder) and `--version` (package, model and normaliser).

Errors: the project's own (core/errors.py: InputError, UsageError and what derives from them:
bundle, record and scorer errors) are printed as one line, `reportguard: error: ...`, with exit
status 1 for bad data or a refused input and 2 for usage (argparse's own usage errors exit 2 as
well). Anything else is a bug and shows its traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from reportguard.core import paths
from reportguard.core.errors import ReportguardError, UsageError, one_line

from . import __version__
from .commands import Formatter, register_all

EXAMPLES = """\
examples:
  reportguard score data/sample/platform_export.csv --output runs/sample/scored.parquet
  reportguard report runs/sample/scored.parquet --unit 某某市市场监督管理局 --period 2026年11月
  reportguard predict '代办各类质检报告 不用寄样 当天出'
  reportguard train --config configs/e5_small.yaml
  reportguard COMMAND --help

exit status: 0 ok; 1 bad data or a refused input; 2 usage."""


def version_text() -> str:
    """Package, model (the default bundle's, if there is one) and normaliser versions."""
    from reportguard.core.normalize import NORMALIZER_VERSION
    model_dir = paths.current_model_dir()
    try:
        meta = json.loads((model_dir / "bundle.json").read_text(encoding="utf-8"))
        model = f"{meta.get('model_version', 'unknown')} ({model_dir})"
        trained_with = meta.get("normalizer_version")
        if trained_with and trained_with != NORMALIZER_VERSION:
            model += f", trained with normaliser {trained_with}: it will not load with this one"
    except (OSError, ValueError):
        model = f"none at {model_dir}"
    return f"reportguard {__version__}\nmodel {model}\nnormaliser {NORMALIZER_VERSION}"


class _Version(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the package, model and normaliser versions and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reportguard", formatter_class=Formatter, epilog=EXAMPLES,
        description="Find listings that sell counterfeit inspection and testing reports (市监检测发〔2021〕54号):\n"
                    "build the corpus, train, score platform dumps, fill in the notice's form, review what the\n"
                    "model flagged.")
    parser.add_argument("--version", action=_Version)
    parser.add_argument("--home", metavar="DIR", default=None,
                        help="the project home: default paths (data/, models/current, reports/, configs/) are under it "
                             "(default: $REPORTGUARD_HOME, else the current folder)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_all(sub)
    return parser


def _apply_home(argv: list[str]) -> None:
    """`--home` before the parser is built, so that the defaults shown in --help are under it."""
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    pre.add_argument("--home", default=None)
    try:
        known, _ = pre.parse_known_args(argv)
    except argparse.ArgumentError:
        return  # `--home` with no value: the full parser says so
    home = known.home
    if home is None and paths.ENV_HOME in os.environ:
        home = paths.home()
        where = f"${paths.ENV_HOME}={home}"
    else:
        where = f"--home {home}"
    if home is not None and not Path(home).is_dir():
        raise UsageError(f"{where}: no such folder")
    if known.home is not None:
        paths.set_home(known.home)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        _apply_home(argv)
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except ReportguardError as exc:
        print(f"reportguard: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("reportguard: interrupted", file=sys.stderr)
        return 130
    finally:
        paths.set_home(None)


if __name__ == "__main__":
    sys.exit(main())
