"""Benchmarks: how fast the scorer is, what int8 costs, how it scales.

- scorer.py: `make bench` / `reportguard bench`: the scorer against a transformers pipeline on the
  same checkpoint and listings, in interleaved rounds (reports/bench.{md,json});
- int8.py: `reportguard bench int8`: where int8 loses this model's decisions, layer class by
  layer class (reports/int8_study.{md,json});
- route.py: `reportguard bench route` (run by `make bench` after scorer.py): the tiered route
  (`reportguard score --route auto`) against `--route teacher`, each tier alone and the
  transformers pipeline, on 2,000 corpus-mix listings and a realistic-prevalence dump, end to end
  with evidence, interleaved rounds (reports/bench_route.{md,json}, a section of bench.md);
- scale.py: `reportguard bench scale`: end-to-end scoring of generated dumps of growing size
  (reports/bench_scale.{md,json}), with the dump generator in dump.py;
- cli.py: `python -m reportguard.train.bench run|int8|scale|route` (and `worker` / `route-worker`, one
  variant per process).
"""
from .dump import make_dump
from .scale import extrapolate, render_scale, scale
from .scorer import matmul_peak, model_flops, render, run

__all__ = ["extrapolate", "make_dump", "matmul_peak", "model_flops", "render", "render_scale", "run", "scale"]
