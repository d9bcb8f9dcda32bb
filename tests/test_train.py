"""Training side: config overrides, augmentation, smoke train -> export -> load, ONNX parity
(fp32 and int8 against PyTorch), calibration, continued pretraining — all on tiny models."""
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from reportguard.core.encoding import encode_texts, head_tail, spec_for
from reportguard.core.normalize import listing_text
from reportguard.train.augment import obfuscate
from reportguard.train.calibrate import calibrate, fit_temperature, sigmoid
from reportguard.train.config import apply_overrides, load_config
from reportguard.train.export import export_onnx, fuse, onnx_logits, quantize
from reportguard.train.model import build_char_tokenizer, tiny_model

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [listing_text(t) for t in ["代办质检报告 当天出", "纯棉T恤 附检测报告", "CMA资质 寄样检测 7个工作日", "儿童玩具 GB6675",
                                    "不送样 包过 全额退款", "招聘化验员 五险一金"]]


def test_config_overrides_and_defaults():
    config = load_config("configs/e5_small.yaml", ["training.epochs=1", "model.max_length=64"])
    assert config["training"]["epochs"] == 1 and config["model"]["max_length"] == 64
    assert config["training"]["weight_decay"] == 0.01  # from the file
    assert config["export"]["min_agreement"] == 0.995
    with pytest.raises(ValueError):
        apply_overrides(config, ["no_equals_sign"])


def test_obfuscation_is_seeded_and_survives_normalisation_partly():
    a = [obfuscate("专业代办质检报告，不送样当天出", random.Random(5)) for _ in range(3)]
    b = [obfuscate("专业代办质检报告，不送样当天出", random.Random(5)) for _ in range(3)]
    assert a == b
    outputs = {obfuscate("专业代办质检报告，不送样当天出", random.Random(k)) for k in range(30)}
    assert len(outputs) > 10


def test_tokenizer_has_no_unk_on_ordinary_chinese():
    tok = build_char_tokenizer(TEXTS)
    unk = tok.token_to_id("[UNK]")
    assert all(unk not in e.ids for e in tok.encode_batch(TEXTS))


def test_long_listings_are_encoded_head_and_tail_and_flagged():
    tok = build_char_tokenizer(TEXTS)
    spec = spec_for(tok, 8, head_share=0.5)
    ids, truncated = encode_texts(tok, ["代办质检报告当天出不送样包过", "代办"], spec)
    assert truncated == [True, False]
    assert len(ids[0]) == 8 and ids[0][0] == spec.cls_id and ids[0][-1] == spec.sep_id
    assert head_tail(list(range(10)), 4, 0.5) == [0, 1, 8, 9]


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 4000)
    labels = (rng.random(4000) < sigmoid(true_logits)).astype(float)
    t = fit_temperature(true_logits * 3.0, labels)  # overconfident by 3x
    assert 2.5 < t < 3.5


def test_calibration_gives_thresholds_and_block_thresholds():
    rng = np.random.default_rng(1)
    labels = (rng.random((500, 3)) < 0.4).astype(float)
    logits = (labels * 2 - 1) * 3 + rng.normal(0, 1.5, (500, 3))
    cal = calibrate(logits, labels, load_config("configs/e5_small.yaml"))
    assert set(cal["thresholds"]) == {"report_sale", "false_ad", "testing_service"}
    assert set(cal["decision"]["block"]) == {"report_sale", "false_ad"}
    assert all(cal["decision"]["block"][k] >= cal["thresholds"][k] for k in cal["decision"]["block"])


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    tok = build_char_tokenizer(TEXTS)
    torch.manual_seed(0)
    model = tiny_model(tok.get_vocab_size(), {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                                              "intermediate_size": 64})
    spec = spec_for(tok, 32)
    out = tmp_path_factory.mktemp("onnx")
    raw = export_onnx(model, out / "raw.onnx", spec.pad_id)
    fused = fuse(raw, out / "fp32.onnx", 2, 32)
    int8 = quantize(fused, out / "int8.onnx", "qint8_per_channel")
    ids = encode_texts(tok, TEXTS * 4, spec)[0]
    return model, spec, ids, raw, fused, int8


def _torch_logits(model, ids, pad_id):
    from reportguard.core.encoding import pad_batch
    model.eval()
    input_ids, mask = pad_batch(ids, pad_id)
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask)).logits.numpy()


def test_onnx_fp32_matches_pytorch_before_and_after_fusion(tiny_onnx):
    model, spec, ids, raw, fused, _ = tiny_onnx
    reference = _torch_logits(model, ids, spec.pad_id)
    for path in (raw, fused):
        logits, _ = onnx_logits(path, ids, spec.pad_id, threads=1, batch_size=5)  # batches differ from torch's
        assert np.abs(logits - reference).max() < 1e-4, path.name


def test_onnx_int8_stays_close_to_pytorch(tiny_onnx):
    model, spec, ids, _, _, int8 = tiny_onnx
    reference = sigmoid(_torch_logits(model, ids, spec.pad_id))
    probs = sigmoid(onnx_logits(int8, ids, spec.pad_id, threads=1)[0])
    assert np.abs(probs - reference).max() < 0.05


