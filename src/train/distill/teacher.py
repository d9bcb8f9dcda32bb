"""Soft labels: the teacher's calibrated logits for every transfer text, cached on disk.

The teacher is the shipped bundle itself, run through the scorer's own path
(serve.bundle.Bundle.calibrated_logits: int8 with the fp32 fallback near the cuts, long texts as
windows), so the students learn what the scorer would have said, in the units the routing cuts
are in (logit / T per label; p = sigmoid of it).

Labelling 200,000 texts takes over an hour on 2 cores (about 45 texts/s), so it is written in
parts of `part_size` texts under `cache_dir/<teacher hash>/`, each part named by its position and
the hash of its texts; a rerun (after a crash, or a second `reportguard distill` with the same
teacher) reads the parts it has and labels only the rest. A smaller transfer set with the same
seed is a prefix of a larger one (transfer.py), so it reuses the larger one's parts, and a
larger one continues where a smaller one stopped.
"""
from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from reportguard.core.atomic import atomic_path


def part_name(k: int, texts: list[str]) -> str:
    digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()
    return f"part-{k:05d}-{digest[:16]}.npy"


def teacher_logits(bundle, texts: list[str], cache_dir: Path, part_size: int = 5000, batch_size: int = 32) -> np.ndarray:
    """(len(texts), labels) calibrated logits of `bundle` for `texts`, from the cache where it has them."""
    folder = Path(cache_dir) / bundle.content_sha256[:16]
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    started = time.perf_counter()
    done_now = 0
    for k, start in enumerate(range(0, len(texts), part_size)):
        chunk = texts[start:start + part_size]
        path = folder / part_name(k, chunk)
        if path.exists():
            logits = np.load(path)
            if len(logits) == len(chunk):
                parts.append(logits)
                continue
        logits, _ = bundle.calibrated_logits(chunk, batch_size)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, logits.astype(np.float32))
        parts.append(logits.astype(np.float32))
        done_now += len(chunk)
        rate = done_now / max(time.perf_counter() - started, 1e-9)
        print(f"teacher: {start + len(chunk):,}/{len(texts):,} texts labelled ({rate:.0f} texts/s this run)", file=sys.stderr)
    return np.concatenate(parts) if parts else np.zeros((0, len(bundle.thresholds)), dtype=np.float32)
