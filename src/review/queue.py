"""A review queue: the batch of listings from one scored run that reviewers will audit.

Three strategies, because the batch serves three purposes:

- `stratified` estimates production precision and recall. Listings are split into disjoint strata
  by their most severe predicted label (or `none`) and the score band of that label's
  probability; every stratum gets at least one item (so every listing has a non-zero chance of
  being reviewed, which recall needs) and the rest of the budget is spread in proportion to
  sqrt(stratum size): proportional allocation would spend almost everything on the huge `none`
  stratum, equal allocation would waste reviews on tiny ones. Within a stratum the draw is simple
  random sampling without replacement, so an item's inclusion probability is n_h / N_h and its
  sampling weight is the inverse, N_h / n_h. Weighted (Horvitz-Thompson) sums over reviewed items
  then estimate population totals without bias; the exporters turn them into precision and recall.
- `uncertainty` takes the items whose probability lies nearest a label's threshold (active
  learning: these verdicts teach the next model most). Not a probability sample: no weights.
- `top` takes the most severe items first (report_sale > false_ad > credential_missing >
  testing_service, then by probability): what a takedown team looks at first. No weights.

A queue file is JSONL. Its first line is the header (`"kind": "queue"`: id, run path,
model_version, strategy, seed, thresholds, the strata with their weights); each further line is
one item (`"kind": "item"`: position, listing_id, stratum, inclusion_probability, weight, why it was
picked, and the full scored row under `record`). The id is a hash of the content, so building the
same queue twice gives the same id and loading it twice into the store is harmless.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from reportguard.core.labels import ALL_LABEL_NAMES, MODEL_LABELS, severity

from .runs import Run, read_run

FORMAT = "reportguard-queue/1"
STRATEGIES = ("stratified", "uncertainty", "top")
#: Score band edges. Bands are closed on the left; the last one includes 1.0.
BAND_EDGES: tuple[float, ...] = (0.0, 0.5, 0.8, 0.95, 1.0)


@dataclass
class Queue:
    header: dict
    items: list[dict]

    @property
    def queue_id(self) -> str:
        return self.header["queue_id"]


def band_of(probability: float) -> str:
    """The score band a probability falls in.

    >>> band_of(0.97), band_of(0.5), band_of(0.0), band_of(1.0)
    ('0.95-1.00', '0.50-0.80', '0.00-0.50', '0.95-1.00')
    """
    for low, high in zip(BAND_EDGES, BAND_EDGES[1:]):
        if low <= probability < high or (high == BAND_EDGES[-1] and probability == high):
            return f"{low:.2f}-{high:.2f}"
    raise ValueError(f"probability {probability} outside [0, 1]")


def bands() -> list[str]:
    return [f"{low:.2f}-{high:.2f}" for low, high in zip(BAND_EDGES, BAND_EDGES[1:])]


def label_score(row: dict, label: str) -> float:
    """The probability behind a label; the rule-derived credential_missing rides on testing_service."""
    return float(row["p_testing_service" if label == "credential_missing" else f"p_{label}"])


def stratum_of(row: dict) -> str:
    """'<most severe predicted label>/<band of its probability>', or 'none/<band of the top score>'.

    >>> stratum_of({"labels": ["testing_service", "false_ad"], "p_report_sale": 0.1, "p_false_ad": 0.9, "p_testing_service": 0.99})
    'false_ad/0.80-0.95'
    """
    predicted = [x for x in ALL_LABEL_NAMES if x in row["labels"]]
    if predicted:
        return f"{predicted[0]}/{band_of(label_score(row, predicted[0]))}"
    return f"none/{band_of(max(float(row[f'p_{x}']) for x in MODEL_LABELS))}"


def read_thresholds(model_dir: str | Path | None) -> tuple[dict[str, float], str]:
    """Per-label decision thresholds from a bundle's bundle.json, else 0.5 for every label.

    Only bundle.json is read (not the ONNX model): a queue needs the numbers, not the network.
    """
    if model_dir is None:
        return {x: 0.5 for x in MODEL_LABELS}, "default 0.5 (no --model given)"
    meta_path = Path(model_dir) / "bundle.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: not found; --model must be a model bundle directory")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    try:
        return {x: float(meta["thresholds"][x]) for x in MODEL_LABELS}, str(meta_path)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{meta_path}: thresholds missing or malformed ({exc})") from exc


def build_queue(run: Run, size: int, strategy: str, seed: int = 13,
                thresholds: dict[str, float] | None = None, threshold_source: str = "") -> Queue:
    """Pick `size` items from `run` with `strategy` and return the queue (not yet written)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {list(STRATEGIES)}")
    if size < 1:
        raise ValueError("--size must be at least 1")
    if not run.rows:
        raise ValueError(f"{run.path}: the run has no rows to review")
    thresholds = thresholds or {x: 0.5 for x in MODEL_LABELS}
    rng = random.Random(seed)
    if strategy == "stratified":
        picked, weights = _pick_stratified(run.rows, size, rng)
    elif strategy == "uncertainty":
        picked, weights = _pick_uncertain(run.rows, size, thresholds), _no_weights(strategy)
    else:
        picked, weights = _pick_top(run.rows, size), _no_weights(strategy)

    header = {
        "kind": "queue", "format": FORMAT, "queue_id": "",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": str(run.path.resolve()), "run_rows": len(run.rows), "model_version": run.model_version,
        "strategy": strategy, "seed": seed, "size": size, "items": len(picked),
        "thresholds": thresholds, "threshold_source": threshold_source or "default 0.5",
        "bands": bands(), "weights": weights,
    }
    items = [{"kind": "item", "position": i, "listing_id": row["listing_id"], "stratum": stratum_of(row),
              "inclusion_probability": pi, "weight": (1.0 / pi) if pi else None, "reason": reason,
              "record": row}
             for i, (row, pi, reason) in enumerate(picked)]
    header["queue_id"] = _queue_id(header, items)
    for item in items:
        item["queue_id"] = header["queue_id"]
    return Queue(header, items)


