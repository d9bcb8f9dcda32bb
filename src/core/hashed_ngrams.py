"""Tier 1: character n-grams hashed into a fixed number of buckets, and a small model over them.

The cheapest student of the teacher (train/distill/tier1.py trains it; serve/tiers.py routes
with it). fastText-style: a listing's text is the bag of its character 1- to 3-grams, each
hashed to one of `buckets` rows of a weight matrix, so there is no vocabulary to ship or to go
stale, and an n-gram never seen in training simply adds nothing. numpy only, so the scorer runs
it at thousands of listings per second with no model runtime at all.

The hash is FNV-1a over the n-gram's code points with the n-gram length as seed, then
MurmurHash3's 64-bit finaliser (fmix64) to spread FNV's low bits: deterministic across processes,
platforms and Python versions (Python's own `hash` is salted per process), and vectorised over a
whole text at once.

The model is linear on the L2-normalised bag (`weights`: buckets x 3), or with `w2` one hidden
ReLU layer (`weights`: buckets x d, `w2`: d x 3). It outputs calibrated logits (the teacher's
logit / T) like every tier. Long texts are read in overlapping character windows and a label's
logit is the maximum over the windows, as the teacher does with token windows, so a violation
buried in a long page is not diluted by the rest of it.

>>> ids = ngram_ids("检测报告", 1024, 1, 3)
>>> len(ids), bool(((ids >= 0) & (ids < 1024)).all())
(9, True)
>>> bool((ngram_ids("检测报告", 1024, 1, 3) == ids).all())
True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)

#: Defaults written into bundle.json's tier entry (the entry is what the scorer reads).
DEFAULTS = {"buckets": 1 << 20, "ngram_min": 1, "ngram_max": 3, "window_chars": 256, "stride_chars": 192}


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _S33)
    h = h * _FMIX1
    h = h ^ (h >> _S33)
    h = h * _FMIX2
    return h ^ (h >> _S33)


def ngram_ids(text: str, buckets: int, ngram_min: int = 1, ngram_max: int = 3) -> np.ndarray:
    """Bucket ids (int64) of every character n-gram of `text`, n in [ngram_min, ngram_max]."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    out = []
    with np.errstate(over="ignore"):
        for n in range(ngram_min, ngram_max + 1):
            count = len(codes) - n + 1
            if count <= 0:
                break
            h = np.full(count, _FNV_OFFSET ^ np.uint64(n), dtype=np.uint64)
            for k in range(n):
                h = (h ^ codes[k:k + count]) * _FNV_PRIME
            out.append(_fmix64(h))
    if not out:
        return np.zeros(0, dtype=np.int64)
    return (np.concatenate(out) % np.uint64(buckets)).astype(np.int64)


def windows(text: str, window_chars: int, stride_chars: int) -> list[str]:
    """`text` in overlapping character windows; one window when it is short enough.

    >>> windows("abcdefgh", 4, 3)
    ['abcd', 'defg', 'efgh']
    """
    if len(text) <= window_chars:
        return [text]
    starts = list(range(0, len(text) - window_chars, stride_chars)) + [len(text) - window_chars]
    return [text[s:s + window_chars] for s in starts]


def bag(text: str, config: dict) -> tuple[np.ndarray, np.ndarray]:
    """(distinct bucket ids, L2-normalised counts) of one window: the model's input."""
    ids = ngram_ids(text, config["buckets"], config["ngram_min"], config["ngram_max"])
    if not len(ids):
        return ids, np.zeros(0, dtype=np.float32)
    uniq, counts = np.unique(ids, return_counts=True)
    values = counts.astype(np.float32)
    return uniq, values / np.float32(np.sqrt((values * values).sum()))


@dataclass
class HashedNgramModel:
    weights: np.ndarray  # (buckets, d) float32
    bias: np.ndarray  # (d,) float32
    config: dict = field(default_factory=lambda: dict(DEFAULTS))
    w2: np.ndarray | None = None  # (d, labels): one hidden ReLU layer
    b2: np.ndarray | None = None

    def window_logits(self, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        h = values @ self.weights[ids] + self.bias if len(ids) else self.bias.copy()
        if self.w2 is not None:
            h = np.maximum(h, 0.0) @ self.w2 + self.b2
        return h

    def logits(self, texts: list[str]) -> np.ndarray:
        """(len(texts), labels) calibrated logits: per label, the maximum over the text's windows."""
        n_labels = (self.w2 if self.w2 is not None else self.weights).shape[1]
        out = np.empty((len(texts), n_labels), dtype=np.float32)
        cfg = self.config
        for i, text in enumerate(texts):
            out[i] = np.max([self.window_logits(*bag(w, cfg)) for w in windows(text, cfg["window_chars"], cfg["stride_chars"])],
                            axis=0)
        return out


def save_tier1(path: str | Path, model: HashedNgramModel) -> Path:
    """tier1.npz: `weights`, `bias` (and `w2`, `b2` with a hidden layer); float32, no pickles."""
    arrays = {"weights": model.weights.astype(np.float32), "bias": model.bias.astype(np.float32)}
    if model.w2 is not None:
        arrays |= {"w2": model.w2.astype(np.float32), "b2": model.b2.astype(np.float32)}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return Path(path)


def load_tier1(path: str | Path, config: dict) -> HashedNgramModel:
    """The tier-1 model from tier1.npz and its bundle.json entry (buckets, n-gram range, windows);
    a ValueError naming the file when the arrays do not fit the entry."""
    cfg = {k: int(config.get(k, v)) for k, v in DEFAULTS.items()}
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    weights, bias = arrays.get("weights"), arrays.get("bias")
    if weights is None or bias is None or weights.ndim != 2 or weights.shape[0] != cfg["buckets"] or bias.shape != weights.shape[1:]:
        raise ValueError(f"{path}: expected `weights` ({cfg['buckets']} x d) and `bias` (d); "
                         f"found {[(k, v.shape) for k, v in arrays.items()]}")
    return HashedNgramModel(weights.astype(np.float32), bias.astype(np.float32), cfg, arrays.get("w2"), arrays.get("b2"))
