"""Real public text: data/real/snippets.jsonl -> data/real/{train,eval}.jsonl, split by source site.

Each snippet is an excerpt of a real public page (news exposé, penalty decision, court judgment,
regulator warning, platform rule, lab page), with its URL and retrieval date, labelled by the
taxonomy with a one-line reason. No site straddles the split: sites are ordered by a hash of
their name and at least half of them (EVAL_SHARE) are evaluation-only; the rest may join
training. Snippets carry no title: the excerpt is the description.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from reportguard.core.labels import MODEL_LABELS

from .corpus import write_jsonl

FIELDS = ("snippet_id", "site", "url", "page_title", "retrieved", "source_kind", "text_kind", "text", "labels",
          "reason", "licence")
EVAL_SHARE = 0.5


def read(path: Path) -> list[dict]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = [f for f in FIELDS if f not in row]
        if missing or any(x not in MODEL_LABELS for x in row["labels"]) or not row["text"].strip():
            raise ValueError(f"{path}:{lineno}: missing {missing}, empty text, or unknown label in {row.get('labels')}")
        rows.append(row)
    return rows


def eval_sites(sites: set[str]) -> set[str]:
    """The first ceil(half) of the sites in hash order: stable as sites are added."""
    ordered = sorted(sites, key=lambda s: hashlib.sha1(s.encode("utf-8")).hexdigest())
    return set(ordered[:math.ceil(len(ordered) * EVAL_SHARE)])


def as_listing(row: dict) -> dict:
    """The snippet in the corpus's listing form, so every evaluation reads rows the same way."""
    labels = [x for x in MODEL_LABELS if x in row["labels"]]
    return {"listing_id": row["snippet_id"], "platform": row["site"], "shop_name": "", "title": "",
            "description": row["text"], "qualification": "", "labels": labels, "tags": [], "writer": f"real:{row['site']}",
            "source_kind": row["source_kind"], "text_kind": row["text_kind"], "url": row["url"]}


def split(rows: list[dict]) -> dict[str, list[dict]]:
    held = eval_sites({r["site"] for r in rows})
    return {"eval": [as_listing(r) for r in rows if r["site"] in held],
            "train": [as_listing(r) for r in rows if r["site"] not in held]}


def write(splits: dict[str, list[dict]], folder: Path) -> None:
    for name, rows in splits.items():
        write_jsonl(folder / f"{name}.jsonl", rows)
