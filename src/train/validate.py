"""Checks the labelled corpus against what the foundation issue asks of it.

`reportguard data validate` prints one line per check and exits non-zero if any fails, so a
broken corpus never reaches training. Structural checks (schema, labels, ids, duplicates,
leakage) and mix checks (sizes, clean share, paraphrase, obfuscation, spread) both count.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from reportguard.core.labels import MODEL_LABELS, TAGS

from .corpus import FIELDS, NEAR_DUPLICATE, SIMILAR, SPLITS, corpus_text, load_split, similar_pairs

#: The notice's five exact phrases; at least a third of violation rows must avoid all of them.
NOTICE_PHRASES = ("不送样检测", "检验检测包过", "一天出报告", "急速出报告", "不过全额退款")

MIN_ROWS = 3000
MIN_PER_LABEL = 700
MIN_CLEAN_SHARE = 0.40
MIN_OBFUSCATED_SHARE = 0.15
MIN_PARAPHRASE_SHARE = 1 / 3
MIN_PLATFORMS = 15


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def validate_corpus(folder: Path) -> list[Check]:
    splits = {name: load_split(folder, name) for name in SPLITS}
    rows = [(name, r) for name, split in splits.items() for r in split]
    checks: list[Check] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append(Check(name, bool(ok), detail))

    # --- structure
    schema_errors = []
    for split, r in rows:
        if tuple(r) != FIELDS:
            schema_errors.append(f"{split}/{r.get('listing_id')}: fields {list(r)}")
        elif any(not isinstance(r[f], str) for f in FIELDS[:6]) or not r["title"].strip():
            schema_errors.append(f"{split}/{r['listing_id']}: non-string or empty text field")
        elif [x for x in MODEL_LABELS if x in r["labels"]] != r["labels"] or len(set(r["labels"])) != len(r["labels"]):
            schema_errors.append(f"{split}/{r['listing_id']}: labels {r['labels']} invalid or out of order")
        elif any(t not in TAGS for t in r["tags"]):
            schema_errors.append(f"{split}/{r['listing_id']}: unknown tag in {r['tags']}")
    check("schema and labels", not schema_errors, "; ".join(schema_errors[:5]) or "all rows valid")
    ids = Counter(r["listing_id"] for _, r in rows)
    dup_ids = [i for i, n in ids.items() if n > 1]
    check("unique listing ids", not dup_ids, f"{len(dup_ids)} repeated" if dup_ids else f"{len(ids)} ids")
    texts = [corpus_text(r) for _, r in rows]
    dup_texts = len(texts) - len(set(texts))
    check("no exact duplicates", dup_texts == 0, f"{dup_texts} repeated normalised texts")
    near = similar_pairs(texts, SIMILAR)
    near_dups = [(i, j) for i, j, s in near if s >= NEAR_DUPLICATE]
    check("no near-duplicates", not near_dups,
          f"{len(near_dups)} pairs with Jaccard >= {NEAR_DUPLICATE}" + _examples(near_dups, rows))
    leaks = [(i, j) for i, j, _ in near if rows[i][0] != rows[j][0]]
    check("no leakage across splits", not leaks,
          f"{len(leaks)} similar pairs (Jaccard >= {SIMILAR}) in different splits" + _examples(leaks, rows))

    # --- mix
    n = len(rows)
    check("size", n >= MIN_ROWS, f"{n} rows (need {MIN_ROWS})")
    per_label = Counter(x for _, r in rows for x in r["labels"])
    check("rows per label", all(per_label[x] >= MIN_PER_LABEL for x in MODEL_LABELS),
          ", ".join(f"{x}={per_label[x]}" for x in MODEL_LABELS) + f" (need {MIN_PER_LABEL} each)")
    clean = [r for _, r in rows if not r["labels"]]
    hard = sum("hard_negative" in r["tags"] for r in clean)
    check("clean share", len(clean) >= MIN_CLEAN_SHARE * n and hard * 2 > len(clean),
          f"{len(clean) / max(n, 1):.1%} clean, of which {hard / max(len(clean), 1):.0%} hard negatives")
    violations = [r for _, r in rows if {"report_sale", "false_ad"} & set(r["labels"])]
    paraphrased = sum(not any(p in corpus_text(r) for p in NOTICE_PHRASES) for r in violations)
    check("paraphrase", paraphrased >= MIN_PARAPHRASE_SHARE * len(violations),
          f"{paraphrased}/{len(violations)} report_sale/false_ad rows avoid the notice's five phrases")
    obfuscated = sum("obfuscated" in r["tags"] for _, r in rows)
    check("obfuscation", obfuscated >= MIN_OBFUSCATED_SHARE * n, f"{obfuscated / max(n, 1):.1%} obfuscated")
    platforms = Counter(r["platform"] for _, r in rows)
    lengths = [len(r["title"]) + len(r["description"]) for _, r in rows]
    check("spread", len(platforms) >= MIN_PLATFORMS and min(lengths) <= 20 and max(lengths) > 300,
          f"{len(platforms)} platforms; lengths {min(lengths)}-{max(lengths)} characters")
    for name in SPLITS:
        split_labels = Counter(x for r in splits[name] for x in r["labels"])
        missing = [x for x in MODEL_LABELS if split_labels[x] == 0]
        check(f"{name} has every label", not missing, f"missing {missing}" if missing else f"{len(splits[name])} rows")
    return checks


def _examples(pairs: list[tuple[int, int]], rows: list) -> str:
    if not pairs:
        return ""
    i, j = pairs[0]
    return f"; e.g. {rows[i][1]['listing_id']} ~ {rows[j][1]['listing_id']}"
