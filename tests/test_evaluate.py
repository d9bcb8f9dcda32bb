"""`reportguard evaluate`, the ordinary-listing thresholds and the writer-held-out split, on a
tiny bundle and small data trees made here (the real sets are checked by test_corpus.py)."""
import doctest
import json
from pathlib import Path

import numpy as np
import pytest

from reportguard.core.normalize import listing_text
from reportguard.train import calibrate as calibrate_module
from reportguard.train import evaluate as evaluate_module
from reportguard.train.calibrate import calibrate, ordinary_cut
from reportguard.train.config import load_config
from reportguard.train.corpus import load_split
from reportguard.train.evaluate import evaluate_bundle, prevalence_table, wilson

ROOT = Path(__file__).resolve().parents[1]

ORDINARY = [
    ("淘宝", "女装", "marketplace_title", "2026秋冬新款韩版宽松毛衣女 慵懒风 加厚打底针织衫", ""),
    ("拼多多", "零食", "spec_promo", "【券后9.9】手撕面包整箱 早餐 代餐 办公室零食 2斤装", "拍2件更划算 坏单包赔 当天发货"),
    ("闲鱼", "二手手机", "contact_lure", "自用iPhone13 128G 电池88", "无拆无修，同城可面交，加V看实拍视频"),
    ("京东", "小家电", "product_with_report", "家用空气炸锅5L大容量", "已通过3C认证，附第三方检测报告，详情页可查看证书编号。"),
    ("58同城", "驾校", "business_service", "C1驾照培训 包过班 一费制", "科目二科目三包过，不过免费补考，学车找王教练"),
    ("1688", "试剂", "instrument", "甲醛自测盒 家用 新房检测试剂盒", "10分钟显色 比色卡判读 仅供参考 不能代替专业检测报告"),
]
REAL = [
    ("a.example", "seller_quote", "不用寄样，报个产品名称就能出报告，两天拿到", ["report_sale", "false_ad", "testing_service"]),
    ("b.example", "news_paragraph", "市场监管部门提醒，网上所谓“不送样检测”“一天出报告”的服务涉嫌出具虚假检验检测报告。", []),
]


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def data_tree(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("data")
    for split, n in (("train", 60), ("validation", 30), ("test", 30), ("test_random", 20)):
        _jsonl(root / "labelled" / f"{split}.jsonl", load_split(ROOT / "data" / "labelled", split)[:n])
    ordinary = [{"listing_id": f"bg-{i:012x}", "writer": "o3", "platform": p, "shop_name": "店", "title": t, "description": d,
                 "qualification": "", "category": c, "subset": s, "labels": [], "tags": []}
                for i, (p, c, s, t, d) in enumerate(ORDINARY)]
    _jsonl(root / "background" / "train.jsonl", [dict(r, listing_id=r["listing_id"] + "t", writer="o1") for r in ordinary[:3]])
    _jsonl(root / "background" / "validation.jsonl", [dict(r, listing_id=r["listing_id"] + "v", writer="o1") for r in ordinary[3:]])
    _jsonl(root / "background" / "test.jsonl", ordinary)
    _jsonl(root / "real" / "eval.jsonl", [
        {"listing_id": f"real-{i}", "platform": site, "shop_name": "", "title": "", "description": text, "qualification": "",
         "labels": labels, "tags": [], "writer": f"real:{site}", "source_kind": "news_expose", "text_kind": kind, "url": "https://x"}
        for i, (site, kind, text, labels) in enumerate(REAL)])
    pair = {"platform": "淘宝", "shop_name": "店", "qualification": "", "family": "quotes", "kind": "invariance", "note": ""}
    _jsonl(root / "probes" / "quotes.jsonl", [
        dict(pair, probe_id="quotes-001a", pair_id="quotes-001", variant="a", title="本店承诺“包过”", description="寄样检测，不过退款",
             labels=["false_ad", "testing_service"]),
        dict(pair, probe_id="quotes-001b", pair_id="quotes-001", variant="b", title="本店承诺包过", description="寄样检测，不过退款",
             labels=["false_ad", "testing_service"])])
    return {"dir": str(root / "labelled"), "background_dir": str(root / "background"), "real_dir": str(root / "real"),
            "probes_dir": str(root / "probes"), "external_dir": str(root / "none"), "extra_train": []}


def test_doctests_of_the_evaluation_modules():
    for module in (evaluate_module, calibrate_module):
        assert doctest.testmod(module).failed == 0


def test_wilson_interval_and_prevalence_arithmetic():
    lo, hi = wilson(5, 1000)
    assert lo < 0.005 < hi and hi - lo < 0.01
    table = prevalence_table(recall=0.9, false_alarm_rate=0.002)
    one = next(r for r in table if r["prevalence"] == 0.01)
    assert one["true_alerts"] == pytest.approx(1e6 * 0.01 * 0.9)
    assert one["false_alerts"] == pytest.approx(1e6 * 0.99 * 0.002)
    assert one["precision"] == pytest.approx(9000 / (9000 + 1980))


def test_ordinary_listings_bound_the_flag_cut_and_open_a_review_band():
    rng = np.random.default_rng(3)
    labels = np.zeros((600, 3))
    labels[:200] = 1  # 200 violations on every label
    logits = np.where(labels == 1, 2.5, -2.5) + rng.normal(0, 1.5, labels.shape)
    ordinary = np.zeros(600, dtype=bool)
    ordinary[300:] = True  # 300 ordinary listings, a few of which score high
    logits[300:310] = 3.0
    config = load_config("configs/e5_small.yaml")
    loose = calibrate(logits, labels, config)
    strict = calibrate(logits, labels, config, ordinary)
    for k, name in enumerate(("report_sale", "false_ad", "testing_service")):
        probs = 1 / (1 + np.exp(-logits[ordinary, k] / strict["temperature"][name]))
        assert (probs >= strict["thresholds"][name]).mean() <= config["thresholds"]["max_ordinary_rate"][name] + 1e-9
        assert strict["thresholds"][name] >= loose["thresholds"][name]
    for name in ("report_sale", "false_ad"):
        assert strict["decision"]["block"][name] > strict["thresholds"][name]  # a review band exists
    assert ordinary_cut(np.array([0.5, 0.6]), 0.0) > 0.6


def test_evaluate_writes_every_section_and_counts_alarms_independently(tiny_bundle, data_tree, tmp_path):
    result = evaluate_bundle(tiny_bundle, data_tree, tmp_path, {"disabled": True})
    version = result["model_version"]
    report = (tmp_path / f"{version}.md").read_text(encoding="utf-8")
    saved = json.loads((tmp_path / f"{version}.json").read_text(encoding="utf-8"))
    assert saved["sets"] == {"test": 30, "test_random": 20, "ordinary": len(ORDINARY), "real": 2, "probes": 2}
    assert set(saved["labels"]) == {"test_random", "test", "real"}
    for section in ("random test split", "writer-held-out test", "real public text", "Counterfactual probes",
                    "Held-out ordinary listings", "realistic prevalence", "Slices", "reliability"):
        assert section in report, section
    for system in ("model", "tfidf", "keyword"):
        assert system in saved["ordinary"] and system in saved["labels"]["test"]
    assert (tmp_path / f"{version}.pr_curves.png").stat().st_size > 0
    assert (tmp_path / f"{version}.reliability.png").stat().st_size > 0
    # the ordinary false alarms, counted again straight from the bundle
    from reportguard.serve.bundle import load_bundle
    bundle = load_bundle(tiny_bundle)
    probs = bundle.predict_proba([listing_text(t, d) for _, _, _, t, d in ORDINARY])[0]
    flagged = int(((probs[:, 0] >= bundle.thresholds[0]) | (probs[:, 1] >= bundle.thresholds[1])).sum())
    assert saved["ordinary"]["model"]["violation"]["count"] == flagged
    assert sum(saved["ordinary"]["model"]["decisions"].values()) == len(ORDINARY)
    assert set(saved["slices"]) == {"obfuscated", "hard_negative", "length", "writer", "platform"}
    assert saved["probes"]["quotes"]["rows"] == 2


def test_a_measured_zero_false_alarm_rate_is_not_a_promise():
    table = prevalence_table(recall=0.9, false_alarm_rate=0.0, far_upper=wilson(0, 1795)[1])
    one = next(r for r in table if r["prevalence"] == 0.01)
    assert one["precision"] == 1.0
    assert one["precision_at_far_upper"] == pytest.approx(9000 / (9000 + 1e6 * 0.99 * wilson(0, 1795)[1]))
    assert one["precision_at_far_upper"] < 0.9
