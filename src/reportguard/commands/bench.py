"""`reportguard bench [run|int8|scale|route]`: speed, what int8 costs, and what the tiered route
buys (the train/bench/ package)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from reportguard.core import paths

from . import add_output, command


def register(subparsers) -> None:
    p = command(subparsers, "bench", help="scorer vs transformers pipeline -> reports/bench.{md,json}; "
                                          "`bench int8`, `bench scale`, `bench route`",
                description="run (default): the scorer against a transformers pipeline on the same checkpoint and\n"
                            "listings, interleaved rounds -> bench.{md,json} (`make bench`).\n"
                            "int8: where int8 loses this model's decisions, layer class by layer class ->\n"
                            "int8_study.{md,json}.\n"
                            "scale: end-to-end scoring of generated dumps of --rows sizes: rows/s and peak RSS ->\n"
                            "bench_scale.{md,json}.\n"
                            "route: `reportguard score --route auto|teacher|tier1|tier2` end to end (evidence included)\n"
                            "and the transformers pipeline on two workloads (2,000 corpus-mix listings; held-out\n"
                            "ordinary listings + 1% violations + 30% reposts), interleaved rounds: listings/s, rows\n"
                            "settled per tier, macro-F1 and false alarms against the teacher, peak RSS, FLOPs per\n"
                            "tier -> bench_route.{md,json} (and a section of bench.md).",
                examples=["reportguard bench", "reportguard bench int8",
                          "reportguard bench scale --model /tmp/tiny/models/current --rows 100000 1000000",
                          "reportguard bench route --model models/current --rounds 2"])
    p.add_argument("what", nargs="?", default="run", choices=["run", "int8", "scale", "route"], help="which benchmark (default: run)")
    p.add_argument("--model", default=str(paths.current_model_dir()), metavar="DIR", help="bundle (default: %(default)s)")
    add_output(p, default=str(paths.reports_dir()), metavar="DIR", help="folder for the reports (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime and torch threads (default: all cores)")
    p.add_argument("--rounds", type=int, default=None, help="run, route: interleaved rounds per variant (figures are medians; "
                                                             "default: 3 for run, 2 for route)")
    p.add_argument("--rows", type=int, nargs="+", default=[300_000, 1_000_000], help="scale: dump sizes (default: %(default)s)")
    p.add_argument("--work-dir", default=None, metavar="DIR", help="scale, route: where the generated dumps go (default: the temp "
                                                                  "folder; route keeps its dumps and outputs when given)")
    p.add_argument("--listings", type=int, default=2000, help="route: workload (a)'s unique corpus-mix listings (default: %(default)s)")
    p.add_argument("--ordinary", type=int, default=None, metavar="N",
                   help="route: workload (b)'s held-out ordinary listings (default: all of data/background/test.jsonl)")
    p.add_argument("--no-pipeline", action="store_true", help="route: leave out the transformers pipeline")
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
    elif args.what == "route":
        from reportguard.train.bench.cli import route_options
        from reportguard.train.bench.route import run as route
        route(model, out, threads, route_options(args, args.rounds or 2))
    else:
        from reportguard.train.bench import run
        run(model, out, threads, args.rounds or 3)
    return 0
