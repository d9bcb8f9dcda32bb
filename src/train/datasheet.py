"""Counts for the corpus datasheet: written into data/README.md between marker comments and
into data/labelled/stats.json, so the numbers a reader sees are the numbers of the files."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from reportguard.core.labels import MODEL_LABELS, TAGS

from .corpus import SPLITS, load_split

BEGIN, END = "<!-- stats:begin (written by `reportguard data build`) -->", "<!-- stats:end -->"


def corpus_stats(folder: Path) -> dict:
    splits = {name: load_split(folder, name) for name in SPLITS}
    stats: dict = {"rows": {}, "labels": {}, "tags": {}, "combinations": {}, "platforms": {}}
    for name, rows in splits.items():
        stats["rows"][name] = len(rows)
        stats["labels"][name] = {x: sum(x in r["labels"] for r in rows) for x in MODEL_LABELS}
        stats["labels"][name]["clean"] = sum(not r["labels"] for r in rows)
        stats["tags"][name] = {t: sum(t in r["tags"] for r in rows) for t in TAGS}
        stats["combinations"][name] = dict(Counter("+".join(r["labels"]) or "clean" for r in rows).most_common())
    everything = [r for rows in splits.values() for r in rows]
    stats["platforms"] = dict(Counter(r["platform"] for r in everything).most_common())
    lengths = sorted(len(r["title"]) + len(r["description"]) for r in everything)
    stats["length_chars"] = {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]}
    return stats


def _table(title: str, per_split: dict[str, dict], keys: list[str]) -> str:
    lines = [f"| {title} | " + " | ".join(SPLITS) + " | total |", "|---|" + "---:|" * (len(SPLITS) + 1)]
    for k in keys:
        vals = [per_split[s].get(k, 0) for s in SPLITS]
        lines.append(f"| `{k}` | " + " | ".join(map(str, vals)) + f" | {sum(vals)} |")
    return "\n".join(lines)


def render(stats: dict) -> str:
    rows = stats["rows"]
    combos = sorted({c for s in SPLITS for c in stats["combinations"][s]},
                    key=lambda c: -sum(stats["combinations"][s].get(c, 0) for s in SPLITS))
    parts = [
        f"Rows: " + ", ".join(f"{s} {rows[s]}" for s in SPLITS) + f"; total {sum(rows.values())}. "
        f"Length (title + description, characters): min {stats['length_chars']['min']}, "
        f"median {stats['length_chars']['median']}, max {stats['length_chars']['max']}.",
        _table("label", stats["labels"], list(MODEL_LABELS) + ["clean"]),
        _table("label combination", stats["combinations"], combos),
        _table("tag", stats["tags"], list(TAGS)),
        f"Platforms ({len(stats['platforms'])}): " + ", ".join(f"{p} {n}" for p, n in stats["platforms"].items()),
    ]
    return "\n\n".join(parts)


def update(folder: Path, readme: Path) -> dict:
    stats = corpus_stats(folder)
    (folder / "stats.json").write_text(json.dumps(stats, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            readme.write_text(f"{head}{BEGIN}\n{render(stats)}\n{END}{tail}", encoding="utf-8")
    return stats
