"""Listing text -> model input ids, shared by training and scoring (tokenizers only, no torch).

Long listings are never truncated silently: when a text has more tokens than fit, the first
`head` share of the budget comes from its start (the title and opening claims) and the rest from
its end (where contact lures and refund promises tend to sit). Callers get a `truncated` flag per
text so they can count and report it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer


@dataclass(frozen=True)
class EncodingSpec:
    max_length: int  # including the two special tokens
    cls_id: int
    sep_id: int
    pad_id: int
    head_share: float = 0.75  # of the token budget, taken from the start of a long text

    def to_dict(self) -> dict:
        return {"max_length": self.max_length, "cls_id": self.cls_id, "sep_id": self.sep_id,
                "pad_id": self.pad_id, "head_share": self.head_share}


def spec_for(tokenizer: Tokenizer, max_length: int, head_share: float = 0.75) -> EncodingSpec:
    """Find the special-token ids of a BERT ([CLS]/[SEP]/[PAD]) or XLM-R (<s>/</s>/<pad>) vocabulary."""
    def first_id(*names: str) -> int:
        for name in names:
            idx = tokenizer.token_to_id(name)
            if idx is not None:
                return idx
        raise ValueError(f"tokenizer has none of the special tokens {names}")
    return EncodingSpec(max_length, first_id("[CLS]", "<s>"), first_id("[SEP]", "</s>"),
                        first_id("[PAD]", "<pad>"), head_share)


def head_tail(ids: list[int], budget: int, head_share: float) -> list[int]:
    """Keep `budget` ids: a head from the start and a tail from the end.

    >>> head_tail(list(range(10)), 6, 0.5)
    [0, 1, 2, 7, 8, 9]
    >>> head_tail([1, 2], 6, 0.5)
    [1, 2]
    """
    if len(ids) <= budget:
        return ids
    head = int(round(budget * head_share))
    return ids[:head] + ids[len(ids) - (budget - head):]


def encode_texts(tokenizer: Tokenizer, texts: list[str], spec: EncodingSpec) -> tuple[list[list[int]], list[bool]]:
    """Token ids with special tokens, and whether each text was cut (head+tail) to fit."""
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    budget = spec.max_length - 2
    ids, truncated = [], []
    for enc in encodings:
        raw = enc.ids
        truncated.append(len(raw) > budget)
        ids.append([spec.cls_id, *head_tail(raw, budget, spec.head_share), spec.sep_id])
    return ids, truncated


def pad_batch(ids: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 input_ids and attention_mask, padded to the longest sequence in the batch."""
    width = max(map(len, ids))
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, row in enumerate(ids):
        input_ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    return input_ids, mask


def load_tokenizer(path: str) -> Tokenizer:
    """A tokenizers.Tokenizer from tokenizer.json, with truncation and padding switched off:
    encode_texts does both itself, identically in training and scoring."""
    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok
