"""Tiered scoring: cheap students in front of the teacher (bundle.json `route`, issue 14).

A bundle may carry student tiers, cheapest first (core.bundle_format.validate_route checks them;
each tier's file is hash-checked with the rest of the bundle):
- `hashed_ngrams` (tier1.npz): character n-grams hashed into buckets, numpy only
  (core.hashed_ngrams);
- `transformer` (tier2.onnx): a small transformer reading the teacher's tokenizer and encoding
  spec (windows, max over windows, as `Bundle.calibrated_logits`), output already calibrated.

Every tier speaks the teacher's units, calibrated logits (logit / T per label), so one set of
decision cuts (`Bundle.cuts`) serves all of them. Routes:
- `teacher`: `Bundle.calibrated_logits` on every text, exactly today's scorer;
- `auto`: the cascade. Tier 1 scores every text; a text is *settled* by a tier when no label's
  logit lies within that tier's margin of a cut (core.calibration.near_a_cut); the rest go to the
  next tier, and the teacher (int8 with its fp32 fallback) settles what no student could. A
  bundle without tiers, or whose gate failed (`route.default` "teacher"), runs teacher-only;
- a tier's name (`tier1`, `tier2`): that tier alone on every text, for diagnosis.

Evidence at a student's price (`evidence_tiers`): a flagged text's clauses are occluded through
the cheapest tier whose labels and decision for that text equal the final ones; the tier that
settled it qualifies by construction, and under `auto` tier 1 has scored every text.

Tiers are indexed 0..k-1 in bundle order; index k is the teacher.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reportguard.core.calibration import label_array, near_a_cut, sigmoid
from reportguard.core.encoding import encode, length_batches, pool_max
from reportguard.core.errors import UsageError
from reportguard.core.labels import MODEL_LABELS

TEACHER = "teacher"
AUTO = "auto"
#: The routes `reportguard score --route` offers (a bundle's tiers are named tier1, tier2).
ROUTES = (AUTO, TEACHER, "tier1", "tier2")


@dataclass
class Tier:
    """One student of a bundle's route: its bundle.json entry, as the scorer uses it."""
    name: str
    kind: str  # core.bundle_format.TIER_KINDS
    file: str
    margin: np.ndarray  # per model label, in calibrated-logit units
    config: dict  # the whole bundle.json entry (hashed_ngrams: buckets, n-gram range, windows)


def parse_tiers(route: dict | None) -> list[Tier]:
    """The tiers of a validated `route` section (core.bundle_format.validate_route), cheapest first."""
    return [Tier(t["name"], t["kind"], t["file"], label_array({x: float(t["margin"][x]) for x in MODEL_LABELS}), dict(t))
            for t in (route or {}).get("tiers") or []]


def open_tier(bundle, tier: Tier):
    """A tier's model, opened in the process that uses it: an onnxruntime session for a
    transformer (Bundle._open: a GraphError naming the file), a HashedNgramModel for n-grams."""
    if tier.kind == "transformer":
        return bundle._open(tier.file)
    from reportguard.core.hashed_ngrams import load_tier1

    from .bundle import GraphError
    try:
        return load_tier1(bundle.path / tier.file, tier.config)
    except Exception as exc:  # np.load raises zipfile, OS and value errors on a garbage file
        raise GraphError(f"{bundle.path / tier.file}: not a loadable {tier.kind} tier "
                         f"({' '.join(str(exc).split())[:300] or type(exc).__name__})") from exc


def tier_names(bundle) -> list[str]:
    """Names by tier index: the students, then the teacher."""
    return [t.name for t in bundle.tiers] + [TEACHER]


