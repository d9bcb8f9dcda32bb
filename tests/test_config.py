"""The typed training config: unknown keys fail at once naming the closest valid key, values are
parsed by their field's type (in files and in --set), and every key the code reads exists."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reportguard.train.config import (ConfigError, TrainConfig, TrainingConfig, apply_overrides, load_config, reference,
                                      section)

ROOT = Path(__file__).resolve().parents[1]


def test_an_unknown_key_fails_naming_it_and_the_closest_valid_one():
    with pytest.raises(ConfigError, match=r"unknown key 'training.epcohs'; did you mean 'training.epochs'\?"):
        load_config("configs/e5_small.yaml", ["training.epcohs=1"])
    with pytest.raises(ConfigError, match=r"'thresholds.max_ordinary_rate.report_sal'; did you mean 'thresholds.max_ordinary_rate.report_sale'"):
        load_config("configs/e5_small.yaml", ["thresholds.max_ordinary_rate.report_sal=0.1"])
    with pytest.raises(ConfigError, match=r"unknown key 'traning'; did you mean 'training'"):
        TrainConfig.from_dict({"traning": {"epochs": 1}}, where="x.yaml")


def test_an_unknown_key_in_a_file_fails_naming_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nexport:\n  min_agreemnt: 0.9\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: unknown key 'export.min_agreemnt'; did you mean 'export.min_agreement'"):
        load_config(path)


def test_values_are_parsed_by_the_fields_type(tmp_path):
    config = load_config("configs/e5_small.yaml", [
        "training.learning_rate=5e-5", "training.epochs=2", "export.quantize=false", "backbone.path=null",
        "model.max_length=auto", "data.extra_train=[a.jsonl, b.jsonl]", "thresholds.max_ordinary_rate.false_ad=0.01",
        "name=2026"])
    assert config.training.learning_rate == 5e-05 and isinstance(config.training.learning_rate, float)
    assert config.training.epochs == 2 and config.export.quantize is False and config.backbone.path is None
    assert config.model.max_length == "auto" and config.data.extra_train == ["a.jsonl", "b.jsonl"]
    assert config.thresholds.max_ordinary_rate == {"report_sale": 0.002, "false_ad": 0.01, "testing_service": 0.005}
    assert config.name == "2026"
    # YAML 1.1 reads 5e-5 in a file as a string; the field's type makes it a float there too
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  learning_rate: 5e-5\n  threads: 2\n", encoding="utf-8")
    assert load_config(path).training.learning_rate == 5e-05


@pytest.mark.parametrize("override, message", [
    ("training.learning_rate=fast", "training.learning_rate = 'fast' is not a number"),
    ("training.epochs=1.5", "training.epochs = '1.5' is not an integer"),
    ("export.quantize=maybe", "export.quantize = 'maybe' is not true or false"),
    ("model.max_length=big", "model.max_length = 'big' is not an integer or auto"),
    ("training.epochs.x=1", "training.epochs has no sub-keys"),
    ("no_equals_sign", "must look like key.sub=value"),
])
def test_a_value_its_field_cannot_take_fails_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("configs/e5_small.yaml", [override])


def test_every_config_file_loads_and_every_key_has_help():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        if path.name in ("columns.yaml", "takedown_reasons.yaml"):
            continue
        if path.name.startswith("distill_"):  # `reportguard distill`'s own format (train/distill/config.py)
            from reportguard.train.distill.config import DistillConfig, load_distill_config
            assert isinstance(load_distill_config(path), DistillConfig), path
            continue
        assert isinstance(load_config(path), TrainConfig), path
    assert all(help_text for *_, help_text in reference())


def test_the_keys_the_code_reads_are_config_keys():
    """Every config["section"]["key"] / .get("key") in src/train names a real key (the old DEFAULTS
    left out backbone.full_path, data.external_dir and mlflow.disabled)."""
    keys = {k for k, *_ in reference()}
    assert {"backbone.full_path", "data.external_dir", "mlflow.disabled", "model.long_text", "model.stride",
            "thresholds.block_prevalence", "thresholds.max_ordinary_rate", "output.evaluate"} <= keys
    pattern = re.compile(r'config\["(\w+)"\](?:\["(\w+)"\]|\.get\("(\w+)"|\.(\w+)\b)?')
    sections = {k.split(".")[0] for k in keys}
    for path in sorted((ROOT / "src" / "train").rglob("*.py")):
        for m in pattern.finditer(path.read_text(encoding="utf-8")):
            top, sub = m.group(1), m.group(2) or m.group(3) or m.group(4)
            if top not in sections:
                continue  # another dict called config (a tokenizer's, a checkpoint's)
            if sub and sub not in ("get", "items", "keys"):
                assert f"{top}.{sub}" in keys, f"{path.name}: {m.group(0)}"


def test_a_config_reads_as_a_mapping_and_a_step_takes_its_section():
    config = load_config("configs/tiny.yaml", ["mlflow.disabled=true"])
    assert config["training"]["max_steps"] == 12 and config["model"].get("long_text") == "windows"
    assert dict(config["output"])["evaluate"] is False and config["mlflow"].get("disabled") is True
    assert section(config, "training") is config.training and section(config.training, "training") is config.training
    assert isinstance(config.training, TrainingConfig)
    plain = config.to_dict()
    assert json.loads(json.dumps(plain)) == plain and plain["training"]["max_steps"] == 12
    assert apply_overrides({"training": {"epochs": 4}}, ["training.epochs=1"]) == {"training": {"epochs": 1}}


def test_print_config_shows_the_resolved_config_and_trains_nothing(tmp_path):
    script = Path(sys.executable).with_name("reportguard")
    res = subprocess.run([str(script), "train", "--config", "configs/e5_small.yaml", "--set", "training.learning_rate=5e-5",
                          "--set", f"output.models_dir={tmp_path}", "--print-config"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    printed = json.loads(res.stdout)
    assert '"learning_rate": 5e-05' in res.stdout and printed["training"]["learning_rate"] == 5e-05
    assert printed["model"]["long_text"] == "windows" and printed["config_file"].endswith("e5_small.yaml")
    assert list(tmp_path.iterdir()) == []
    res = subprocess.run([str(script), "train", "--set", "training.epcohs=1"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "training.epcohs" in res.stderr and "training.epochs" in res.stderr
