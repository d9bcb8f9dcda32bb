"""Which rows train, which fit thresholds, and which evaluate: one place for every split.

- **train**: the corpus's train split, the ordinary listings' train writers, and the real-text
  snippets from the sites that may train;
- **validation** (early stopping, temperatures, flag and block cuts): the corpus's validation
  split and the ordinary listings' validation rows, so the cuts are chosen with ordinary
  listings in view;
- **evaluation only**, never trained on or used for a threshold: `test` (whole writers held
  out), `test_random` (the random split, for comparison), `ordinary` (held-out writers of the
  ordinary listings), `real` (real public text from evaluation-only sites), `probes`
  (counterfactual pairs, one family per shortcut), `external` (data/external, written by an
  independent writer).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from .config import resolve
from .corpus import load_split


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        r.setdefault("tags", [])
        r.setdefault("qualification", "")
        r.setdefault("title", "")
    return rows


def training_rows(data: dict) -> dict[str, list[dict]]:
    """train and validation rows for a config's `data` section."""
    labelled = resolve(data["dir"])
    background = resolve(data.get("background_dir") or "data/background")
    real = resolve(data.get("real_dir") or "data/real")
    ordinary = read_jsonl(background / "train.jsonl")
    cap = data.get("background_max_train")
    if cap is not None and len(ordinary) > cap:
        # A fixed, seeded sample: ordinary listings outnumber the rest, and each one costs a
        # training step; the cap keeps `make train` within its time on 2 cores.
        ordinary = random.Random(13).sample(ordinary, int(cap))
    splits = {"train": load_split(labelled, "train") + ordinary + read_jsonl(real / "train.jsonl"),
              "validation": load_split(labelled, "validation") + read_jsonl(background / "validation.jsonl")}
    for extra in data.get("extra_train") or []:
        rows = read_jsonl(resolve(extra))
        splits["train"] += rows
        print(f"+ {len(rows)} extra training rows from {extra}")
    return splits


def training_files(data: dict) -> list[Path]:
    """Every file training reads, for the data hash."""
    labelled = resolve(data["dir"])
    background = resolve(data.get("background_dir") or "data/background")
    real = resolve(data.get("real_dir") or "data/real")
    files = [labelled / "train.jsonl", labelled / "validation.jsonl", background / "train.jsonl",
             background / "validation.jsonl", real / "train.jsonl"] + [resolve(p) for p in data.get("extra_train") or []]
    return [f for f in files if f.exists()]


def evaluation_sets(data: dict) -> dict[str, list[dict]]:
    """Every evaluation-only set that exists, by name."""
    labelled = resolve(data["dir"])
    background = resolve(data.get("background_dir") or "data/background")
    real = resolve(data.get("real_dir") or "data/real")
    probes = resolve(data.get("probes_dir") or "data/probes")
    external = resolve(data.get("external_dir") or "data/external")
    sets = {"test": load_split(labelled, "test"),
            "test_random": load_split(labelled, "test_random") if (labelled / "test_random.jsonl").exists() else [],
            "ordinary": read_jsonl(background / "test.jsonl"),
            "real": read_jsonl(real / "eval.jsonl"),
            "probes": [dict(r, listing_id=r["probe_id"]) for path in sorted(probes.glob("*.jsonl")) for r in read_jsonl(path)],
            "external": [r for path in sorted(external.glob("*.jsonl")) for r in read_jsonl(path)]}
    return {name: rows for name, rows in sets.items() if rows}