def _pick_stratified(rows: list[dict], size: int, rng: random.Random) -> tuple[list, dict]:
    strata: dict[str, list[dict]] = {}
    # Sorted by listing_id so that the draw depends on the seed, not on the run's row order.
    for row in sorted(rows, key=lambda r: r["listing_id"]):
        strata.setdefault(stratum_of(row), []).append(row)
    allocation = allocate(size, {key: len(members) for key, members in strata.items()})
    picked, table = [], {}
    for key in sorted(strata, key=_stratum_order):
        population, n = len(strata[key]), allocation.get(key, 0)
        pi = n / population
        table[key] = {"population": population, "sampled": n, "inclusion_probability": pi,
                      "weight": (population / n) if n else None}
        picked += [(row, pi, f"stratum {key}: {n} of {population}") for row in rng.sample(strata[key], n)]
    # Reviewers see a shuffled batch: blocks of one stratum would anchor their judgement.
    rng.shuffle(picked)
    complete = all(v["sampled"] for v in table.values())
    return picked, {
        "kind": "inverse_inclusion_probability", "strata": table,
        "coverage": "complete" if complete else "partial",
        "note": ("every listing had a non-zero chance of selection: precision and recall are estimable"
                 if complete else "some strata got no item (size below the number of strata): "
                 "estimates cover the sampled strata only and recall is not estimable"),
    }


