"""`reportguard train`, `evaluate` and `pretrain`: the data scientist's commands (torch, in handlers only)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from reportguard.core import paths

from . import add_output, command


def register(subparsers) -> None:
    p = command(subparsers, "train", help="fine-tune, calibrate, export and register a model bundle",
                description="Fine-tune the classifier on data/labelled, calibrate it on validation, export the ONNX\n"
                            "bundle (int8 gate), evaluate it, log everything to MLflow and, unless the config says\n"
                            "output.promote: false, point models/current at it. Config paths are relative to the\n"
                            "project home.",
                examples=["reportguard train --config configs/e5_small.yaml",
                          "reportguard train --config configs/e5_small.yaml --set training.epochs=4 "
                          "--set training.learning_rate=5e-5"])
    p.add_argument("--config", default="configs/e5_small.yaml", help="experiment YAML (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set training.epochs=2 (repeatable); parsed by the key's type, "
                        "an unknown key is an error")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (file, defaults and --set) as JSON and exit without training")
    p.set_defaults(func=_train)

    p = command(subparsers, "evaluate",
                help="score every evaluation-only set with a bundle -> reports/eval/<model_version>.{md,json}",
                description="Macro-F1 and per-label P/R/F1 on the random and writer-held-out tests, real public text\n"
                            "and the probes; false alarms on held-out ordinary listings; expected precision at\n"
                            "0.1/1/5% prevalence; keyword and TF-IDF baselines beside every number; logged to MLflow.",
                examples=["reportguard evaluate --model models/current"])
    p.add_argument("--model", default=str(paths.current_model_dir()), metavar="DIR",
                   help="a bundle directory (default: %(default)s)")
    p.add_argument("--config", default="configs/e5_small.yaml", help="where the data lives (its data: section) and MLflow")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value (repeatable)")
    add_output(p, default=str(paths.reports_dir() / "eval"), metavar="DIR",
               help="folder for <model_version>.{md,json} and the plots (default: %(default)s)")
    p.set_defaults(func=_evaluate)

    p = command(subparsers, "pretrain", help="masked-LM continued pretraining of a backbone on unlabelled text",
                description="Continue masked-LM training of a backbone on unlabelled text (domain-adaptive\n"
                            "pretraining); point a config's backbone.path at the output. A backbone without a\n"
                            "masked-LM head gets its new head trained alone first.",
                examples=["reportguard pretrain --max-steps 400",
                          "reportguard pretrain --train dump.parquet --max-steps 20000 --batch-size 64"])
    backbones = paths.models_dir() / "backbones"
    p.add_argument("--backbone", default=str(backbones / "multilingual-e5-small-pruned"), metavar="DIR")
    p.add_argument("--train", nargs="+", default=[str(paths.data_dir() / "unlabelled" / "train.txt")],
                   help=".txt (one passage per line) or platform dumps (CSV/JSONL/Parquet)")
    p.add_argument("--validation", nargs="+", default=[str(paths.data_dir() / "unlabelled" / "validation.txt")])
    add_output(p, default=str(backbones / "e5-small-dapt"), metavar="DIR", help="the continued backbone (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--limit", type=int, default=None, help="use a random sample of this many training passages")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--head-warmup-steps", type=int, default=None,
                   help="train a new masked-LM head alone first (default: max-steps/4 if the backbone has none, else 0)")
    p.add_argument("--head-learning-rate", type=float, default=1e-3)
    p.set_defaults(func=_pretrain)


def _train(args: argparse.Namespace) -> int:
    from reportguard.train.config import load_config
    config = load_config(args.config, args.set)  # a bad key or value fails here, before any data is read
    if args.print_config:
        print(json.dumps(config.to_dict(), ensure_ascii=False, indent=1))
        return 0
    from reportguard.train.pipeline import train
    train(config)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from reportguard.train.config import load_config
    from reportguard.train.evaluate import evaluate_bundle
    config = load_config(args.config, args.set)
    result = evaluate_bundle(args.model, config["data"], args.output, config["mlflow"])
    print(f"wrote {Path(args.output) / result['model_version']}.md and .json")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from reportguard.train.pretrain import pretrain
    summary = pretrain(Path(args.backbone), args.train, args.validation, Path(args.output), args.max_steps, args.batch_size,
                       args.learning_rate, args.max_length, threads=args.threads, limit=args.limit,
                       head_warmup_steps=args.head_warmup_steps, head_learning_rate=args.head_learning_rate)
    print(json.dumps(summary, indent=1))
    return 0
