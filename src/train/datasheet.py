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
    stats: dict = {"rows": {}, "labels": {}, "tags": {}, "combinations": {}, "platforms": {}, "writers": {}}
    for name, rows in splits.items():
        stats["rows"][name] = len(rows)
        stats["writers"][name] = dict(sorted(Counter(r.get("writer", "?") for r in rows).items(), key=lambda kv: _writer_key(kv[0])))
        stats["labels"][name] = {x: sum(x in r["labels"] for r in rows) for x in MODEL_LABELS}
        stats["labels"][name]["clean"] = sum(not r["labels"] for r in rows)
        stats["tags"][name] = {t: sum(t in r["tags"] for r in rows) for t in TAGS}
        stats["combinations"][name] = dict(Counter("+".join(r["labels"]) or "clean" for r in rows).most_common())
    everything = [r for rows in splits.values() for r in rows]
    stats["platforms"] = dict(Counter(r["platform"] for r in everything).most_common())
    lengths = sorted(len(r["title"]) + len(r["description"]) for r in everything)
    stats["length_chars"] = {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]}
    return stats


def _writer_key(writer: str) -> tuple:
    return (writer.rstrip("0123456789"), int(writer[len(writer.rstrip("0123456789")):] or 0))


def extra_stats(data: Path) -> dict:
    """Counts for the data beside the corpus: ordinary listings, real text, probes."""
    def read(path: Path) -> list[dict]:
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()] if path.exists() else []
    out: dict = {}
    bg = {name: read(data / "background" / f"{name}.jsonl") for name in ("train", "validation", "test")}
    if any(bg.values()):
        everything = [r for rows in bg.values() for r in rows]
        out["background"] = {
            "rows": {k: len(v) for k, v in bg.items()},
            "writers": {k: dict(sorted(Counter(r["writer"] for r in v).items(), key=lambda kv: _writer_key(kv[0]))) for k, v in bg.items()},
            "subsets": {k: dict(Counter(r["subset"] for r in v).most_common()) for k, v in bg.items()},
            "categories": dict(Counter(r["category"] for r in everything).most_common()),
            "platforms": dict(Counter(r["platform"] for r in everything).most_common()),
            "length_chars": _lengths(everything)}
    real = {name: read(data / "real" / f"{name}.jsonl") for name in ("train", "eval")}
    if any(real.values()):
        out["real"] = {"rows": {k: len(v) for k, v in real.items()},
                       "sites": {k: len({r["platform"] for r in v}) for k, v in real.items()},
                       "source_kind": {k: dict(Counter(r["source_kind"] for r in v).most_common()) for k, v in real.items()},
                       "text_kind": {k: dict(Counter(r["text_kind"] for r in v).most_common()) for k, v in real.items()},
                       "labels": {k: dict(Counter("+".join(r["labels"]) or "clean" for r in v).most_common()) for k, v in real.items()}}
    probes = [r for path in sorted((data / "probes").glob("*.jsonl")) for r in read(path)]
    if probes:
        out["probes"] = {f: dict(Counter(r["kind"] for r in probes if r["family"] == f and r["variant"] == "a"))
                         for f in sorted({r["family"] for r in probes})}
    return out


def _lengths(rows: list[dict]) -> dict:
    lengths = sorted(len(r["title"]) + len(r["description"]) for r in rows)
    return {"min": lengths[0], "median": lengths[len(lengths) // 2], "p90": lengths[int(len(lengths) * 0.9)], "max": lengths[-1]}


def _kv(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items())


def render_extra(extra: dict) -> str:
    parts = []
    if "background" in extra:
        b = extra["background"]
        parts += ["**Ordinary listings** (`data/background/`, all clean): " + _kv(b["rows"]) + f" rows; lengths {_kv(b['length_chars'])} characters.",
                  "Writers per split: " + "; ".join(f"{k}: {_kv(v)}" for k, v in b["writers"].items()) + ".",
                  "Subsets per split: " + "; ".join(f"{k}: {_kv(v)}" for k, v in b["subsets"].items()) + ".",
                  f"Categories ({len(b['categories'])}): " + _kv(b["categories"]) + ".",
                  f"Platforms ({len(b['platforms'])}): " + _kv(b["platforms"]) + "."]
    if "real" in extra:
        r = extra["real"]
        parts += ["**Real public text** (`data/real/`): " + _kv(r["rows"]) + " snippets from " + _kv(r["sites"]) + " sites.",
                  "Source kinds: " + "; ".join(f"{k}: {_kv(v)}" for k, v in r["source_kind"].items()) + ".",
                  "Text kinds: " + "; ".join(f"{k}: {_kv(v)}" for k, v in r["text_kind"].items()) + ".",
                  "Labels: " + "; ".join(f"{k}: {_kv(v)}" for k, v in r["labels"].items()) + "."]
    if "probes" in extra:
        parts += ["**Probes** (`data/probes/`, pairs per family and kind): " + "; ".join(f"{f}: {_kv(v)}" for f, v in extra["probes"].items()) + "."]
    return "\n\n".join(parts)


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
        "Writers per split: " + "; ".join(f"{s}: {_kv(stats['writers'][s])}" for s in SPLITS) + ".",
        f"Platforms ({len(stats['platforms'])}): " + ", ".join(f"{p} {n}" for p, n in stats["platforms"].items()),
    ]
    if stats.get("extra"):
        parts.append(render_extra(stats["extra"]))
    return "\n\n".join(parts)


def update(folder: Path, readme: Path) -> dict:
    stats = corpus_stats(folder)
    stats["extra"] = extra_stats(readme.parent)
    (folder / "stats.json").write_text(json.dumps(stats, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            readme.write_text(f"{head}{BEGIN}\n{render(stats)}\n{END}{tail}", encoding="utf-8")
    return stats
