"""The committed corpus passes its own validation, and is exactly what `data build` makes."""
import json
from pathlib import Path

import pytest

from reportguard.train import corpus
from reportguard.train.validate import validate_corpus

ROOT = Path(__file__).resolve().parents[1]
LABELLED = ROOT / "data" / "labelled"


def test_committed_corpus_is_valid():
    failed = [f"{c.name}: {c.detail}" for c in validate_corpus(LABELLED) if not c.ok]
    assert failed == []


def test_build_is_deterministic_and_matches_the_committed_splits(tmp_path):
    result = corpus.build(ROOT / "data" / "raw" / "batches")
    corpus.write_splits(result, tmp_path)
    for name in corpus.SPLITS:
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (LABELLED / f"{name}.jsonl").read_bytes(), name


def _write(folder: Path, splits: dict[str, list[dict]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in corpus.SPLITS:
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in splits.get(name, [])), encoding="utf-8")


def _row(i: int, title: str, labels=(), tags=()) -> dict:
    return {"listing_id": f"id{i}", "platform": "淘宝", "shop_name": "店", "title": title, "description": "",
            "qualification": "", "labels": list(labels), "tags": list(tags)}


def _failed(folder: Path) -> set[str]:
    return {c.name for c in validate_corpus(folder) if not c.ok}


def test_validation_catches_leakage_duplicates_and_bad_labels(tmp_path):
    text = "儿童毛绒玩具泰迪熊公仔，附国家玩具质量监督检验中心检测报告，符合GB 6675标准"
    splits = {
        "train": [_row(1, text), _row(2, "代办质检报告当天出", ["report_sale", "false_ad", "testing_service"])],
        "validation": [_row(3, text + "。"), _row(4, "x", ["not_a_label"])],
        "test": [_row(1, "重复的id", ["testing_service"]), _row(5, "代办质检报告当天出", ["false_ad"])],
    }
    _write(tmp_path, splits)
    failed = _failed(tmp_path)
    assert {"schema and labels", "unique listing ids", "no exact duplicates", "no near-duplicates",
            "no leakage across splits", "size"} <= failed


def test_split_groups_similar_rows_together(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    base = "专业代办各类产品质检报告，CMA章，官网可查，拍照就能出，全国可办，价格美丽，欢迎咨询客服"
    rows = [dict(_row(i, base + "!" * i), labels=["report_sale", "testing_service"]) for i in range(3)]
    rows += [_row(10 + i, f"第{i}款完全不同的普通商品，纯棉T恤{i}号，颜色随机发货，编号{i * 7919}") for i in range(40)]
    (raw / "b.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "listing_id"}, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    result = corpus.build(raw)
    assert result.near_duplicates >= 1  # the "!" variants are the same listing
    homes = {name for name, split in result.splits.items() for r in split if r["title"].startswith("专业代办")}
    assert len(homes) == 1


def test_bad_raw_row_names_file_and_line(tmp_path):
    (tmp_path / "b.jsonl").write_text('{"platform": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"b\.jsonl:1: missing field"):
        corpus.read_raw_batches(tmp_path)