def resolve_route(bundle, requested: str) -> str:
    """What a requested route runs with this bundle: "auto" (the cascade), "teacher", or a tier's
    name. `auto` is teacher-only for a bundle without tiers or whose gate failed; a tier the
    bundle lacks is a UsageError."""
    if requested == TEACHER:
        return TEACHER
    if requested == AUTO:
        default = (bundle.meta.get("route") or {}).get("default", TEACHER)
        return AUTO if bundle.tiers and default == AUTO else TEACHER
    names = [t.name for t in bundle.tiers]
    if requested not in names:
        has = f"its tiers are {', '.join(names)}" if names else "it has no student tiers"
        raise UsageError(f"--route {requested}: the bundle {bundle.path} has no tier {requested!r} ({has}); "
                         f"use --route auto or --route teacher")
    return requested


def describe_route(bundle, requested: str) -> dict:
    """The manifest's account of the route: what was asked, what ran, and why auto ran teacher-only."""
    used = resolve_route(bundle, requested)
    out = {"requested": requested, "used": used,
           "tiers": tier_names(bundle) if used == AUTO else [used] if used != TEACHER else [TEACHER]}
    route = bundle.meta.get("route") or {}
    if requested == AUTO and used == TEACHER:
        out["reason"] = route.get("reason") or ("the bundle has no student tiers" if not bundle.tiers else "route.default is teacher")
    return out


@dataclass
class Routed:
    """The outcome of a route over a list of texts."""
    logits: np.ndarray  # (n, labels) float32, calibrated: the logits of the tier that settled each text
    truncated: list[bool]
    tier: np.ndarray  # (n,) int8: the index of the tier that settled each text (len(tiers) = teacher)
    #: per tier index that scored any text: (rows, their logits); the settling tier's included
    scored: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def route_logits(bundle, texts: list[str], route: str, batch_size: int, on_batch=None) -> tuple[np.ndarray, list[bool], np.ndarray]:
    """(calibrated logits (n, 3) float32, truncated flags, settling tier index int8) of `texts`
    under `route` (module doc). Route teacher is `Bundle.calibrated_logits`, bit for bit."""
    routed = route_texts(bundle, texts, route, batch_size, on_batch)
    return routed.logits, routed.truncated, routed.tier


def route_texts(bundle, texts: list[str], route: str, batch_size: int, on_batch=None) -> Routed:
    """`route_logits` keeping every tier's logits (for choosing the evidence tier)."""
    used = resolve_route(bundle, route)
    n, teacher = len(texts), len(bundle.tiers)
    if used == TEACHER:
        logits, truncated = bundle.calibrated_logits(texts, batch_size, on_batch)
        return Routed(logits, truncated, np.full(n, teacher, dtype=np.int8), {teacher: (np.arange(n), logits)})
    if used != AUTO:
        index = tier_names(bundle).index(used)
        logits, truncated = tier_logits(bundle, index, texts, batch_size, on_batch)
        return Routed(logits, truncated, np.full(n, index, dtype=np.int8), {index: (np.arange(n), logits)})
    return _cascade(bundle, texts, batch_size, on_batch)


def _cascade(bundle, texts: list[str], batch_size: int, on_batch) -> Routed:
    """Each tier in turn on the texts no cheaper tier settled; the teacher on the rest."""
    n, cuts = len(texts), bundle.cuts()
    out = Routed(np.zeros((n, len(MODEL_LABELS)), dtype=np.float32), [False] * n,
                 np.full(n, len(bundle.tiers), dtype=np.int8))
    pending = np.arange(n)
    for index, tier in enumerate(bundle.tiers):
        if not len(pending):
            break
        logits, truncated = tier_logits(bundle, index, [texts[i] for i in pending], batch_size)
        out.scored[index] = (pending, logits)
        settled = ~near_a_cut(logits, cuts, tier.margin)
        _settle(out, pending[settled], logits[settled], [t for t, s in zip(truncated, settled) if s], index)
        if on_batch:
            on_batch(int(settled.sum()))
        pending = pending[~settled]
    if len(pending):
        logits, truncated = bundle.calibrated_logits([texts[i] for i in pending], batch_size, on_batch)
        out.scored[len(bundle.tiers)] = (pending, logits)
        _settle(out, pending, logits, truncated, len(bundle.tiers))
    return out


