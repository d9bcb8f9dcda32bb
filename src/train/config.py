"""Experiment configs: one YAML file per experiment in configs/, with `key.sub=value` overrides.

>>> apply_overrides({"training": {"epochs": 4}}, ["training.epochs=1", "model.max_length=64"])
{'training': {'epochs': 1}, 'model': {'max_length': 64}}
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from reportguard.core.columns import REPO_ROOT

DEFAULTS: dict = {
    "name": "listings",
    "backbone": {"path": None, "provision": None, "tiny": None},
    "data": {"dir": "data/labelled", "extra_train": [], "background_dir": "data/background", "real_dir": "data/real",
             "probes_dir": "data/probes", "external_dir": "data/external", "background_max_train": None},
    "model": {"max_length": 128, "head_share": 0.75, "freeze_word_embeddings": False},
    "training": {"epochs": 4, "batch_size": 16, "eval_batch_size": 64, "learning_rate": 5e-5,
                 "weight_decay": 0.01, "warmup": 0.1, "early_stopping_patience": 2, "seed": 42,
                 "augment_probability": 0.3, "pos_weight_power": 0.5, "max_steps": -1, "threads": None},
    "thresholds": {"strategy": "max_f1", "target_precision": 0.9, "block_precision": 0.95, "block_prevalence": None,
                   "max_ordinary_rate": None},
    "export": {"quantize": True, "optimize": True, "max_f1_drop": 0.005, "min_agreement": 0.995},
    "mlflow": {"experiment": "reportguard", "registered_model": "reportguard-listings"},
    "output": {"models_dir": "models", "reports_dir": "reports", "promote": True, "evaluate": True},
}


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return config


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict:
    path = Path(path)
    if not path.exists() and (REPO_ROOT / "configs" / path).exists():
        path = REPO_ROOT / "configs" / path
    config = _merge(DEFAULTS, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    config = apply_overrides(config, overrides or [])
    config["config_file"] = str(path)
    return config


def resolve(path: str | None) -> Path | None:
    """Config paths are relative to the repo root, so configs work from any working directory."""
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p
