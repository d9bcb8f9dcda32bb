"""`reportguard baselines`: the keyword and TF-IDF baselines the model must beat."""
from __future__ import annotations

import argparse
from pathlib import Path

from reportguard.core import paths

from . import add_output, command


def register(subparsers) -> None:
    p = command(subparsers, "baselines", help="keyword and TF-IDF baselines -> reports/baselines.{md,json}",
                description="Score the labelled corpus with the two baselines the model must beat: keyword rules (the\n"
                            "notice's phrases on normalised text) and character TF-IDF with logistic regression.",
                examples=["reportguard baselines", "reportguard baselines --data data/labelled --output /tmp/reports"])
    p.add_argument("--data", default=str(paths.labelled_dir()), metavar="DIR", help="the labelled corpus (default: %(default)s)")
    add_output(p, default=str(paths.reports_dir()), metavar="DIR", help="folder for baselines.{md,json} (default: %(default)s)")
    p.set_defaults(func=_baselines)


def _baselines(args: argparse.Namespace) -> int:
    from reportguard.train.baselines import run_baselines
    run_baselines(Path(args.data), Path(args.output))
    return 0
