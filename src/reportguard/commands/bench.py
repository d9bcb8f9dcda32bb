"""`reportguard bench [run|int8|scale]`: speed and what int8 costs (the train/bench/ package)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from reportguard.core import paths

from . import add_output, command


def register(subparsers) -> None:
    p = command(subparsers, "bench", help="scorer vs transformers pipeline -> reports/bench.{md,json}; "
                                          "`bench int8`, `bench scale`",
                description="run (default): the scorer against a transformers pipeline on the same checkpoint and\n"
                            "listings, interleaved rounds -> bench.{md,json} (`make bench`).\n"
                            "int8: where int8 loses this model's decisions, layer class by layer class ->\n"
                            "int8_study.{md,json}.\n"
                            "scale: end-to-end scoring of generated dumps of --rows sizes: rows/s and peak RSS ->\n"
                            "bench_scale.{md,json}.",
                examples=["reportguard bench", "reportguard bench int8",
                          "reportguard bench scale --model /tmp/tiny/models/current --rows 100000 1000000"])
    p.add_argument("what", nargs="?", default="run", choices=["run", "int8", "scale"], help="which benchmark (default: run)")
    p.add_argument("--model", default=str(paths.current_model_dir()), metavar="DIR", help="bundle (default: %(default)s)")
    add_output(p, default=str(paths.reports_dir()), metavar="DIR", help="folder for the reports (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime and torch threads (default: all cores)")
    p.add_argument("--rounds", type=int, default=3, help="run: interleaved rounds per variant (figures are medians)")
    p.add_argument("--rows", type=int, nargs="+", default=[300_000, 1_000_000], help="scale: dump sizes (default: %(default)s)")
    p.add_argument("--work-dir", default=None, metavar="DIR", help="scale: where the generated dumps go (default: the temp folder)")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    threads = args.threads or os.cpu_count() or 2
    model, out = Path(args.model), Path(args.output)
    if args.what == "int8":
        from reportguard.train.bench.int8 import run as int8_study
        int8_study(model, out, threads)
    elif args.what == "scale":
        from reportguard.train.bench import scale
        scale(model, args.rows, out, threads, Path(args.work_dir) if args.work_dir else None)
    else:
        from reportguard.train.bench import run
        run(model, out, threads, args.rounds)
    return 0
