"""Label noise: planted label flips in a small synthetic corpus come out at the top of the report."""
import json
import random

from reportguard.review.cli import main as review_main
from reportguard.review.noise import find_noise, render

PHRASES = {
    ("report_sale", "false_ad", "testing_service"): ["质检报告代办", "不用寄样", "当天出报告", "包过", "CMA报告代做"],
    ("testing_service",): ["第三方检测机构", "寄样检测", "7个工作日出报告", "CNAS实验室", "检测周期正常"],
    (): ["纯棉T恤", "夏季新款", "包邮到家", "男女同款", "舒适透气"],
}


def write_corpus(folder, n=150, flips=6, seed=0):
    rng = random.Random(seed)
    rows, flipped = [], []
    kinds = list(PHRASES)
    for i in range(n):
        labels = kinds[i % 3]
        words = rng.sample(PHRASES[labels], 3)
        row = {"listing_id": f"rg-{i:04d}", "platform": "淘宝", "shop_name": "店", "title": "".join(words[:2]) + f" {i}",
               "description": words[2] + rng.choice(["，欢迎咨询", "，量大从优", "。"]), "qualification": "",
               "labels": list(labels), "tags": []}
        if i % 3 == 2 and len(flipped) < flips:  # a clean listing labelled report_sale by mistake
            row["labels"] = ["report_sale", "false_ad", "testing_service"]
            flipped.append(row["listing_id"])
        rows.append(row)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return flipped


def test_planted_label_errors_are_found(tmp_path):
    flipped = write_corpus(tmp_path / "labelled")
    result = find_noise(tmp_path / "labelled", folds=3)
    found = {result["rows"][i]["listing_id"] for i in result["issues"]}
    # Confident learning is conservative: most planted errors are flagged, and nothing else is ...
    assert len(found & set(flipped)) >= len(flipped) - 1 and found <= set(flipped)
    # ... and every planted error has one of the lowest label-quality scores, so the report lists them all.
    lowest = {result["rows"][i]["listing_id"] for i in result["quality"].argsort()[:len(flipped)]}
    assert lowest == set(flipped)
    report = render(result, top=10)
    assert all(x in report for x in flipped)
    assert "suspected: **clean**" in report


def test_noise_command_writes_the_report(tmp_path, capsys):
    flipped = write_corpus(tmp_path / "labelled", flips=3)
    out = tmp_path / "label_noise.md"
    assert review_main(["review", "noise", "--data", str(tmp_path / "labelled"), "--out", str(out), "--folds", "3"]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Label noise") and "<script" not in text
    assert all(x in text for x in flipped)
    assert json.loads(capsys.readouterr().out)["flagged"] >= 2
