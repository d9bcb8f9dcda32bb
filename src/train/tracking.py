"""MLflow tracking and the model registry.

Tracking: a local SQLite store in the repo by default (no server), or whatever
MLFLOW_TRACKING_URI (or `mlflow.tracking_uri` in the config) points at; a new experiment keeps
its artifacts in `mlflow.artifact_location` if set, else beside a SQLite database
(<repo>/mlartifacts for the default). Every run logs params, the resolved config, the data hash,
metrics, plots and the bundle's files (`bundle/`).

Registry: every trained bundle is logged as a pyfunc model (serve/pyfunc.py: the scorer's code
over the bundle, with a signature and an input example) and registered as a new version of
`mlflow.registered_model` (reportguard-listings). Aliases say what each version is for:

- `champion`: the bundle that ships (a run with `output.promote: true`, the default);
- `challenger`: the latest experiment (`output.promote: false`): registered, never shipped.

The alias is the source of truth; `models/current` follows `champion`: after a promotion (or
`python -m reportguard.train.tracking follow`, e.g. after moving the alias in the MLflow UI) it
points at the champion's bundle, fetched from the registry when it is not on disk, and
`models/champion.json` records which registry version that is.

    mlflow.pyfunc.load_model("models:/reportguard-listings@champion").predict(df)
    python -m reportguard.train.tracking promote 7     # version 7 becomes champion; models/current follows
    python -m reportguard.train.tracking follow        # models/current -> whatever champion is now

Open the UI with `make mlflow-ui` (mlflow ui --backend-store-uri sqlite:///mlflow.db).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from reportguard.core import paths

CHAMPION, CHALLENGER = "champion", "challenger"
#: models/<this file>: which registry version models/current is
POINTER = "champion.json"


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


def default_uri() -> str:
    """The default store: mlflow.db in the project home (core/paths.py); its artifacts go beside it, in mlartifacts/."""
    return f"sqlite:///{paths.under_home('mlflow.db')}"


def tracking_uri(mlflow_config: dict) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow_config.get("tracking_uri") or default_uri()


def artifact_location(uri: str, mlflow_config: dict) -> str | None:
    """Where a new experiment keeps its artifacts: `mlflow.artifact_location` if set; beside the
    database for a SQLite store (the default store: <repo>/mlartifacts), not in ./mlruns of
    whatever folder training started from; else the tracking server's default."""
    if mlflow_config.get("artifact_location"):
        return str(mlflow_config["artifact_location"])
    if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    return None


def connect(mlflow_config: dict):
    """The mlflow module, pointed at the configured tracking store (the registry is the same store)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(mlflow_config))
    return mlflow


@contextmanager
def mlflow_run(config: dict, run_name: str):
    """Start a run in the configured experiment; yields the mlflow module (or None if disabled)."""
    if config["mlflow"].get("disabled"):
        yield None
        return
    mlflow = connect(config["mlflow"])
    name = config["mlflow"]["experiment"]
    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=artifact_location(tracking_uri(config["mlflow"]), config["mlflow"]))
    mlflow.set_experiment(name)
    with mlflow.start_run(run_name=run_name):
        yield mlflow


# --- what a training run logs (pipeline.train calls these; `mlflow` is None when tracking is off) ---

def log_run_start(mlflow, resolved: dict, data_sha256: str, model_version: str, token_lengths: dict) -> None:
    """Params (the resolved config, flattened), the resolved config itself, the data hash and the
    measured token lengths."""
    if mlflow is None:
        return
    mlflow.log_params(flatten(resolved))
    mlflow.log_dict(resolved, "config.resolved.json")
    mlflow.set_tags({"data_sha256": data_sha256, "model_version": model_version})
    mlflow.log_metrics({f"token_length_{k}": float(v) for k, v in token_lengths.items()})


def epoch_logger(mlflow):
    """A `log(metrics, step)` callback for fine-tuning's per-evaluation metrics (eval_* logged as
    val_*), or None when tracking is off."""
    if mlflow is None:
        return None
    return lambda m, step: mlflow.log_metrics({k.replace("eval_", "val_"): float(v) for k, v in m.items()}, step=step)


def log_results(mlflow, summary: dict, report_dir: Path) -> None:
    """The shipped model's test (and external) results, the training time and the report folder."""
    if mlflow is None:
        return
    from reportguard.core.labels import MODEL_LABELS
    test, external = summary["test"], summary.get("external")
    mlflow.log_metrics({"test_macro_f1": test["macro_f1"], "val_macro_f1_final": summary["validation"]["macro_f1"],
                        **{f"test_f1_{x}": test[x]["f1"] for x in MODEL_LABELS},
                        **{f"test_pr_auc_{x}": test[x].get("pr_auc", 0.0) for x in MODEL_LABELS},
                        "tfidf_test_macro_f1": summary["baselines"]["tfidf"]["test"]["macro_f1"],
                        "train_seconds": summary["train_seconds"],
                        **({"external_macro_f1": external["model"]["macro_f1"],
                            "external_tfidf_macro_f1": external["tfidf"]["macro_f1"]} if external else {})})
    mlflow.log_artifacts(str(report_dir), artifact_path="report")


