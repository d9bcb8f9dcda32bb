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


def _raw(folder: Path, name: str, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps({k: v for k, v in r.items() if k != "listing_id"}, ensure_ascii=False) + "\n"
                                       for r in rows), encoding="utf-8")


def test_held_out_writers_only_ever_appear_in_test_and_their_paraphrases_are_dropped(tmp_path):
    raw = tmp_path / "batches"
    shared = "专业代办各类产品质检报告，CMA章，官网可查，拍照就能出，全国可办，价格美丽，欢迎咨询"
    _raw(raw, "w1_01.jsonl", [_row(i, f"第{i}款普通商品，纯棉T恤{i}号，颜色随机，编号{i * 7919}") for i in range(30)]
         + [_row(99, shared + "，另外还有十几家合作机构的抬头可以任选", ["report_sale", "testing_service"])])
    _raw(raw, "w13_01.jsonl", [_row(200 + i, f"另一位作者写的第{i}个商品，保温杯{i}号，容量{i * 31}毫升") for i in range(10)]
         + [_row(300, shared, ["report_sale", "testing_service"])])
    result = corpus.build(raw, test_writers=("w13",))
    assert {r["writer"] for r in result.splits["test"]} == {"w13"} and len(result.splits["test"]) == 11
    assert all(r["writer"] == "w1" for name in ("train", "validation", "test_random") for r in result.splits[name])
    assert result.dropped_near_test == 1  # w1's paraphrase of a w13 row never trains
    folder = tmp_path / "labelled"
    corpus.write_splits(result, folder)
    assert "writer-held-out test" not in _failed(folder)
    rows = corpus.load_split(folder, "train")
    rows[0]["writer"] = "w13"  # a held-out writer leaks into train
    (folder / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert "writer-held-out test" in _failed(folder)


def test_relabelling_is_applied_by_file_and_line_and_a_stale_one_fails(tmp_path):
    raw = tmp_path / "batches"
    _raw(raw, "w6_01.jsonl", [_row(1, "MSDS出具盖章可查", ["report_sale", "testing_service"]), _row(2, "纯棉毛巾 三条装")])
    fixes = tmp_path / "relabel.jsonl"
    fixes.write_text(json.dumps({"source": "w6_01.jsonl:1", "labels": ["testing_service"], "reason": "no sign of faking"}) + "\n", encoding="utf-8")
    rows = corpus.read_raw_batches(raw, fixes)
    assert rows[0]["labels"] == ["testing_service"] and rows[0]["_relabelled_from"] == ["report_sale", "testing_service"]
    fixes.write_text(json.dumps({"source": "w6_01.jsonl:9", "labels": [], "reason": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="match no raw row"):
        corpus.read_raw_batches(raw, fixes)


def test_ordinary_listings_hold_out_whole_writers_and_real_text_splits_by_site(tmp_path):
    from reportguard.train import background, realtext
    import random
    rng = random.Random(0)
    raw = tmp_path / "bg"
    for writer in ("o1", "o3", "o8"):  # random CJK strings: no two rows alike
        _raw(raw, f"{writer}_01.jsonl", [dict(_row(i, "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(24))),
                                              category="零食", subset="plain") for i in range(20)])
    splits = background.build(raw)
    assert {r["writer"] for r in splits["test"]} == set(background.TEST_WRITERS) & {"o3", "o8"}
    assert {r["writer"] for r in splits["train"] + splits["validation"]} == {"o1"}
    assert all(r["listing_id"].startswith("bg-") and r["labels"] == [] for rows in splits.values() for r in rows)
    snippets = [{"snippet_id": f"real-{i}", "site": f"s{i % 7}.cn", "url": "https://x", "page_title": "t", "retrieved": "2026-12-06",
                 "source_kind": "news_expose", "text_kind": "news_paragraph", "text": f"第{i}段", "labels": [], "reason": "r",
                 "licence": "news"} for i in range(30)]
    parts = realtext.split(snippets)
    eval_sites, train_sites = {r["platform"] for r in parts["eval"]}, {r["platform"] for r in parts["train"]}
    assert not eval_sites & train_sites and len(eval_sites) * 2 >= 7 and len(parts["eval"]) + len(parts["train"]) == 30
