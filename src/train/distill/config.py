"""`reportguard distill`'s config: configs/distill_*.yaml, every key checked.

Sections: `teacher` (the bundle to distil), `train_config` (the training config whose `data`
section says which rows may train: the same rows the teacher trained on), `transfer` (size and
seed of the transfer set), `tier1` (train/distill/tier1.py's Tier1Config), `tier2` (the student
transformer: train/distill/tier2.py), `routing` (the margin fit and the gate), `mlflow` and
`output`. `--set section.key=value` overrides one key (the value parsed as YAML).

On a GPU machine the expensive steps are the teacher's labels and tier 2: raise
`transfer.size` (the teacher labels ~40 texts/s per 2 CPU cores, thousands per second on a GPU
through the same onnxruntime graph with the CUDA provider), `tier2.max_seconds`/`max_steps` and
`tier2.hidden_weight` (hidden-state distillation needs a teacher forward per step).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml

from reportguard.core import paths
from reportguard.core.errors import UsageError

from .tier1 import Tier1Config


@dataclass
class TransferConfig:
    size: int = 200_000  # texts, originals included
    seed: int = 0
    holdout: float = 0.05  # share kept out of the students' training, for the routing fit
    cache_dir: str = "models/.cache/distill"  # the teacher's labels, reused by a rerun


@dataclass
class Tier2Config:
    enabled: bool = True
    layers: list = field(default_factory=lambda: [2, 5, 8, 11])  # teacher layers kept (alternate, as DistilBERT/RBT3)
    train_texts: int = 45_000  # a sample of the transfer set (each text costs a training step on CPU)
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1.0e-4
    max_seconds: float = 1320.0  # time budget on 2 cores
    max_steps: int = 0  # 0: no limit but the budget
    gold_weight: float = 0.5
    hidden_weight: float = 0.0  # > 0: also match the teacher's hidden states (a teacher forward per step)
    threads: int = 2
    seed: int = 0
    #: a tiered bundle of the same teacher whose tier 2 is taken as it is, not trained again (e.g.
    #: to try another tier 1 or routing without the ~15 minutes tier 2 costs on 2 cores)
    reuse_from: str | None = None


@dataclass
class RoutingConfig:
    min_margin: float = 0.25  # calibrated-logit units: the floor of every tier's margin
    slack: float = 1.1  # margin = largest disagreement distance x slack
    max_f1_drop: float = 0.01  # the gate: route macro-F1 at most this below the teacher's, per set
    fit_on: str = "validation"  # or "validation+holdout": also the held-out transfer slice (wider margins)


@dataclass
class DistillMlflow:
    disabled: bool = False
    experiment: str = "reportguard-distill"
    tracking_uri: str | None = None
    artifact_location: str | None = None


@dataclass
class DistillOutput:
    models_dir: str = "models"
    reports_dir: str = "reports"
    point_current: bool = True  # models/current -> the tiered bundle (it ships teacher-only if the gate fails)


@dataclass
class DistillConfig:
    teacher: str = "models/current"
    train_config: str = "configs/e5_small.yaml"
    transfer: TransferConfig = field(default_factory=TransferConfig)
    tier1: Tier1Config = field(default_factory=Tier1Config)
    tier2: Tier2Config = field(default_factory=Tier2Config)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    mlflow: DistillMlflow = field(default_factory=DistillMlflow)
    output: DistillOutput = field(default_factory=DistillOutput)

    def to_dict(self) -> dict:
        return _plain(self)


def _plain(obj):
    if is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    return obj


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a mapping, found {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    values = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        values[name] = _build(type(default), value or {}, f"{where}.{name}") if is_dataclass(default) else value
    return cls(**values)


def load_distill_config(path: str | Path | None, overrides: list[str] | None = None) -> DistillConfig:
    """The config in `path` (else configs/<path> under the project home; None: the defaults), with overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.exists() and (paths.configs_dir() / path).exists():
            path = paths.configs_dir() / path
        if not path.exists():
            raise UsageError(f"{path}: no such distillation config")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for item in overrides or []:
        if "=" not in item:
            raise UsageError(f"--set {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return _build(DistillConfig, data, str(path or "distill config"))
