"""`reportguard score INPUT... --output OUT`: the batch scorer (serve/score.py), or on Spark (serve/spark_engine.py)."""
from __future__ import annotations

import argparse

from reportguard.core import paths
from reportguard.core.errors import InputError, UsageError

from . import command

DESCRIPTION = """\
Score platform exports: CSV/TSV, JSONL or Parquet files, optionally gzipped, or folders of shards.
Headers map through the column aliases (configs/columns.yaml in the project home, else the
packaged defaults: 商品ID -> listing_id, 商品标题 -> title, ...). Each accepted row gets calibrated
probabilities, labels, a decision (block/review/pass) and evidence (--route picks the models: the
bundle's student tiers in front of the teacher by default); every rejected row goes to
OUT.rejects.jsonl with its file, line and reason, and OUT.manifest.json holds the counts, input
hashes and versions. Inputs are checked before the model loads. A killed run resumes when the same
command runs again.

Exit status: 0 ok; 1 an input was refused (missing file, missing column, bad bundle) or every row
was rejected; 2 a usage error."""


def register(subparsers) -> None:
    p = command(subparsers, "score", help="score platform dumps (CSV/JSONL/Parquet, .gz, or directories of shards)",
                description=DESCRIPTION,
                examples=["reportguard score data/sample/platform_export.csv --output runs/sample/scored.parquet",
                          "reportguard score export_2026-11/*.csv.gz --output runs/nov/scored.parquet --model models/current",
                          "reportguard score --engine spark dumps/ --output runs/spark_out --master 'local[2]'"])
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="files (.csv, .tsv, .jsonl, .parquet, optionally .gz) or folders of them")
    p.add_argument("--output", required=True, metavar="OUT",
                   help="OUT.parquet, OUT.jsonl or OUT.csv (optionally .gz); a directory with --engine spark")
    p.add_argument("--model", default=str(paths.current_model_dir()), metavar="DIR",
                   help="model bundle directory (default: $REPORTGUARD_MODEL, else models/current in the project home)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per model call (default: %(default)s)")
    p.add_argument("--chunk-size", type=int, default=5000, help="rows per committed chunk, the resume unit (default: %(default)s)")
    p.add_argument("--columns", default=None, metavar="YAML",
                   help="column mapping (default: configs/columns.yaml in the project home, else the packaged one)")
    p.add_argument("--encoding", default=None, help="force an input encoding (default: per line, UTF-8, then GB18030)")
    p.add_argument("--attribution", choices=["occlusion", "none"], default="occlusion",
                   help="model evidence by occluding clauses of flagged listings (default) or lexicon evidence only")
    p.add_argument("--route", choices=["auto", "teacher", "tier1", "tier2"], default="auto",
                   help="which models score each listing: auto (default) runs the bundle's cascade, the cheap student "
                        "tiers settling the listings far from every decision threshold and the teacher the rest (a bundle "
                        "without tiers, or whose gate failed, scores with the teacher alone); teacher: the teacher on every "
                        "listing, the scorer's output before tiers, exactly; tier1, tier2: that student alone on every "
                        "listing, for diagnosis (not for decisions)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from reportguard.serve.spark_options import add_spark_options
    add_spark_options(p)
    p.set_defaults(func=_score)


def _score(args: argparse.Namespace) -> int:
    from reportguard.serve.score import ScoreOptions, score, summary
    options = ScoreOptions(model=args.model, threads=args.threads, batch_size=args.batch_size, chunk_size=args.chunk_size,
                           columns=args.columns, encoding=args.encoding, attribution=args.attribution,
                           route=args.route, progress=not args.quiet)
    if args.engine == "spark":  # OUT is then a directory of partitioned Parquet (docs/spark.md)
        bad = [item for item in args.conf if "=" not in item]
        if bad:
            raise UsageError(f"--conf {bad[0]}: expected KEY=VALUE")
        from reportguard.serve.spark_engine import score_from_args
        manifest = score_from_args(args, options)
    else:
        manifest = score(args.inputs, args.output, options)
        print(summary(manifest))
    rows = manifest["rows"]
    if rows["in"] and not rows["accepted"]:
        raise InputError(f"all {rows['in']:,} input rows were rejected; the reasons are in {manifest['rejects']}")
    return 0
