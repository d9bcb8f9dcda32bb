import numpy as np

from reportguard.core.normalize import listing_text
from reportguard.core.phrases import find_phrases, keyword_labels
from reportguard.train.baselines import TfidfBaseline
from reportguard.train.metrics import best_f1_threshold, per_label, to_matrix


def test_keyword_rules_fire_on_the_notice_phrases_and_their_variants():
    assert keyword_labels(listing_text("不送样检测 一天出报告")) == ["false_ad", "testing_service"]
    assert keyword_labels(listing_text("檢驗檢測包過，不過全額退款")) == ["false_ad"]
    assert "report_sale" in keyword_labels(listing_text("CMA报告代做 数据按要求出"))
    assert keyword_labels(listing_text("纯棉儿童T恤 柔软透气")) == []


def test_phrase_hits_carry_offsets_into_normalised_text():
    text = listing_text("专业代办检测报告", "不送样")
    for hit in find_phrases(text):
        assert text[hit.start:hit.end] == hit.text


def test_tfidf_baseline_learns_a_separable_toy_task():
    texts = [listing_text(t) for t in ["代办质检报告", "报告代办加急", "纯棉T恤", "儿童玩具", "代办报告盖章", "毛绒玩具"]] * 5
    y = to_matrix([["report_sale"] if "代办" in t else [] for t in texts])
    model = TfidfBaseline(C=10.0).fit(texts, y).tune_thresholds(texts, y)
    pred = model.predict(texts)
    assert (pred[:, 0] == y[:, 0]).all()


def test_metrics():
    y = to_matrix([["report_sale"], [], ["false_ad", "testing_service"], ["testing_service"]])
    m = per_label(y, y)
    assert m["macro_f1"] == 1.0 and m["testing_service"]["support"] == 2
    assert best_f1_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) in (0.35, 0.8)
