"""Shared fixtures: the real configs, shrunk (STYLE.md: tiny models built from a config)."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The repo is the project home of every test (core/paths.py), also for tests that chdir into
# tmp_path and for the `reportguard` subprocesses they start; tests of the home itself override it.
os.environ["REPORTGUARD_HOME"] = str(ROOT)
os.environ.pop("REPORTGUARD_MODEL", None)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A bundle trained end to end from configs/tiny.yaml (seconds), outside the repo's models/."""
    from reportguard.train.config import load_config
    from reportguard.train.pipeline import train

    out = tmp_path_factory.mktemp("tiny")
    config = load_config(ROOT / "configs" / "tiny.yaml", [
        f"output.models_dir={out / 'models'}", f"output.reports_dir={out / 'reports'}", "mlflow.disabled=true",
    ])
    return train(config)
