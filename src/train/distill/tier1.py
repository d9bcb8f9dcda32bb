"""Train tier 1 (core/hashed_ngrams.py) on the teacher's soft labels, plus gold labels where known.

The model is an `EmbeddingBag` over hashed character n-gram buckets (per-sample weights: the
L2-normalised counts, exactly the bag the scorer computes), optionally followed by one hidden
ReLU layer; a text's logit per label is the maximum over its character windows (scatter-amax), as
in the scorer. Loss: mean squared error to the teacher's calibrated logits, clipped to
[-clip, clip] (beyond that the teacher is certain and only the side matters), plus binary
cross-entropy on the gold labels of the rows that have them (`gold_weight`). The teacher's
logits are the main target (Tang et al. 2019 distil BiLSTMs on logits with MSE), the gold
labels keep the student honest where the teacher errs on its own training rows. The squared
error is weighted `under_weight` times where the student is below the teacher: routing lets tier 1
settle a text only beyond a margin set by its worst miss (a text it scores far below a cut the
teacher is above), so a student that leans high sends doubtful texts on instead of settling them
as clean. Measured on the e5-small teacher: under_weight 4 took the share of validation tier 1
settles from 44% to 67% (held-out ordinary listings 40% to 74%), its margins from 8.0/7.4/5.2 to
6.7/7.0/4.6.

Training data is prepared once (every window's bag, as index/weight arrays) and shuffled per
epoch; 200,000 texts train in a few minutes on 2 cores.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from reportguard.core.hashed_ngrams import DEFAULTS, HashedNgramModel, bag, windows
from reportguard.core.labels import MODEL_LABELS


@dataclass
class Tier1Config:
    buckets: int = DEFAULTS["buckets"]
    ngram_min: int = DEFAULTS["ngram_min"]
    ngram_max: int = DEFAULTS["ngram_max"]
    window_chars: int = DEFAULTS["window_chars"]
    stride_chars: int = DEFAULTS["stride_chars"]
    hidden: int = 0  # 0: linear; else one hidden ReLU layer of this width
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 0.05
    clip: float = 8.0
    gold_weight: float = 0.5
    #: weight of squared error where the student is *below* the teacher (1: plain MSE). Routing
    #: settles a text only far from every cut, and the margin is set by the worst miss, a text the
    #: student scores far below a cut the teacher is above; weighting misses up makes the student
    #: err on the side of sending a text on (which costs time, not decisions).
    under_weight: float = 1.0
    seed: int = 0
    threads: int = 2
    #: a tiered bundle of the same teacher whose tier 1 is taken as it is, not trained again
    reuse_from: str | None = None

    def model_config(self) -> dict:
        return {k: getattr(self, k) for k in DEFAULTS}


@dataclass
class Bags:
    """Every window of every text as flat arrays: `ids`/`values` per window (offsets into them),
    `owner` = the text each window belongs to."""
    ids: np.ndarray
    values: np.ndarray
    offsets: np.ndarray  # (windows + 1,)
    owner: np.ndarray  # (windows,)


def prepare(texts: list[str], cfg: Tier1Config) -> Bags:
    model_cfg = cfg.model_config()
    ids, values, lengths, owner = [], [], [], []
    for i, text in enumerate(texts):
        for w in windows(text, cfg.window_chars, cfg.stride_chars):
            u, v = bag(w, model_cfg)
            ids.append(u)
            values.append(v)
            lengths.append(len(u))
            owner.append(i)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Bags(np.concatenate(ids) if ids else np.zeros(0, np.int64), np.concatenate(values) if values else np.zeros(0, np.float32),
                offsets, np.asarray(owner, dtype=np.int64))


class _Net(torch.nn.Module):
    def __init__(self, cfg: Tier1Config):
        super().__init__()
        width = cfg.hidden or len(MODEL_LABELS)
        self.bag = torch.nn.EmbeddingBag(cfg.buckets, width, mode="sum", sparse=True)
        torch.nn.init.normal_(self.bag.weight, std=0.01)
        self.bias = torch.nn.Parameter(torch.zeros(width))
        self.head = torch.nn.Linear(cfg.hidden, len(MODEL_LABELS)) if cfg.hidden else None

    def forward(self, ids, offsets, values):
        h = self.bag(ids, offsets, per_sample_weights=values) + self.bias
        return self.head(torch.relu(h)) if self.head is not None else h


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The concatenation of arange(s, e) for each pair, vectorised.

    >>> _ranges(np.array([2, 7]), np.array([4, 8])).tolist()
    [2, 3, 7]
    """
    lengths = ends - starts
    shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(int(lengths.sum())) + shift


