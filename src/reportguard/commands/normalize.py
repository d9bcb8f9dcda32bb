"""`reportguard normalize TEXT...`: the normaliser's output, as the model reads text."""
from __future__ import annotations

import argparse
import sys

from . import command


def register(subparsers) -> None:
    p = command(subparsers, "normalize", help="print the normalised form of TEXT (or of each stdin line)",
                description="Print each TEXT as the shared normaliser (core/normalize.py) leaves it: traditional\n"
                            "script, full-width letters, separators and emoji between characters, homophones, pinyin\n"
                            "initials and contact lures folded. The normaliser's version goes to stderr.",
                examples=["reportguard normalize '檢*測報告 ＣＭＡ 包🔥过'", "reportguard normalize < titles.txt"])
    p.add_argument("text", nargs="*", metavar="TEXT", help="texts (default: one per stdin line)")
    p.set_defaults(func=_normalize)


def _normalize(args: argparse.Namespace) -> int:
    from reportguard.core.normalize import NORMALIZER_VERSION, normalize_text
    texts = args.text or [line.rstrip("\n") for line in sys.stdin]
    for t in texts:
        print(normalize_text(t))
    print(f"# normaliser {NORMALIZER_VERSION}", file=sys.stderr)
    return 0
