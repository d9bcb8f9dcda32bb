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


# Long: a flat list of named checks, one after another, each a few lines; the list is the spec.
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
        elif any(not isinstance(r[f], str) for f in (*FIELDS[:6], "writer")) or not (r["title"].strip() or r["description"].strip()):
            schema_errors.append(f"{split}/{r['listing_id']}: non-string field, or no text at all")
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

    writers = {name: {r.get("writer", "?") for r in split} for name, split in splits.items()}
    seen_in_training = writers["train"] | writers["validation"]
    straddling = sorted(writers["test"] & seen_in_training)
    check("writer-held-out test", bool(writers["test"]) and not straddling,
          f"writers {straddling} are in test and in train/validation" if straddling
          else f"test writers {sorted(writers['test'])} never appear in train or validation")

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


# --- the data beside the corpus: ordinary listings, real public text, probes -------------------

MIN_BACKGROUND = 8000
MIN_BACKGROUND_CATEGORIES = 40
MIN_BACKGROUND_PLATFORMS = 20
MIN_REAL = 300
PROBE_FAMILIES = ("quotes", "news_vocab", "workday", "length", "lure", "explicit")


def _jsonl(path: Path) -> list[dict]:
    import json
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path.exists() else []


def validate_background(folder: Path) -> list[Check]:
    from .background import SPLITS as BG_SPLITS
    splits = {name: _jsonl(folder / f"{name}.jsonl") for name in BG_SPLITS}
    rows = [r for split in splits.values() for r in split]
    checks = [Check("ordinary listings: size", len(rows) >= MIN_BACKGROUND, f"{len(rows)} rows (need {MIN_BACKGROUND})")]
    categories, platforms = Counter(r["category"] for r in rows), Counter(r["platform"] for r in rows)
    checks.append(Check("ordinary listings: spread",
                        len(categories) >= MIN_BACKGROUND_CATEGORIES and len(platforms) >= MIN_BACKGROUND_PLATFORMS,
                        f"{len(categories)} categories (need {MIN_BACKGROUND_CATEGORIES}), {len(platforms)} platforms "
                        f"(need {MIN_BACKGROUND_PLATFORMS})"))
    checks.append(Check("ordinary listings: all clean", not any(r["labels"] for r in rows), "labels [] on every row"))
    ids = Counter(r["listing_id"] for r in rows)
    checks.append(Check("ordinary listings: unique ids", all(n == 1 for n in ids.values()), f"{len(ids)} ids"))
    held = {r["writer"] for r in splits["test"]}
    trained = {r["writer"] for name in ("train", "validation") for r in splits[name]}
    checks.append(Check("ordinary listings: writer-held-out test", bool(held) and not (held & trained),
                        f"held-out writers {sorted(held)}; training writers {sorted(trained)}"))
    return checks


def validate_real(folder: Path) -> list[Check]:
    from .realtext import read
    snippets = read(folder / "snippets.jsonl") if (folder / "snippets.jsonl").exists() else []
    parts = {name: _jsonl(folder / f"{name}.jsonl") for name in ("train", "eval")}
    checks = [Check("real text: size", len(snippets) >= MIN_REAL, f"{len(snippets)} snippets (need {MIN_REAL})")]
    sources = all(r["url"].startswith("http") and r["retrieved"] and r["licence"] and r["reason"] for r in snippets)
    checks.append(Check("real text: provenance", sources, "every snippet has a URL, retrieval date, licence and reason"))
    sites = {name: {r["platform"] for r in rows} for name, rows in parts.items()}
    n_sites = len(sites["train"] | sites["eval"])
    checks.append(Check("real text: split by site", not (sites["train"] & sites["eval"]) and len(sites["eval"]) * 2 >= n_sites
                        and len(parts["train"]) + len(parts["eval"]) == len(snippets),
                        f"{len(sites['eval'])} of {n_sites} sites evaluation-only ({len(parts['eval'])} snippets), "
                        f"{len(sites['train'])} may train ({len(parts['train'])} snippets); no site in both"))
    return checks


def validate_probes(folder: Path) -> list[Check]:
    rows = [r for path in sorted(folder.glob("*.jsonl")) for r in _jsonl(path)]
    pairs: dict[str, list[dict]] = {}
    for r in rows:
        pairs.setdefault(r["pair_id"], []).append(r)
    broken = [p for p, members in pairs.items() if sorted(m["variant"] for m in members) != ["a", "b"]]
    families = Counter(r["family"] for r in rows)
    missing = [f for f in PROBE_FAMILIES if not families[f]]
    bad_labels = [r["probe_id"] for r in rows if [x for x in MODEL_LABELS if x in r["labels"]] != r["labels"]]
    return [Check("probes: complete pairs", not broken and not bad_labels,
                  f"{len(pairs)} pairs; broken {broken[:3]}; bad labels {bad_labels[:3]}"),
            Check("probes: every shortcut family", not missing,
                  ", ".join(f"{f} {families[f] // 2}" for f in PROBE_FAMILIES) + (f"; missing {missing}" if missing else ""))]


def cue_audit(rows: list[dict]) -> list[str]:
    """How much a surface cue gives a row's label away: share of violations among rows with and
    without the cue, and how well length alone separates violations from the rest (ROC AUC).
    Printed by `data validate` and written to the datasheet; the shortcut issue measured these."""
    import re

    from sklearn.metrics import roc_auc_score

    from reportguard.core.normalize import listing_text

    cues = {"quote marks": re.compile(r"[“”「」『』\"]"), "news vocabulary": re.compile(r"记者|监管部门|伪造|虚假"),
            "工作日": re.compile(r"工作日"), "contact lure": re.compile(r"加v|薇信|vx|威信|私信|私聊|扣扣|qq", re.I)}
    violation = [bool({"report_sale", "false_ad"} & set(r["labels"])) for r in rows]
    lines = []
    for name, pattern in cues.items():
        has = [bool(pattern.search(f"{r['title']} {r['description']}")) for r in rows]
        with_cue = [v for v, h in zip(violation, has) if h]
        without = [v for v, h in zip(violation, has) if not h]
        lines.append(f"{name}: {len(with_cue)} rows, {sum(with_cue) / max(len(with_cue), 1):.0%} violations with it, "
                     f"{sum(without) / max(len(without), 1):.0%} without")
    lengths = [len(listing_text(r["title"], r["description"])) for r in rows]
    if any(violation) and not all(violation):
        auc = roc_auc_score(violation, [-x for x in lengths])
        lines.append(f"length: ROC AUC of 'shorter is a violation' {auc:.2f} (0.5 = no signal)")
    return lines