def allocate(size: int, populations: dict[str, int]) -> dict[str, int]:
    """Items per stratum: one each first (most severe strata first if `size` is short), then the
    rest in proportion to sqrt(population), never more than a stratum holds.

    >>> allocate(10, {"report_sale/0.95-1.00": 3, "none/0.00-0.50": 100})
    {'report_sale/0.95-1.00': 2, 'none/0.00-0.50': 8}
    >>> allocate(1, {"none/0.00-0.50": 5, "false_ad/0.80-0.95": 5})
    {'false_ad/0.80-0.95': 1, 'none/0.00-0.50': 0}
    """
    keys = sorted(populations, key=_stratum_order)
    total = sum(populations.values())
    if size >= total:
        return {k: populations[k] for k in keys}
    alloc = {k: 0 for k in keys}
    for k in keys[:size]:
        alloc[k] = 1
    left = size - sum(alloc.values())
    while left > 0:
        open_keys = [k for k in keys if alloc[k] < populations[k]]
        root = {k: math.sqrt(populations[k]) for k in open_keys}
        norm = sum(root.values())
        # Largest remainder on sqrt shares; ties go to the more severe stratum (keys are ordered).
        shares = {k: left * root[k] / norm for k in open_keys}
        give = {k: min(int(shares[k]), populations[k] - alloc[k]) for k in open_keys}
        if not any(give.values()):
            best = max(open_keys, key=lambda k: shares[k])
            give = {best: 1}
        for k, n in give.items():
            alloc[k] += n
            left -= n
    return alloc


def _stratum_order(key: str) -> tuple[int, float]:
    """Most severe label first, and within a label the highest band first."""
    label, band = key.split("/")
    rank = ALL_LABEL_NAMES.index(label) if label in ALL_LABEL_NAMES else len(ALL_LABEL_NAMES)
    return rank, -float(band.split("-")[0])


def _pick_uncertain(rows: list[dict], size: int, thresholds: dict[str, float]) -> list:
    def margin(row: dict) -> tuple[float, str]:
        return min((abs(float(row[f"p_{x}"]) - thresholds[x]), x) for x in MODEL_LABELS)

    ranked = sorted(rows, key=lambda r: (margin(r)[0], r["listing_id"]))[:size]
    return [(r, None, f"{margin(r)[1]} score {float(r['p_' + margin(r)[1]]):.3f} is "
                      f"{margin(r)[0]:.3f} from its threshold {thresholds[margin(r)[1]]:.3f}") for r in ranked]


def _pick_top(rows: list[dict], size: int) -> list:
    def key(row: dict):
        worst = next((x for x in ALL_LABEL_NAMES if x in row["labels"]), None)
        top_score = label_score(row, worst) if worst else max(float(row[f"p_{x}"]) for x in MODEL_LABELS)
        return (-severity(row["labels"]), -top_score, row["listing_id"])

    ranked = sorted(rows, key=key)[:size]
    return [(r, None, f"severity {severity(r['labels'])}" + (f" ({', '.join(r['labels'])})" if r["labels"] else ""))
            for r in ranked]


def _no_weights(strategy: str) -> dict:
    return {"kind": None, "strata": {}, "coverage": "none",
            "note": f"the {strategy} strategy draws no probability sample: its verdicts describe the reviewed "
                    "items only and give no unbiased production precision or recall"}


def _queue_id(header: dict, items: list[dict]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([header["run"], header["model_version"], header["strategy"], header["seed"],
                              header["size"]]).encode())
    for item in items:
        digest.update(item["listing_id"].encode("utf-8") + b"\0")
    return f"q-{header['strategy'][:5]}-{digest.hexdigest()[:12]}"


def write_queue(queue: Queue, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for line in [queue.header, *queue.items]:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path


def read_queue(path: str | Path) -> Queue:
    path = Path(path)
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    if not lines or lines[0].get("kind") != "queue" or lines[0].get("format") != FORMAT:
        raise ValueError(f"{path}: not a review queue (first line must be a {FORMAT} header)")
    items = lines[1:]
    if any(item.get("kind") != "item" for item in items):
        raise ValueError(f"{path}: every line after the header must be an item")
    if len(items) != lines[0]["items"]:
        raise ValueError(f"{path}: header promises {lines[0]['items']} items, file holds {len(items)} (truncated?)")
    return Queue(lines[0], items)


def make_queue(run_path: str | Path, size: int, strategy: str, seed: int = 13,
               model_dir: str | Path | None = None) -> Queue:
    """What `reportguard review queue` does, minus writing the file."""
    thresholds, source = read_thresholds(model_dir)
    return build_queue(read_run(run_path), size, strategy, seed, thresholds, source)