def _batch(bags: Bags, text_idx: np.ndarray, first: np.ndarray, count: np.ndarray):
    """The windows of `text_idx` as EmbeddingBag input, and each window's text in the batch.
    A text's windows are consecutive (`first[t]`, `count[t]` of them), so are their ids."""
    wins = _ranges(first[text_idx], first[text_idx] + count[text_idx])
    local_owner = np.repeat(np.arange(len(text_idx)), count[text_idx])
    starts, ends = bags.offsets[wins], bags.offsets[wins + 1]
    flat = _ranges(starts, ends)
    offsets = np.concatenate([[0], np.cumsum(ends - starts)[:-1]]).astype(np.int64)
    return (torch.from_numpy(bags.ids[flat]), torch.from_numpy(offsets),
            torch.from_numpy(bags.values[flat]), torch.from_numpy(local_owner))


def _text_max(window_logits: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.full((n, window_logits.shape[1]), -1e4)
    return out.scatter_reduce(0, owner[:, None].expand_as(window_logits), window_logits, "amax", include_self=False)


# long because it is one training loop: batches, the two losses, two optimisers, progress
def train_tier1(texts: list[str], teacher_logits: np.ndarray, gold: list[list[str] | None], cfg: Tier1Config) -> HashedNgramModel:
    """Fit tier 1 to the teacher's calibrated logits (and gold labels where given)."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    bags = prepare(texts, cfg)
    count = np.bincount(bags.owner, minlength=len(texts))
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    print(f"tier1: {len(texts):,} texts, {len(bags.owner):,} windows prepared in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    target = torch.from_numpy(np.clip(teacher_logits, -cfg.clip, cfg.clip).astype(np.float32))
    gold_y = torch.tensor([[float(x in (g or [])) for x in MODEL_LABELS] for g in gold])
    has_gold = torch.tensor([g is not None for g in gold], dtype=torch.float32)
    net = _Net(cfg)
    sparse_opt = torch.optim.SparseAdam(list(net.bag.parameters()), lr=cfg.learning_rate)
    dense = [net.bias] + (list(net.head.parameters()) if net.head is not None else [])
    dense_opt = torch.optim.Adam(dense, lr=cfg.learning_rate / 10)
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(texts))
        total, seen = 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            ids, offsets, values, owner = _batch(bags, idx, first, count)
            logits = _text_max(net(ids, offsets, values), owner, len(idx))
            t = torch.from_numpy(idx)
            diff = logits - target[t]
            loss = (torch.where(diff < 0, cfg.under_weight, 1.0) * diff ** 2).mean()
            if cfg.gold_weight:
                loss = loss + cfg.gold_weight * (bce(logits, gold_y[t]).mean(dim=1) * has_gold[t]).mean()
            sparse_opt.zero_grad()
            dense_opt.zero_grad()
            loss.backward()
            sparse_opt.step()
            dense_opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        print(f"tier1: epoch {epoch + 1}/{cfg.epochs} loss {total / max(seen, 1):.4f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return _to_numpy(net, cfg)


def _to_numpy(net: _Net, cfg: Tier1Config) -> HashedNgramModel:
    weights = net.bag.weight.detach().numpy().astype(np.float32)
    bias = net.bias.detach().numpy().astype(np.float32)
    if net.head is None:
        return HashedNgramModel(weights, bias, cfg.model_config())
    return HashedNgramModel(weights, bias, cfg.model_config(), net.head.weight.detach().numpy().T.astype(np.float32).copy(),
                            net.head.bias.detach().numpy().astype(np.float32))
