"""Build the labelled corpus: raw hand-written batches -> data/labelled/{train,validation,test,test_random}.jsonl.

Steps (`reportguard data build`):
1. read every data/raw/batches/*.jsonl row and check its fields, labels and tags; the writer is
   the file name's prefix (w6_03.jsonl -> w6); apply data/raw/relabel.jsonl (corrections keyed by
   file:line, each with a reason; the raw batches themselves stay as written);
2. give it a stable id from its normalised text, and add the computed tags (short, long,
   traditional);
3. drop exact duplicates of normalised text, and near-duplicates (MinHash Jaccard >= 0.8 on
   character 3-grams), keeping the first;
4. **writer-held-out test**: every row of the TEST_WRITERS goes to `test`, so test measures writers
   the model never saw; a row of another writer that is similar (Jaccard >= 0.5) to a test row is
   dropped, so no paraphrase of a test row is trained on;
5. the other writers' rows are grouped when similar (Jaccard >= 0.5), so a group never straddles
   splits, and the groups split 80/10/10 into train / validation / test_random, balancing each
   label combination, with a fixed seed. `test_random` is the old random-split number, kept for
   comparison: it shares writers with train and flatters the model.

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

FIELDS = ("listing_id", "platform", "shop_name", "title", "description", "qualification", "labels", "tags", "writer")
RAW_FIELDS = ("platform", "shop_name", "title", "description", "qualification", "labels", "tags")
#: Shares of the random split among the writers that are not held out.
RANDOM_SPLITS = {"train": 0.8, "validation": 0.1, "test_random": 0.1}
#: Every published split file.
SPLITS = ("train", "validation", "test", "test_random")
#: Whole writers that only ever appear in `test`: two of the first eight (different platforms and
#: voices: w2 food marketplaces, w7 WeChat/news/enforcement) and w13, a writer whose brief was the
#: taxonomy alone, with no evasion list and no sight of the corpus.
TEST_WRITERS = ("w2", "w7", "w13")
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
    relabelled: int = 0
    dropped_near_test: int = 0


def corpus_text(row: dict) -> str:
    """The text a row is deduplicated and split on: normalised title and description."""
    return normalize_text(f"{row['title']}\n{row.get('description') or ''}")


def shingles(text: str, k: int = 3) -> set[str]:
    return {text[i:i + k] for i in range(max(1, len(text) - k + 1))}


def minhash(text: str) -> MinHash:
    m = MinHash(num_perm=NUM_PERM, seed=1)
    m.update_batch([s.encode("utf-8") for s in shingles(text)])
    return m


def iter_jsonl(path: Path):
    """(where, lineno, row) for every non-blank line of a JSONL file; a bad line raises
    ValueError naming file, line and column."""
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            yield where, lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: column {exc.colno}: invalid JSON: {exc.msg}") from exc


def writer_of(path: Path) -> str:
    """The writer of a batch file is its name's prefix: w6_03.jsonl -> w6, o1_02.jsonl -> o1."""
    return path.stem.split("_", 1)[0]


def read_raw_batches(folder: Path, relabel: Path | None = None) -> list[dict]:
    """Every row of every batch file, checked; raises ValueError naming file and line on bad rows.

    `relabel` (JSONL of {"source": "w6_03.jsonl:17", "labels": [...], "reason": "..."}) corrects
    the labels of single rows; a correction that matches no row is an error, so none goes stale.
    """
    rows: list[dict] = []
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise ValueError(f"{folder}: no *.jsonl batches")
    fixes = _read_relabel(relabel) if relabel and relabel.exists() else {}
    for path in files:
        for where, lineno, row in iter_jsonl(path):
            missing = [f for f in RAW_FIELDS if f not in row]
            if missing:
                raise ValueError(f"{where}: missing field(s) {missing}")
            for f in ("platform", "shop_name", "title", "description", "qualification"):
                if not isinstance(row[f], str):
                    raise ValueError(f"{where}: field {f!r} must be a string")
            if not (row["title"].strip() or row["description"].strip()):
                raise ValueError(f"{where}: no text (title and description both empty)")
            bad = [x for x in row["labels"] if x not in MODEL_LABELS] + [t for t in row["tags"] if t not in TAGS]
            if bad:
                raise ValueError(f"{where}: unknown label or tag {bad}")
            row["_source"] = where
            row["writer"] = writer_of(path)
            fix = fixes.pop(f"{path.name}:{lineno}", None)
            if fix is not None:
                row["_relabelled_from"] = row["labels"]
                row["labels"] = fix["labels"]
            rows.append(row)
    if fixes:
        raise ValueError(f"{relabel}: corrections match no raw row: {sorted(fixes)[:5]}")
    return rows


