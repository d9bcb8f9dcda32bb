"""Ordinary listings: data/background/raw/<writer>_NN.jsonl -> data/background/{train,validation,test}.jsonl.

A real platform export is more than 99% ordinary goods. These rows are all clean (`labels` is
always []); they teach the model what ordinary listings look like and measure how often it raises
a false alarm on them. Steps (`reportguard data build`):

1. read and check every raw row (fields, empty labels, known tags and subset);
2. stable ids (`bg-` + SHA-1 of the normalised text), computed tags as in the corpus;
3. drop exact and near-duplicates (as the corpus does);
4. hold out whole writers (TEST_WRITERS) as `test`: evaluation only, never trained on or used
   for thresholds; rows of other writers similar to a held-out row are dropped;
5. the other writers split 85/15 into train / validation (validation takes part in fitting the
   flag and block cuts, so they are chosen with ordinary listings in view).
"""
from __future__ import annotations

from pathlib import Path

from reportguard.core.labels import TAGS

from .corpus import dedupe, finish_row, iter_jsonl, split_by_writer, write_jsonl, writer_of

FIELDS = ("listing_id", "writer", "platform", "shop_name", "title", "description", "qualification",
          "category", "subset", "labels", "tags")
RAW_FIELDS = ("platform", "shop_name", "title", "description", "qualification", "category", "subset", "labels", "tags")
SUBSETS = ("marketplace_title", "spec_promo", "after_sales", "long_page", "product_with_report", "contact_lure",
           "traditional", "instrument", "business_service", "plain")
SPLITS = ("train", "validation", "test")
SHARES = {"train": 0.85, "validation": 0.15}
#: Held-out writers: o3 (second-hand and local services on 闲鱼/58同城/朋友圈, business services,
#: heavy contact lures) and o8 (home and living detail pages, the most long pages).
TEST_WRITERS = ("o3", "o8")


def read_raw(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        for where, _, row in iter_jsonl(path):
            missing = [f for f in RAW_FIELDS if f not in row]
            if missing:
                raise ValueError(f"{where}: missing field(s) {missing}")
            if row["labels"]:
                raise ValueError(f"{where}: ordinary listings are clean, found labels {row['labels']}")
            if not (str(row["title"]).strip() or str(row["description"]).strip()):
                raise ValueError(f"{where}: no text")
            if row["subset"] not in SUBSETS or any(t not in TAGS for t in row["tags"]):
                raise ValueError(f"{where}: unknown subset {row['subset']!r} or tag in {row['tags']}")
            row["writer"] = writer_of(path)
            rows.append(row)
    return rows


def text_of(row: dict) -> str:
    from .corpus import corpus_text
    return corpus_text(row)


def build(raw_folder: Path, seed: int = 13) -> dict[str, list[dict]]:
    raw = read_raw(raw_folder)
    rows, texts, _, _ = dedupe(raw, text_of)
    index, _, _ = split_by_writer(rows, texts, TEST_WRITERS, SHARES, seed, lambda i: rows[i]["subset"])
    out = {}
    for name in SPLITS:
        published = []
        for i in index[name]:
            row = finish_row(rows[i])
            row["listing_id"] = "bg-" + row["listing_id"][3:]
            published.append({f: (rows[i][f] if f in ("category", "subset") else row[f]) for f in FIELDS})
        out[name] = sorted(published, key=lambda r: r["listing_id"])
    return out


def write(splits: dict[str, list[dict]], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        write_jsonl(folder / f"{name}.jsonl", rows)
