"""The MLflow registry: a pyfunc model that scores DataFrames with the scorer's code, and aliases
(champion / challenger) that models/current follows. A tiny bundle, a SQLite store in tmp_path."""
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NAME = "reportguard-listings"


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """(config, config file, models dir) for a fresh SQLite store and models/ under tmp_path."""
    from reportguard.train.config import load_config
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may land in ./mlruns of the working folder either
    settings = {"mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "registry-test",
                           "registered_model": NAME},
                "output": {"models_dir": str(tmp_path / "models")}}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return load_config(path), path, tmp_path / "models"


def log(config: dict, bundle: Path, promote: bool = True) -> str:
    from reportguard.train.tracking import log_bundle, mlflow_run
    config = dict(config, output=dict(config["output"], promote=promote))
    with mlflow_run(config, bundle.name) as mlflow:
        return log_bundle(mlflow, bundle, config)


def sample_records() -> list[dict]:
    rows = [json.loads(line) for line in (ROOT / "data" / "labelled" / "test.jsonl").read_text(encoding="utf-8").splitlines()[:24]]
    return [{"listing_id": r["listing_id"], "title": r["title"], "description": r["description"],
             "platform": r.get("platform") or "demo", "shop_name": f"shop-{k % 5}"} for k, r in enumerate(rows)]


def test_champion_pyfunc_scores_a_dataframe_like_the_batch_scorer(tiny_bundle, registry, tmp_path):
    import mlflow
    import pandas as pd

    from reportguard.serve.score import ScoreOptions, score
    config, _, models_dir = registry
    assert log(config, tiny_bundle) == "1 (@champion)"

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    records = sample_records()
    frame = pd.DataFrame(records + [{"listing_id": "empty", "title": "", "description": ""}])
    scored = model.predict(frame)

    source = tmp_path / "input.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    score([str(source)], tmp_path / "batch.parquet", ScoreOptions(model=str(tiny_bundle), threads=1, progress=False))
    batch = pd.read_parquet(tmp_path / "batch.parquet")
    assert len(scored) == len(records) + 1 and list(scored["listing_id"][:-1]) == list(batch["listing_id"])
    for column in ("p_report_sale", "p_false_ad", "p_testing_service"):
        assert (scored[column][:-1] - batch[column]).abs().max() <= 1e-6, column
    for k in range(len(records)):
        assert list(scored["labels"][k]) == list(batch["labels"][k])
        assert (scored["decision"][k], scored["evidence"][k]) == (batch["decision"][k], batch["evidence"][k])
        assert pd.isna(scored["error"][k])
    assert set(scored["model_version"]) == {json.loads((tiny_bundle / "bundle.json").read_text())["model_version"]}
    assert scored["error"].iloc[-1] == "no text" and math.isnan(scored["p_report_sale"].iloc[-1])

    # Signature, parameters and input example travel with the model.
    assert model.metadata.get_input_schema().required_input_names() == ["listing_id", "title"]
    assert "p_report_sale" in model.metadata.get_output_schema().input_names()
    assert model.metadata.get_params_schema().params[0].name == "attribution"
    assert model.metadata.saved_input_example_info
    quiet = model.predict(frame.iloc[:3], params={"attribution": "none"})
    assert list(quiet["p_false_ad"]) == list(scored["p_false_ad"][:3])

    # models/current follows the champion: its bundle was fetched from the registry into models/.
    assert (models_dir / "current").resolve() == (models_dir / tiny_bundle.name).resolve()
    assert (models_dir / "current" / "bundle.json").read_bytes() == (tiny_bundle / "bundle.json").read_bytes()
    pointer = json.loads((models_dir / "champion.json").read_text(encoding="utf-8"))
    assert (pointer["version"], pointer["bundle"], pointer["model_uri"]) == ("1", tiny_bundle.name, f"models:/{NAME}@champion")


def test_experiments_are_challengers_and_current_follows_the_champion(tiny_bundle, registry, tmp_path, capsys):
    import mlflow

    from reportguard.train.tracking import main
    config, config_file, models_dir = registry
    experiment = tmp_path / "elsewhere" / "experiment-1"
    shutil.copytree(tiny_bundle, experiment)
    # The champion's bundle is already in models/ (as after `make train`): it is used, not fetched again.
    shutil.copytree(tiny_bundle, models_dir / tiny_bundle.name)
    inode = os.stat(models_dir / tiny_bundle.name / "model.onnx").st_ino
    assert log(config, tiny_bundle) == "1 (@champion)"
    assert os.stat(models_dir / "current" / "model.onnx").st_ino == inode

    assert log(config, experiment, promote=False) == "2 (@challenger)"
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "2"
    assert client.get_model_version(NAME, "2").tags["promoted"] == "false"
    assert (models_dir / "current").resolve().name == tiny_bundle.name  # an experiment never moves models/current

    assert main(["promote", "2", "--config", str(config_file)]) == 0
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    assert (models_dir / "current").resolve() == (models_dir / "experiment-1").resolve()
    assert json.loads((models_dir / "champion.json").read_text(encoding="utf-8"))["version"] == "2"
    assert "experiment-1" in capsys.readouterr().out

    # Moving the alias elsewhere (the MLflow UI, another machine) and following it.
    client.set_registered_model_alias(NAME, "champion", "1")
    assert main(["follow", "--config", str(config_file)]) == 0
    assert (models_dir / "current").resolve().name == tiny_bundle.name
    assert main(["promote", "9", "--config", str(config_file)]) == 1
    assert "error:" in capsys.readouterr().err