def _read_relabel(path: Path) -> dict[str, dict]:
    fixes = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fix = json.loads(line)
        bad = [x for x in fix.get("labels", []) if x not in MODEL_LABELS]
        if bad or not fix.get("reason") or not fix.get("source"):
            raise ValueError(f"{path}:{lineno}: a correction needs source, labels (model labels) and a reason")
        fixes[fix["source"]] = fix
    return fixes


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
        "writer": row["writer"],
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


def dedupe(rows: list[dict], text_of) -> tuple[list[dict], list[str], int, int]:
    """Drop exact duplicates of `text_of(row)`, then near-duplicates (the later row of each pair)."""
    seen: set[str] = set()
    kept_rows, texts = [], []
    for row in rows:
        text = text_of(row)
        if text in seen:
            continue
        seen.add(text)
        kept_rows.append(row)
        texts.append(text)
    exact = len(rows) - len(kept_rows)
    drop = {j for _, j, _ in similar_pairs(texts, NEAR_DUPLICATE)}
    kept = [i for i in range(len(kept_rows)) if i not in drop]
    return [kept_rows[i] for i in kept], [texts[i] for i in kept], exact, len(drop)


def split_by_writer(rows: list[dict], texts: list[str], test_writers: tuple[str, ...], shares: dict[str, float],
                    seed: int, combo_of) -> tuple[dict[str, list[int]], int, int]:
    """Indices per split: every row of `test_writers` in "test"; rows of other writers similar to a
    test row dropped; the rest grouped by similarity and split by `shares`, balancing `combo_of(i)`.
    Returns (splits, number of groups, number of rows dropped for being similar to a test row)."""
    pairs = similar_pairs(texts, SIMILAR)
    held = {i for i, r in enumerate(rows) if r["writer"] in test_writers}
    near_test = {j if i in held else i for i, j, _ in pairs if (i in held) != (j in held)}
    uf = _UnionFind(len(rows))
    for i, j, _ in pairs:
        uf.union(i, j)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(rows)):
        if i not in held and i not in near_test:
            groups[uf.find(i)].append(i)
    order = sorted(groups.values(), key=lambda g: min(g))
    random.Random(seed).shuffle(order)
    counts: dict[str, Counter] = {s: Counter() for s in shares}
    out: dict[str, list[int]] = {s: [] for s in shares}
    out["test"] = sorted(held)
    for group in order:
        combo = combo_of(group[0])
        # the split furthest below its share of this combination takes the group
        total = sum(counts[s][combo] for s in shares) + len(group)
        target = min(shares, key=lambda s: (counts[s][combo] + len(group)) / (shares[s] * total))
        counts[target][combo] += len(group)
        out[target] += group
    return out, len(groups), len(near_test)


def build(raw_folder: Path, seed: int = 13, relabel: Path | None = None,
          test_writers: tuple[str, ...] = TEST_WRITERS) -> BuildResult:
    relabel = relabel if relabel is not None else raw_folder.parent / "relabel.jsonl"
    raw = read_raw_batches(raw_folder, relabel)
    rows, texts, exact, near = dedupe(raw, corpus_text)
    finished = [finish_row(r) for r in rows]
    index, groups, dropped = split_by_writer(rows, texts, test_writers, RANDOM_SPLITS, seed,
                                             lambda i: "+".join(finished[i]["labels"]) or "clean")
    splits = {name: sorted((finished[i] for i in index[name]), key=lambda r: r["listing_id"]) for name in SPLITS}
    relabelled = sum("_relabelled_from" in r for r in rows)
    return BuildResult(len(raw), exact, near, groups, splits, relabelled, dropped)


def write_jsonl(path: Path, rows: list[dict], fields: tuple[str, ...] | None = None) -> None:
    """Rows as JSON Lines (only `fields`, in that order, when given), written atomically."""
    from reportguard.core.atomic import write_text_atomic
    write_text_atomic(path, "".join(json.dumps({f: r[f] for f in fields} if fields else r, ensure_ascii=False) + "\n"
                                    for r in rows))


def write_splits(result: BuildResult, out_folder: Path) -> None:
    out_folder.mkdir(parents=True, exist_ok=True)
    for name, rows in result.splits.items():
        write_jsonl(out_folder / f"{name}.jsonl", rows, FIELDS)


def load_split(folder: Path, name: str) -> list[dict]:
    path = folder / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
