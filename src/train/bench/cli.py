"""`python -m reportguard.train.bench run|int8|scale|route|worker|route-worker`: the benchmarks' own
command line (`reportguard bench` calls the same functions; `worker` is how `run` starts each
variant in its own process, `route-worker` how `route` times one tier alone)."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from reportguard.core import paths

from .route import RouteBenchOptions, tier_worker
from .route import run as run_route
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
    _add_route_parsers(sub)
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
    if args.cmd == "route":
        run_route(Path(args.model), Path(args.out), args.threads, route_options(args))
        return 0
    if args.cmd == "route-worker":
        result = tier_worker(args.tier, args.bundle, args.texts, args.threads)
        result["peak_rss_mb"] = _peak_rss_mb()
        Path(args.out).write_text(json.dumps(result))
        return 0
    if args.cmd == "worker":
        result = _worker(args.variant, args.bundle, args.texts, args.model_file, args.threads)
        result["peak_rss_mb"] = _peak_rss_mb()
        Path(args.out).write_text(json.dumps(result))
        return 0
    run(Path(args.model), Path(args.out), args.threads, args.rounds)
    return 0


def _add_route_parsers(sub) -> None:
    """`route` (bench/route.py) and `route-worker` (one tier alone, model only, in its own process)."""
    rw = sub.add_parser("route-worker")
    rw.add_argument("tier")
    rw.add_argument("bundle")
    rw.add_argument("texts")
    rw.add_argument("out")
    rw.add_argument("--threads", type=int, default=2)
    ro = sub.add_parser("route", help="the tiered route against --route teacher, each tier and the transformers pipeline "
                                      "on two workloads, interleaved rounds -> reports/bench_route.{md,json}")
    ro.add_argument("--model", default=str(paths.current_model_dir()))
    ro.add_argument("--out", default=str(paths.reports_dir()))
    ro.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    add_route_options(ro)


def add_route_options(parser: argparse.ArgumentParser, rounds: bool = True) -> None:
    """The `route` benchmark's options (also `reportguard bench route`'s)."""
    d = RouteBenchOptions()
    if rounds:
        parser.add_argument("--rounds", type=int, default=d.rounds, help="interleaved rounds per variant; figures are medians")
    parser.add_argument("--listings", type=int, default=d.corpus_listings, help="workload (a): unique corpus-mix listings")
    parser.add_argument("--ordinary", type=int, default=None, help="workload (b): held-out ordinary listings used (default: all)")
    parser.add_argument("--no-pipeline", action="store_true", help="leave out the transformers pipeline")
    parser.add_argument("--work-dir", default=None, help="keep the dumps and scored outputs here (default: a temp folder, removed)")


def route_options(args: argparse.Namespace, rounds: int | None = None) -> RouteBenchOptions:
    return RouteBenchOptions(rounds=rounds or args.rounds, corpus_listings=args.listings, ordinary=args.ordinary,
                             pipeline=not args.no_pipeline, work_dir=args.work_dir)
