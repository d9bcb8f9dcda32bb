"""MLflow tracking: a local SQLite store in the repo by default (no server), or whatever
MLFLOW_TRACKING_URI points at. Every run logs params, the resolved config, the data hash,
metrics, plots and the bundle, and registers the ONNX model in the Model Registry.

Open the UI with `make mlflow-ui` (mlflow ui --backend-store-uri sqlite:///mlflow.db).
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

from reportguard.core.columns import REPO_ROOT

DEFAULT_URI = f"sqlite:///{REPO_ROOT / 'mlflow.db'}"
ARTIFACTS = REPO_ROOT / "mlartifacts"


def data_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:500]
    return out


@contextmanager
def mlflow_run(config: dict, run_name: str):
    """Start a run in the configured experiment; yields the mlflow module (or None if disabled)."""
    if config["mlflow"].get("disabled"):
        yield None
        return
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI") or config["mlflow"].get("tracking_uri") or DEFAULT_URI
    mlflow.set_tracking_uri(uri)
    name = config["mlflow"]["experiment"]
    if mlflow.get_experiment_by_name(name) is None:
        # With the default local store, artifacts live beside it in the repo, not in ./mlruns of
        # whatever directory training was started from.
        location = ARTIFACTS.as_uri() if uri == DEFAULT_URI else None
        mlflow.create_experiment(name, artifact_location=location)
    mlflow.set_experiment(name)
    with mlflow.start_run(run_name=run_name):
        yield mlflow


def log_bundle(mlflow, bundle: Path, config: dict) -> str | None:
    """Log the bundle's files and register its ONNX model; returns the registered version."""
    import onnx

    mlflow.log_artifacts(str(bundle), artifact_path="bundle")
    info = mlflow.onnx.log_model(onnx.load(str(bundle / "model.onnx")), name="model",
                                 registered_model_name=config["mlflow"]["registered_model"],
                                 save_as_external_data=False)
    return str(getattr(info, "registered_model_version", None) or "")