def log_bundle(mlflow, bundle: Path, config: dict) -> str:
    """In the active run: log the bundle's files (`bundle/`), log it as a pyfunc model registered
    under `mlflow.registered_model`, and give the new version its alias: `champion` when the run
    promotes (`output.promote`, default true; models/current then follows it), else `challenger`.
    Returns "<version> (@<alias>)"."""
    from reportguard.serve.bundle import load_bundle

    from .config import resolve

    name = config["mlflow"]["registered_model"]
    promote = config["output"].get("promote", True)
    loaded = load_bundle(bundle, threads=1)
    mlflow.log_artifacts(str(bundle), artifact_path="bundle")
    info = log_pyfunc(mlflow, bundle, registered_model_name=name)
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    tags = {"bundle": bundle.name, "model_version": loaded.model_version, "content_sha256": loaded.content_sha256,
            "precision": loaded.meta["precision"], "normalizer_version": loaded.meta["normalizer_version"],
            "promoted": str(bool(promote)).lower()}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    alias = CHAMPION if promote else CHALLENGER
    client.set_registered_model_alias(name, alias, version)
    if promote:
        follow_champion(client, name, resolve(config["output"]["models_dir"]))
    return f"{version} (@{alias})"


def log_pyfunc(mlflow, bundle: Path, registered_model_name: str | None = None):
    """Log `bundle` as a pyfunc model (serve.pyfunc.BundleModel) with its signature and input
    example; its artifact holds only the files the scorer reads. Returns mlflow's ModelInfo."""
    from importlib.metadata import PackageNotFoundError, version

    from reportguard.serve import pyfunc

    with tempfile.TemporaryDirectory(prefix="rg-pyfunc-") as tmp:
        scorer = Path(tmp) / "bundle"
        scorer.mkdir()
        for name in pyfunc.scorer_files(bundle):
            (scorer / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bundle / name, scorer / name)
        try:
            requirements = [f"reportguard[serve]=={version('reportguard')}", f"pandas=={version('pandas')}"]
        except PackageNotFoundError:
            requirements = ["reportguard[serve]", "pandas"]
        return mlflow.pyfunc.log_model(
            name="model", python_model=pyfunc.BundleModel(), artifacts={"bundle": str(scorer)},
            signature=pyfunc.signature(), input_example=pyfunc.input_example(), pip_requirements=requirements,
            registered_model_name=registered_model_name,
            metadata={"bundle": bundle.name, "reportguard_bundle_format": json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))["format"]})


def follow_champion(client, name: str, models_dir: Path) -> Path:
    """Point models/current at the bundle of `name`@champion, fetching it from the registry (the
    version's run artifacts `bundle/`) when models/ does not hold it; write models/champion.json.
    Returns the bundle's path."""
    from reportguard.serve.bundle import load_bundle

    from .export import point_current

    mv = client.get_model_version_by_alias(name, CHAMPION)
    bundle_name, sealed = mv.tags.get("bundle"), mv.tags.get("content_sha256")
    if not bundle_name or Path(bundle_name).name != bundle_name or bundle_name.startswith("."):
        raise RuntimeError(f"{name} version {mv.version} (@{CHAMPION}) has no usable `bundle` tag ({bundle_name!r}); "
                           f"it was not registered by reportguard train")
    models_dir.mkdir(parents=True, exist_ok=True)
    local = models_dir / bundle_name
    if not (local / "bundle.json").exists():
        _fetch_bundle(client, mv, local)
    found = load_bundle(local, threads=1).content_sha256
    if sealed and found != sealed:
        raise RuntimeError(f"{local}: content_sha256 {found[:12]} differs from {name} version {mv.version}'s {sealed[:12]}; "
                           f"refusing to point models/current at it (move it away and run `python -m reportguard.train.tracking follow`)")
    point_current(models_dir, local)
    pointer = {"registered_model": name, "alias": CHAMPION, "version": str(mv.version), "model_uri": f"models:/{name}@{CHAMPION}",
               "bundle": bundle_name, "content_sha256": found, "run_id": mv.run_id,
               "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = models_dir / f".{POINTER}.tmp"
    tmp.write_text(json.dumps(pointer, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(models_dir / POINTER)
    return local


def _fetch_bundle(client, mv, local: Path) -> None:
    """The full bundle of a registered version, from its run's `bundle/` artifacts, renamed into place."""
    import mlflow

    if not mv.run_id:
        raise RuntimeError(f"{mv.name} version {mv.version} has no run, so no bundle/ artifacts to fetch")
    tmp = local.with_name(f".{local.name}.download")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        fetched = Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="bundle", dst_path=str(tmp),
                                                           tracking_uri=mlflow.get_tracking_uri()))
        fetched.rename(local)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def promote(client, name: str, version: str, models_dir: Path) -> Path:
    """Make `version` the champion (the previous champion keeps its version, losing the alias) and
    point models/current at its bundle."""
    client.set_registered_model_alias(name, CHAMPION, str(version))
    client.set_model_version_tag(name, str(version), "promoted", "true")
    return follow_champion(client, name, models_dir)


def main(argv: list[str] | None = None) -> int:
    """`python -m reportguard.train.tracking follow|promote VERSION [--config FILE]`."""
    import argparse

    from .config import load_config, resolve

    parser = argparse.ArgumentParser(prog="python -m reportguard.train.tracking",
                                     description="Registry aliases: models/current follows the champion.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("follow", help="point models/current at the champion's bundle (fetched if missing)")
    p = sub.add_parser("promote", help="make a registered version the champion; models/current follows")
    p.add_argument("version")
    for command in sub.choices.values():
        command.add_argument("--config", default="configs/e5_small.yaml", help="its mlflow and output.models_dir settings")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    mlflow = connect(config["mlflow"])
    client, name, models_dir = mlflow.MlflowClient(), config["mlflow"]["registered_model"], resolve(config["output"]["models_dir"])
    try:
        if args.command == "promote":
            bundle = promote(client, name, args.version, models_dir)
        else:
            bundle = follow_champion(client, name, models_dir)
    except Exception as exc:  # MlflowException (no such alias or version), RuntimeError, BundleError
        print(f"error: {' '.join(str(exc).split())[:500]}", file=sys.stderr)
        return 1
    print(f"{models_dir / 'current'} -> {bundle.name} ({name}@{CHAMPION})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
