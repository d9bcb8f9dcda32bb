"""The Spark engine's command-line options, apart from the engine so that building the CLI's parser
imports neither the engine nor pyspark. `reportguard score` and spark_engine's own entry point
both use this one definition."""
from __future__ import annotations

import argparse


def add_spark_options(parser: argparse.ArgumentParser) -> None:
    """Spark options for `reportguard score` (and for this module's own entry point)."""
    g = parser.add_argument_group("Spark engine (--engine spark: OUT is a directory of partitioned Parquet)")
    g.add_argument("--engine", choices=["local", "spark"], default="local",
                   help="local: this machine, resumable (default); spark: Apache Spark (docs/spark.md)")
    g.add_argument("--master", default=None, help="Spark master, e.g. local[2] (default: spark-submit's, else local[*])")
    g.add_argument("--dedup", choices=["global", "partition"], default="global",
                   help="score each distinct text once across the dataset (default) or once per task")
    g.add_argument("--partition-by", default="decision",
                   help="output partition column: decision (default), another output column, or none")
    g.add_argument("--partitions", type=int, default=None, help="inference tasks (default 4 x default parallelism)")
    g.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting (repeatable)")