def test_smoke_train_export_load(tiny_bundle):
    """configs/tiny.yaml end to end (the session fixture trains it): bundle files, metrics, scorer load."""
    from reportguard.serve.bundle import load_bundle
    for name in ("model.onnx", "tokenizer.json", "bundle.json", "metrics.json", "MODEL_CARD.md", "hf/config.json",
                 "config.resolved.yaml"):
        assert (tiny_bundle / name).exists(), name
    assert list((tiny_bundle / "hf").glob("*.safetensors"))
    meta = json.loads((tiny_bundle / "bundle.json").read_text())
    assert meta["labels"] == ["report_sale", "false_ad", "testing_service"]
    from reportguard.train.export import INT8_FLAVOURS
    graph, _, fallback = meta["precision"].partition("+")
    assert graph in ("fp32", *INT8_FLAVOURS) and fallback in ("", "fp32_fallback")
    assert ("fallback" in meta) == bool(fallback)
    assert (tiny_bundle.parent / "current").resolve() == tiny_bundle.resolve()
    bundle = load_bundle(tiny_bundle, threads=1)
    probs, _ = bundle.predict_proba(TEXTS)
    assert probs.shape == (len(TEXTS), 3) and ((probs >= 0) & (probs <= 1)).all()
    report = tiny_bundle.parents[1] / "reports" / "train" / meta["model_version"] / "report.md"
    assert "## Test split" in report.read_text(encoding="utf-8")


def test_mlflow_logs_and_registers(tmp_path, monkeypatch):
    """A tiny run against a fresh SQLite store: params, metrics, artifacts and a registered version."""
    import mlflow
    from reportguard.train.pipeline import train
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    config = load_config(ROOT / "configs" / "tiny.yaml", [f"output.models_dir={tmp_path / 'models'}",
                                                          f"output.reports_dir={tmp_path / 'reports'}",
                                                          "export.quantize=false", "mlflow.registered_model=rg-test"])
    train(config)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["reportguard-smoke"])
    assert len(runs) == 1
    run = runs.iloc[0]
    assert "metrics.test_macro_f1" in run and run["params.training.max_steps"] == "12"
    assert run["tags.data_sha256"]
    versions = mlflow.MlflowClient().search_model_versions("name='rg-test'")
    assert len(versions) == 1
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"])}
    assert {"bundle", "report", "config.resolved.json"} <= artifacts


def tiny_pretraining_setup(tmp_path, model_class: str):
    """A 2-layer backbone saved as `model_class` (with or without a masked-LM head), its char
    tokenizer, and a small text corpus: (backbone dir, corpus file)."""
    import transformers
    tok = build_char_tokenizer(TEXTS)
    backbone = tmp_path / f"tiny-{model_class}"
    getattr(transformers, model_class)(transformers.BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                                                               num_attention_heads=2, intermediate_size=64)).save_pretrained(str(backbone))
    tok.save(str(backbone / "tokenizer.json"))
    corpus = tmp_path / "text.txt"
    corpus.write_text("\n".join(TEXTS * 20), encoding="utf-8")
    return backbone, corpus


def test_continued_pretraining_on_a_tiny_backbone(tmp_path):
    from reportguard.train.pretrain import pretrain
    backbone, corpus = tiny_pretraining_setup(tmp_path, "BertForMaskedLM")
    summary = pretrain(backbone, [str(corpus)], [str(corpus)], tmp_path / "out", max_steps=30, batch_size=8,
                       learning_rate=1e-3, max_length=32, threads=1)
    assert summary["after"]["loss"] < summary["before"]["loss"]
    assert (tmp_path / "out" / "tokenizer.json").exists()
    assert json.loads((tmp_path / "out" / "provenance.json").read_text())["continued_pretraining"]["max_steps"] == 30


def test_pretraining_warms_up_a_missing_head_first(tmp_path):
    """A backbone without a masked-LM head (like multilingual-e5) gets its new head trained alone
    first; one with a head goes straight to full training."""
    from reportguard.train.pretrain import pretrain
    backbone, corpus = tiny_pretraining_setup(tmp_path, "BertModel")
    summary = pretrain(backbone, [str(corpus)], [str(corpus)], tmp_path / "out", max_steps=20, batch_size=8,
                       learning_rate=1e-3, max_length=32, threads=1)
    assert summary["new_head"] and summary["head_warmup_steps"] == 5
    assert summary["after_head_warmup"]["loss"] < summary["before"]["loss"]
    assert summary["after"]["loss"] < summary["before"]["loss"]
    again = pretrain(tmp_path / "out", [str(corpus)], [str(corpus)], tmp_path / "out2", max_steps=4, batch_size=8,
                     learning_rate=1e-3, max_length=32, threads=1)
    assert not again["new_head"] and again["head_warmup_steps"] == 0 and again["after_head_warmup"] is None
