"""Long listings in windows: every token is seen, a row's logit is the maximum over its windows,
training takes the window that holds the violation, and the scorer pools as training does."""
import numpy as np

from reportguard.core.encoding import encode, spec_for, window_spans
from reportguard.core.normalize import listing_text
from reportguard.train.finetune import ListingDataset
from reportguard.train.model import build_char_tokenizer

FILLER = "本店主营家纺床品，纯棉面料，亲肤透气，支持七天无理由退换货，全国包邮，下单后四十八小时内发货。"
BURIED = "另外可代办质检报告，不送样当天出。"
LONG = FILLER * 6 + BURIED + FILLER * 6


def _tok():
    return build_char_tokenizer([LONG, "纯棉T恤", "代办质检报告"])


def test_windows_cover_every_token_and_overlap():
    for n, budget, stride in ((5, 8, 6), (100, 30, 20), (31, 30, 22), (1000, 126, 96)):
        spans = window_spans(n, budget, stride)
        covered = np.zeros(n, dtype=bool)
        for s, e in spans:
            assert e - s <= budget
            covered[s:e] = True
        assert covered.all() and spans[-1][1] == n


def test_a_buried_sentence_lies_wholly_inside_some_window():
    tok = _tok()
    spec = spec_for(tok, 40, long_text="windows", stride=28)
    text = listing_text(LONG)
    enc = encode(tok, [text], spec)
    assert enc.truncated == [True] and len(enc.ids) > 3 and set(enc.owner) == {0}
    buried = listing_text(BURIED)
    start = text.index(buried)
    assert any(s <= start and start + len(buried) <= e for s, e in enc.spans)
    head_tail = encode(tok, [text], spec_for(tok, 40))  # the old way: one sequence, middle unseen
    assert len(head_tail.ids) == 1


def test_training_takes_the_window_with_the_violation_and_evaluation_pools_them():
    tok = _tok()
    spec = spec_for(tok, 40, long_text="windows", stride=28)
    rows = [{"title": "", "description": LONG, "labels": ["report_sale", "false_ad", "testing_service"], "tags": []},
            {"title": "", "description": FILLER * 12, "labels": [], "tags": []}]
    ds = ListingDataset(rows, tok, spec)
    chosen = tok.decode(ds.ids[0]).replace(" ", "")
    assert "不送样" in chosen or "代办质检报告" in chosen
    assert len(ds.windows[0]) > 1 and len(ds.windows[1]) > 1


def test_bundle_scores_a_long_listing_by_its_best_window(tiny_bundle):
    from reportguard.serve.bundle import load_bundle
    bundle = load_bundle(tiny_bundle)
    text = listing_text(LONG)
    enc = encode(bundle.tokenizer, [text], bundle.spec)
    assert bundle.spec.long_text == "windows" and len(enc.ids) > 1
    per_window = np.concatenate([bundle.logits([ids]) for ids in enc.ids])
    probs, truncated = bundle.predict_proba([text, "纯棉T恤"])
    assert truncated == [True, False]
    # windows scored one at a time here, in padded batches by the scorer: dynamic int8 quantises
    # activations per batch, so the two differ by a few 1e-4 (the decision never rests on that:
    # the fp32 fallback re-scores anything near a cut)
    np.testing.assert_allclose(probs[0], bundle.calibrate(per_window.max(axis=0)), atol=2e-3)
