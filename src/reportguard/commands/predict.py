"""`reportguard predict TEXT...`: score texts without writing a file (reportguard/api.py)."""
from __future__ import annotations

import argparse
import json
import sys

from reportguard.core import paths
from reportguard.core.errors import InputError

from . import command


def register(subparsers) -> None:
    p = command(subparsers, "predict", help="score one or more texts; one JSON object per text",
                description="Score each TEXT as a listing's title with the batch scorer's code, and print one JSON\n"
                            "object per text: labels, probabilities per label, decision (block/review/pass),\n"
                            "evidence and model_version. With no TEXT, each line of stdin is one text.",
                examples=["reportguard predict '代办各类质检报告 不用寄样 当天出'",
                          "reportguard predict '不锈钢保温杯 附SGS检测报告' '检测报告包过' --model models/current",
                          "cut -f2 titles.tsv | reportguard predict"])
    p.add_argument("texts", nargs="*", metavar="TEXT", help="listing texts (default: one per stdin line)")
    p.add_argument("--model", default=str(paths.current_model_dir()), metavar="DIR",
                   help="model bundle directory (default: $REPORTGUARD_MODEL, else models/current in the project home)")
    p.add_argument("--attribution", choices=["occlusion", "none"], default="occlusion",
                   help="model evidence by occluding clauses (default) or lexicon evidence only")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from reportguard.api import load
    texts = args.texts or [line.rstrip("\r\n") for line in sys.stdin]
    if not texts:
        raise InputError("no text to score: give TEXT arguments or lines on stdin")
    results = load(args.model, threads=args.threads, attribution=args.attribution).predict(texts)
    for result in results:
        print(json.dumps(result, ensure_ascii=False))
    return 1 if all("error" in r for r in results) else 0
