"""Listing text -> model input ids, shared by training and scoring (tokenizers only, no torch).

Long listings are never truncated silently. Two ways, chosen by the bundle's `EncodingSpec.long_text`:

- `head_tail` (older bundles): the first `head_share` of the token budget comes from the text's
  start (the title and opening claims) and the rest from its end (contact lures, refund promises).
  A violation buried in the middle of a long detail page is never seen.
- `windows`: the text is cut into overlapping windows of the budget, `stride` tokens apart, the
  last one flush with the end, so every token is seen; each window is scored and a listing's
  logit per label is the maximum over its windows (a violation anywhere in the page counts).
  A listing that fits is one window, exactly as before.

Callers get a `truncated` flag per text (longer than one window) so they can count and report it.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer


@dataclass(frozen=True)
class EncodingSpec:
    max_length: int  # including the two special tokens
    cls_id: int
    sep_id: int
    pad_id: int
    head_share: float = 0.75  # of the token budget, taken from the start of a long text (head_tail)
    long_text: str = "head_tail"  # or "windows"
    stride: int = 0  # windows: tokens between window starts; 0 = three quarters of the budget

    def to_dict(self) -> dict:
        return {"max_length": self.max_length, "cls_id": self.cls_id, "sep_id": self.sep_id,
                "pad_id": self.pad_id, "head_share": self.head_share, "long_text": self.long_text, "stride": self.stride}

    @property
    def budget(self) -> int:
        return self.max_length - 2

    @property
    def window_stride(self) -> int:
        return self.stride or max(1, self.budget * 3 // 4)


def spec_for(tokenizer: Tokenizer, max_length: int, head_share: float = 0.75, long_text: str = "head_tail",
             stride: int = 0) -> EncodingSpec:
    """Find the special-token ids of a BERT ([CLS]/[SEP]/[PAD]) or XLM-R (<s>/</s>/<pad>) vocabulary."""
    def first_id(*names: str) -> int:
        for name in names:
            idx = tokenizer.token_to_id(name)
            if idx is not None:
                return idx
        raise ValueError(f"tokenizer has none of the special tokens {names}")
    if long_text not in ("head_tail", "windows"):
        raise ValueError(f"long_text must be head_tail or windows, not {long_text!r}")
    return EncodingSpec(max_length, first_id("[CLS]", "<s>"), first_id("[SEP]", "</s>"),
                        first_id("[PAD]", "<pad>"), head_share, long_text, stride)


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


def window_spans(n: int, budget: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) spans of `budget` tokens covering n tokens, `stride` apart, the last flush
    with the end.

    >>> window_spans(5, 8, 6)
    [(0, 5)]
    >>> window_spans(20, 8, 6)
    [(0, 8), (6, 14), (12, 20)]
    >>> window_spans(10, 8, 6)
    [(0, 8), (2, 10)]
    """
    if n <= budget:
        return [(0, n)]
    starts = list(range(0, n - budget, stride)) + [n - budget]
    return [(s, s + budget) for s in dict.fromkeys(starts)]


@dataclass
class Encoded:
    """Model inputs for a list of texts: `ids[j]` is a sequence (with specials) belonging to text
    `owner[j]`; one per text for head_tail or short texts, several for long texts in windows."""
    ids: list[list[int]]
    owner: np.ndarray
    truncated: list[bool]
    spans: list[tuple[int, int]]  # character span of each sequence in its text (for choosing windows)


def encode(tokenizer: Tokenizer, texts: list[str], spec: EncodingSpec) -> Encoded:
    """Texts -> sequences per `spec.long_text`; see the module docstring."""
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    ids, owner, truncated, spans = [], [], [], []
    for i, (enc, text) in enumerate(zip(encodings, texts)):
        raw = enc.ids
        truncated.append(len(raw) > spec.budget)
        if spec.long_text == "windows":
            offsets = enc.offsets  # a fresh list on every access of the property: read it once
            for start, end in window_spans(len(raw), spec.budget, spec.window_stride):
                ids.append([spec.cls_id, *raw[start:end], spec.sep_id])
                owner.append(i)
                spans.append((offsets[start][0] if raw else 0, offsets[end - 1][1] if raw else len(text)))
        else:
            ids.append([spec.cls_id, *head_tail(raw, spec.budget, spec.head_share), spec.sep_id])
            owner.append(i)
            spans.append((0, len(text)))
    return Encoded(ids, np.array(owner, dtype=np.int64), truncated, spans)


def pool_max(logits: np.ndarray, owner: np.ndarray, n_texts: int) -> np.ndarray:
    """Per-text logits: the maximum over each text's sequences, per label.

    >>> pool_max(np.array([[0., 1.], [2., -1.], [5., 5.]]), np.array([0, 0, 1]), 2).tolist()
    [[2.0, 1.0], [5.0, 5.0]]
    """
    out = np.full((n_texts, logits.shape[1]), -np.inf, dtype=logits.dtype)
    np.maximum.at(out, owner, logits)
    return out


def length_batches(ids: Sequence[Sized], batch_size: int, rows: np.ndarray | None = None,
                   sort: bool = True) -> Iterator[np.ndarray]:
    """Indices into `ids` (token-id sequences, or texts) in batches of `batch_size`, shortest first (a stable sort, so
    equal lengths keep their order): each padded batch then wastes a few tokens at most. `rows`
    limits the batches to those indices (the fallback pass re-scores a few); `sort=False` keeps
    the given order (what bucketing is worth, in the benchmark). The one length-bucketing rule of
    the scorer, the export checks, the benchmark and PyTorch prediction.

    >>> [b.tolist() for b in length_batches([[1, 2, 3], [1], [1, 2], [4]], 2)]
    [[1, 3], [2, 0]]
    >>> [b.tolist() for b in length_batches([[1, 2, 3], [1], [1, 2], [4]], 2, rows=np.array([0, 2, 3]))]
    [[3, 2], [0]]
    """
    rows = np.arange(len(ids)) if rows is None else np.asarray(rows, dtype=np.int64)
    if sort:
        rows = rows[np.argsort([len(ids[i]) for i in rows], kind="stable")]
    for start in range(0, len(rows), batch_size):
        yield rows[start:start + batch_size]


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
