"""Build the labelled corpus: raw hand-written batches -> data/labelled/{train,validation,test}.jsonl.

Steps (`reportguard data build`):
1. read every data/raw/batches/*.jsonl row and check its fields, labels and tags;
2. give it a stable id from its normalised text, and add the computed tags (short, long,
   traditional);
3. drop exact duplicates of normalised text, and near-duplicates (MinHash Jaccard >= 0.8 on
   character 3-grams), keeping the first;
4. group rows that are merely similar (Jaccard >= 0.5) so a group never straddles splits;
5. split groups 80/10/10, balancing each label combination, with a fixed seed.

data/raw is immutable input; data/labelled is derived and rebuilt by this module.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from datasketch import MinHash, MinHashLSH

from reportguard.core.labels import MODEL_LABELS, TAGS
from reportguard.core.normalize import normalize_text, to_simplified

FIELDS = ("listing_id", "platform", "shop_name", "title", "description", "qualification", "labels", "tags")
RAW_FIELDS = ("platform", "shop_name", "title", "description", "qualification", "labels", "tags")
SPLITS = {"train": 0.8, "validation": 0.1, "test": 0.1}
NEAR_DUPLICATE = 0.8  # Jaccard at or above: the same listing written twice; keep one
SIMILAR = 0.5  # Jaccard at or above: paraphrases of one listing; keep them in one split
SHORT_CHARS, LONG_CHARS = 20, 300
NUM_PERM = 128


@dataclass
class BuildResult:
    rows_read: int
    exact_duplicates: int
    near_duplicates: int
    groups: int
    splits: dict[str, list[dict]]


def corpus_text(row: dict) -> str:
    """The text a row is deduplicated and split on: normalised title and description."""
    return normalize_text(f"{row['title']}\n{row.get('description') or ''}")


def shingles(text: str, k: int = 3) -> set[str]:
    return {text[i:i + k] for i in range(max(1, len(text) - k + 1))}


def minhash(text: str) -> MinHash:
    m = MinHash(num_perm=NUM_PERM, seed=1)
    m.update_batch([s.encode("utf-8") for s in shingles(text)])
    return m


def read_raw_batches(folder: Path) -> list[dict]:
    """Every row of every batch file, checked; raises ValueError naming file and line on bad rows."""
    rows: list[dict] = []
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise ValueError(f"{folder}: no *.jsonl batches")
    for path in files:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: column {exc.colno}: invalid JSON: {exc.msg}") from exc
            missing = [f for f in RAW_FIELDS if f not in row]
            if missing:
                raise ValueError(f"{where}: missing field(s) {missing}")
            for f in ("platform", "shop_name", "title", "description", "qualification"):
                if not isinstance(row[f], str):
                    raise ValueError(f"{where}: field {f!r} must be a string")
            if not row["title"].strip():
                raise ValueError(f"{where}: empty title")
            bad = [x for x in row["labels"] if x not in MODEL_LABELS] + [t for t in row["tags"] if t not in TAGS]
            if bad:
                raise ValueError(f"{where}: unknown label or tag {bad}")
            row["_source"] = where
            rows.append(row)
    return rows


def finish_row(row: dict) -> dict:
    """The published form: stable id, labels in model order, tags with the computed ones added."""
    text = f"{row['title']}{row['description']}"
    tags = set(row["tags"]) - {"short", "long"}
    if len(text) <= SHORT_CHARS:
        tags.add("short")
    if len(text) > LONG_CHARS:
        tags.add("long")
    if _looks_traditional(text):
        tags.add("traditional")
    if "traditional" in tags:
        tags.add("obfuscated")
    digest = hashlib.sha1(corpus_text(row).encode("utf-8")).hexdigest()[:12]
    out = {
        "listing_id": f"rg-{digest}",
        "platform": row["platform"].strip(),
        "shop_name": row["shop_name"].strip(),
        "title": row["title"].strip(),
        "description": row["description"].strip(),
        "qualification": row["qualification"].strip(),
        "labels": [name for name in MODEL_LABELS if name in row["labels"]],
        "tags": [t for t in TAGS if t in tags],
    }
    return out


def _looks_traditional(text: str) -> bool:
    """At least three characters change under OpenCC t2s: written in traditional script."""
    converted = to_simplified(text)
    return sum(a != b for a, b in zip(text, converted)) >= 3


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


def similar_pairs(texts: list[str], threshold: float) -> list[tuple[int, int, float]]:
    """Pairs (i < j) whose MinHash Jaccard estimate is at least `threshold`."""
    hashes = [minhash(t) for t in texts]
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    for i, h in enumerate(hashes):
        lsh.insert(str(i), h)
    pairs = []
    for i, h in enumerate(hashes):
        for key in lsh.query(h):
            j = int(key)
            if j > i:
                score = h.jaccard(hashes[j])
                if score >= threshold:
                    pairs.append((i, j, score))
    return pairs


def build(raw_folder: Path, seed: int = 13) -> BuildResult:
    raw = read_raw_batches(raw_folder)
    # 1. exact duplicates of normalised text
    seen: set[str] = set()
    rows, texts = [], []
    for row in raw:
        text = corpus_text(row)
        if text in seen:
            continue
        seen.add(text)
        rows.append(row)
        texts.append(text)
    exact = len(raw) - len(rows)
    # 2. near-duplicates: drop the later row of each pair
    drop = {j for _, j, _ in similar_pairs(texts, NEAR_DUPLICATE)}
    kept = [i for i in range(len(rows)) if i not in drop]
    rows = [rows[i] for i in kept]
    texts = [texts[i] for i in kept]
    # 3. groups of similar rows
    uf = _UnionFind(len(rows))
    for i, j, _ in similar_pairs(texts, SIMILAR):
        uf.union(i, j)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(rows)):
        groups[uf.find(i)].append(i)
    # 4. split groups, balancing each label combination across splits
    finished = [finish_row(r) for r in rows]
    order = sorted(groups.values(), key=lambda g: min(g))
    random.Random(seed).shuffle(order)
    counts: dict[str, Counter] = {s: Counter() for s in SPLITS}
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for group in order:
        combo = "+".join(finished[group[0]]["labels"]) or "clean"
        # the split furthest below its share of this combination takes the group
        total = sum(counts[s][combo] for s in SPLITS) + len(group)
        target = min(SPLITS, key=lambda s: (counts[s][combo] + len(group)) / (SPLITS[s] * total))
        counts[target][combo] += len(group)
        splits[target] += [finished[i] for i in group]
    for name in splits:
        splits[name].sort(key=lambda r: r["listing_id"])
    return BuildResult(len(raw), exact, len(drop), len(groups), splits)


def write_splits(result: BuildResult, out_folder: Path) -> None:
    out_folder.mkdir(parents=True, exist_ok=True)
    for name, rows in result.splits.items():
        tmp = out_folder / f".{name}.jsonl.tmp"
        with tmp.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps({f: row[f] for f in FIELDS}, ensure_ascii=False) + "\n")
        tmp.replace(out_folder / f"{name}.jsonl")


def load_split(folder: Path, name: str) -> list[dict]:
    path = folder / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