def _settle(out: Routed, rows: np.ndarray, logits: np.ndarray, truncated: list[bool], index: int) -> None:
    out.logits[rows] = logits
    out.tier[rows] = index
    for i, t in zip(rows.tolist(), truncated):
        out.truncated[i] = t


def tier_logits(bundle, index: int, texts: list[str], batch_size: int, on_batch=None) -> tuple[np.ndarray, list[bool]]:
    """Calibrated logits (n, 3) float32 of one tier (index len(tiers): the teacher) and the texts
    it read only in part: a transformer's texts longer than one window of the encoding spec; none
    for n-grams, whose character windows cover every text."""
    if index == len(bundle.tiers):
        return bundle.calibrated_logits(texts, batch_size, on_batch)
    model = bundle.tier_model(index)
    if bundle.tiers[index].kind == "hashed_ngrams":
        logits = np.asarray(model.logits(texts), dtype=np.float32).reshape(len(texts), len(MODEL_LABELS))
        if on_batch:
            on_batch(len(texts))
        return logits, [False] * len(texts)
    return _transformer_logits(bundle, model, texts, batch_size, on_batch)


def _transformer_logits(bundle, session, texts: list[str], batch_size: int, on_batch) -> tuple[np.ndarray, list[bool]]:
    """A student transformer over the bundle's tokenizer and spec: every window scored, a text's
    logit per label the maximum over its windows (as the teacher's first pass)."""
    if not texts:
        return np.zeros((0, len(MODEL_LABELS)), dtype=np.float32), []
    encoded = encode(bundle.tokenizer, texts, bundle.spec)
    ids = encoded.ids
    window_logits = np.zeros((len(ids), len(MODEL_LABELS)), dtype=np.float32)
    for idx in length_batches(ids, batch_size):
        window_logits[idx] = bundle.logits([ids[i] for i in idx], session)
        if on_batch:
            on_batch(len(idx))
    return pool_max(window_logits, encoded.owner, len(texts)), encoded.truncated


def tier_proba(bundle, index: int, texts: list[str], batch_size: int, fallback: bool = True) -> np.ndarray:
    """Calibrated probabilities of one tier; the teacher's as `Bundle.predict_proba` gives them
    (without its fp32 fallback pass when `fallback` is False)."""
    if index == len(bundle.tiers):
        return sigmoid(bundle.calibrated_logits(texts, batch_size, fallback=fallback)[0])
    return sigmoid(tier_logits(bundle, index, texts, batch_size)[0])


def decision_signature(probs: np.ndarray, bundle) -> np.ndarray:
    """Per text, which side of every flag and block threshold each label lies on, compared as
    the scorer compares (probabilities against `thresholds` and `block_thresholds`): two
    probability rows with equal signatures give the same labels and the same decision."""
    probs = np.asarray(probs).reshape(-1, len(MODEL_LABELS))
    sides = [probs >= bundle.thresholds]
    for k, name in enumerate(MODEL_LABELS):
        if name in bundle.block_thresholds:
            sides.append((probs[:, k] >= bundle.block_thresholds[name])[:, None])
    return np.concatenate(sides, axis=1)


def evidence_tiers(bundle, routed: Routed, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per text, the cheapest tier that scored it and reproduces its final labels and decision,
    and that tier's probabilities (the base an occlusion drop is measured from). The settling
    tier always qualifies; its probabilities are `probs` itself."""
    via = routed.tier.copy()
    base = np.array(probs, dtype=np.float32, copy=True)
    final = decision_signature(probs, bundle)
    for index in sorted(routed.scored):
        rows, logits = routed.scored[index]
        cheaper = rows[routed.tier[rows] > index]
        if not len(cheaper):
            continue
        tier_probs = sigmoid(logits[routed.tier[rows] > index])
        agree = (decision_signature(tier_probs, bundle) == final[cheaper]).all(axis=1) & (via[cheaper] > index)
        via[cheaper[agree]] = index
        base[cheaper[agree]] = tier_probs[agree]
    return via, base
