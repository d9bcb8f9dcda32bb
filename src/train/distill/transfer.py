"""The transfer set: the texts a student learns the teacher from.

A student learns what the teacher would say, not only what the few thousand gold rows say, so
it needs many more texts than the corpus holds, all of them the kind of text a scorer meets. The
set is built from the rows training may read (`train.datasets.training_rows`: the corpus's train
split, ordinary listings of the training writers, real text from training sites; never a
validation or evaluation row) and from seeded variants of them:

- `obfuscate`: the sellers' tricks of train/augment.py (traditional characters, spacing, emoji,
  lexicon evasions, typos), applied to the raw text before normalisation, as training does;
- `drop`: one or two clauses left out (a violation phrase may go, and the teacher says so);
- `shuffle`: the clauses of the description in another order;
- `mask`: a few characters replaced by the tokenizer's unknown-looking "□" (OCR loss);
- `splice`: a clause of another listing put into this one, so an ordinary listing can carry a
  violating clause and a violating one a harmless sentence, in any position.

Only the unchanged rows and their obfuscations keep a gold label: the other variants may have
changed meaning, so the teacher's soft label is all they have. Every text is the *model text*
(core.normalize.listing_text), what both teacher and students read. Seeded and in a fixed order,
so the set's hash (`transfer_hash`) identifies it in MLflow and in the label cache.
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from reportguard.core.labels import MODEL_LABELS
from reportguard.core.normalize import listing_text

from ..augment import obfuscate

#: Variant kinds and their shares of the generated (non-original) texts.
KINDS = {"obfuscate": 0.3, "drop": 0.2, "shuffle": 0.1, "mask": 0.1, "splice": 0.3}
_CLAUSE_SPLIT = re.compile(r"(?<=[，。！？；,.!?;\n])")


@dataclass
class TransferText:
    text: str  # model text (normalised)
    source: str  # "original", or the variant kind
    gold: list[str] | None  # gold model labels where the text keeps its row's meaning


def _clauses(text: str) -> list[str]:
    return [c for c in _CLAUSE_SPLIT.split(text) if c.strip()]


def _variant(kind: str, row: dict, donor: dict, rng: random.Random) -> tuple[str, str]:
    """(title, description) of a raw-text variant of `row`."""
    title, description = row.get("title") or "", row.get("description") or ""
    if kind == "obfuscate":
        return obfuscate(title, rng) if title else title, obfuscate(description, rng) if description else description
    parts = _clauses(description) or _clauses(title)
    on_title = not _clauses(description)
    if kind == "drop" and len(parts) >= 2:
        for _ in range(min(len(parts) - 1, rng.choice([1, 1, 2]))):
            parts.pop(rng.randrange(len(parts)))
    elif kind == "shuffle" and len(parts) >= 2:
        rng.shuffle(parts)
    elif kind == "mask":
        chars = list("".join(parts))
        for i in rng.sample(range(len(chars)), k=min(len(chars), max(1, len(chars) // 15))):
            chars[i] = "□"
        parts = ["".join(chars)]
    elif kind == "splice":
        donor_parts = _clauses(donor.get("description") or "") or _clauses(donor.get("title") or "")
        if donor_parts:
            parts.insert(rng.randint(0, len(parts)), rng.choice(donor_parts))
    joined = "".join(parts)
    return (joined, description) if on_title else (title, joined)


def build_transfer_set(rows: list[dict], size: int, seed: int = 0) -> list[TransferText]:
    """Every row once (with its gold labels), then seeded variants until `size` distinct texts."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[TransferText] = []

    def add(text: str, source: str, gold: list[str] | None) -> None:
        if text and text not in seen:
            seen.add(text)
            out.append(TransferText(text, source, gold))
    for row in rows:
        add(listing_text(row.get("title") or "", row.get("description") or ""), "original", _gold(row))
    kinds, weights = list(KINDS), list(KINDS.values())
    attempts = 0
    while len(out) < size and attempts < size * 4:
        attempts += 1
        row, donor = rng.choice(rows), rng.choice(rows)
        kind = rng.choices(kinds, weights)[0]
        title, description = _variant(kind, row, donor, rng)
        add(listing_text(title, description), kind, _gold(row) if kind == "obfuscate" else None)
    return out


def _gold(row: dict) -> list[str] | None:
    labels = row.get("labels")
    if labels is None:
        return None
    return [x for x in labels if x in MODEL_LABELS]


def transfer_hash(texts: list[TransferText]) -> str:
    """SHA-256 over the texts, sources and gold labels, in order: the set's identity."""
    digest = hashlib.sha256()
    for t in texts:
        digest.update(f"{t.source}\t{'|'.join(t.gold) if t.gold is not None else '-'}\t{t.text}\n".encode("utf-8"))
    return digest.hexdigest()
