"""Tier 2 (train/distill/tier2.py): a student cut from the teacher's own layers, distilled to its
calibrated logits, exported to an ONNX graph the scorer can run like the teacher's model.onnx."""
import json
from pathlib import Path

import numpy as np
import pytest

from reportguard.core.encoding import encode, load_tokenizer
from reportguard.core.normalize import listing_text

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tiny_bundle):
    """The tiny bundle, its tokenizer, 64 training texts and the teacher's calibrated logits for them."""
    from reportguard.serve.bundle import load_bundle

    bundle = load_bundle(tiny_bundle, threads=1)
    rows = [json.loads(line) for line in (ROOT / "data" / "labelled" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:64]]
    texts = [listing_text(r["title"], r["description"]) for r in rows]
    gold = [r["labels"] if i % 2 else None for i, r in enumerate(rows)]  # half without gold
    soft, _ = bundle.calibrated_logits(texts)
    return bundle, load_tokenizer(str(tiny_bundle / "tokenizer.json")), texts, gold, soft


def student_logits(student, ids, pad_id):
    from reportguard.train.distill.tier2 import torch_logits
    return torch_logits(student, ids, pad_id)


def test_build_student_keeps_the_chosen_layers_and_speaks_calibrated_logits(setup, tiny_bundle):
    import torch

    from reportguard.train.distill.tier2 import build_student, load_teacher
    bundle, tok, texts, _, _ = setup
    teacher = load_teacher(tiny_bundle / "hf").eval()
    student = build_student(tiny_bundle / "hf", [1], bundle.temperature)
    assert student.config.num_hidden_layers == 1 == len(student.bert.encoder.layer)
    assert student.config.distilled_from_layers == [1]
    for (name, p), (_, q) in zip(student.bert.encoder.layer[0].named_parameters(), teacher.bert.encoder.layer[1].named_parameters()):
        assert torch.equal(p, q), name
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert torch.equal(student.bert.pooler.dense.weight, teacher.bert.pooler.dense.weight)
    t = torch.from_numpy(bundle.temperature)
    assert torch.allclose(student.classifier.weight, teacher.classifier.weight / t[:, None])
    ids = encode(tok, texts[:8], bundle.spec).ids
    assert student_logits(student, ids, bundle.spec.pad_id).shape == (len(ids), 3)
    # Every layer kept: the student is the teacher, in calibrated units (logit / T).
    whole = build_student(tiny_bundle / "hf", [0, 1], bundle.temperature)
    expected = student_logits(teacher, ids, bundle.spec.pad_id) / bundle.temperature
    np.testing.assert_allclose(student_logits(whole, ids, bundle.spec.pad_id), expected, atol=1e-5)
    with pytest.raises(ValueError):
        build_student(tiny_bundle / "hf", [1, 0])


def test_a_few_distillation_steps_reduce_the_mse_to_the_teacher(setup, tiny_bundle):
    from reportguard.train.distill.tier2 import build_student, distil, first_windows, load_teacher
    bundle, tok, texts, gold, soft = setup
    student = build_student(tiny_bundle / "hf", [0], bundle.temperature)
    ids = first_windows(encode(tok, texts, bundle.spec))
    target = soft + 1.0  # away from where the cut student starts, so there is something to learn

    def mse():
        return float(((student_logits(student, ids, bundle.spec.pad_id) - target) ** 2).mean())
    before = mse()
    embeddings = student.get_input_embeddings().weight.detach().clone()
    cfg = {"layers": [0], "max_steps": 30, "epochs": 100, "batch_size": 16, "learning_rate": 3e-3, "gold_weight": 0.1,
           "threads": 1, "seed": 0, "log_every": 10}
    stats = distil(student, texts, target, gold, cfg, tokenizer=tok, spec=bundle.spec)
    assert stats["steps"] == 30 and stats["stopped_by"] == "steps" and stats["gold_rows"] == 32
    assert mse() < 0.5 * before
    assert (student.get_input_embeddings().weight == embeddings).all()  # frozen by default (freeze_embeddings)
    # The hidden-state term runs too (a teacher forward per batch).
    stats = distil(student, texts, target, None, {**cfg, "max_steps": 3, "hidden_weight": 1.0}, tokenizer=tok,
                   spec=bundle.spec, teacher=load_teacher(tiny_bundle / "hf"))
    assert "hidden" in stats["last"] and np.isfinite(stats["last"]["loss"])
    with pytest.raises(ValueError):
        distil(student, texts, target[:3], None, cfg, tokenizer=tok, spec=bundle.spec)


def test_the_exported_graph_runs_like_the_teachers_and_matches_torch(setup, tiny_bundle, tmp_path):
    import onnxruntime as ort

    from reportguard.core.encoding import pad_batch
    from reportguard.train.distill.tier2 import build_student, export_student
    bundle, tok, texts, _, _ = setup
    student = build_student(tiny_bundle / "hf", [1], bundle.temperature)
    ids = encode(tok, texts, bundle.spec).ids
    out = export_student(student, tmp_path / "tier2.onnx", bundle.spec.pad_id, ids, bundle.cuts(), flavours=())
    assert out["precision"] == "fp32" and out["layers"] == [1] and out["file"] == "tier2.onnx"
    teacher = ort.InferenceSession(str(tiny_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    graph = ort.InferenceSession(str(tmp_path / "tier2.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in graph.get_inputs()] == [i.name for i in teacher.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in graph.get_outputs()] == ["logits"]
    input_ids, mask = pad_batch(ids[:16], bundle.spec.pad_id)
    got = graph.run(["logits"], {"input_ids": input_ids, "attention_mask": mask})[0]
    np.testing.assert_allclose(got, student_logits(student, ids[:16], bundle.spec.pad_id), atol=1e-4)
    meta = graph.get_modelmeta().custom_metadata_map
    assert meta["tier"] == "tier2" and json.loads(meta["labels"]) == ["report_sale", "false_ad", "testing_service"]


def test_train_tier2_end_to_end(setup, tiny_bundle, tmp_path):
    from reportguard.train.distill.tier2 import train_tier2
    _, _, texts, gold, soft = setup
    cfg = {"layers": [1], "max_steps": 3, "batch_size": 16, "threads": 1, "min_agreement": 0.0}
    out = train_tier2(tiny_bundle, texts, soft, gold, tmp_path, cfg)
    assert (tmp_path / "tier2.onnx").exists() and out["file"] == "tier2.onnx"
    assert out["layers"] == [1] and out["training"]["steps"] == 3
    assert out["precision"] == "qint8_per_channel"  # min_agreement 0: the first int8 flavour ships
    with pytest.raises(ValueError, match="unknown tier2 settings"):
        train_tier2(tiny_bundle, texts, soft, gold, tmp_path, {"layer": [1]})


def test_the_distill_configs_tier2_section_is_accepted():
    """The pipeline passes distill/config.py's Tier2Config (learning_rate, plus its own enabled and
    train_texts keys)."""
    from reportguard.train.distill.config import Tier2Config as Section
    from reportguard.train.distill.tier2 import tier2_config
    cfg = tier2_config(Section(learning_rate=3e-5, layers=[1, 3]))
    assert cfg.learning_rate == 3e-5 and cfg.layers == [1, 3]
    assert tier2_config({"lr": 2e-5}).learning_rate == 2e-5
