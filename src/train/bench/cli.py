"""`python -m reportguard.train.bench run|int8|scale|worker`: the benchmarks' own command line
(`reportguard bench` calls the same functions; `worker` is how `run` starts each variant in its
own process)."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from reportguard.core import paths

from .scale import scale
from .scorer import _peak_rss_mb, _worker, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reportguard.train.bench")
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    w.add_argument("variant")
    w.add_argument("bundle")
    w.add_argument("texts")
    w.add_argument("out")
    w.add_argument("--threads", type=int, default=2)
    w.add_argument("--model-file", default=None)
    sc = sub.add_parser("scale", help="end-to-end score of generated dumps of the given sizes: rows/s and peak RSS, "
                                      "merged into reports/bench_scale.{md,json} with an extrapolation to 12M rows")
    sc.add_argument("--model", default=str(paths.current_model_dir()))
    sc.add_argument("--rows", type=int, nargs="+", default=[300_000, 1_000_000],
                    help="dump sizes, e.g. --rows 1000000 5000000")
    sc.add_argument("--work-dir", default=None, help="where the generated dumps go (default: the temp folder)")
    sc.add_argument("--out", default=str(paths.reports_dir()))
    sc.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    i8 = sub.add_parser("int8", help="where int8 loses this model's decisions (bench/int8.py)")
    i8.add_argument("--model", default=str(paths.current_model_dir()))
    i8.add_argument("--out", default=str(paths.reports_dir()))
    i8.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    r = sub.add_parser("run")
    r.add_argument("--model", default=str(paths.current_model_dir()))
    r.add_argument("--out", default=str(paths.reports_dir()))
    r.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    r.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant; figures are medians")
    args = parser.parse_args(argv)
    if args.cmd == "int8":
        from .int8 import run as int8_study
        int8_study(Path(args.model), Path(args.out), args.threads)
        return 0
    if args.cmd == "scale":
        scale(Path(args.model), args.rows, Path(args.out), args.threads, Path(args.work_dir) if args.work_dir else None)
        return 0
    if args.cmd == "worker":
        result = _worker(args.variant, args.bundle, args.texts, args.model_file, args.threads)
        result["peak_rss_mb"] = _peak_rss_mb()
        Path(args.out).write_text(json.dumps(result))
        return 0
    run(Path(args.model), Path(args.out), args.threads, args.rounds)
    return 0
