"""Small synthetic scored runs, in the scorer's output contract, for tests and for trying the UI.

`write_run(rows, path)` writes Parquet, JSONL or CSV by suffix, exactly as `reportguard score`
does (labels as a list, or pipe-separated in CSV; evidence as a JSON string) plus the manifest
and rejects files beside it, so the review side can be built and tested without the scorer.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from reportguard.core.errors import UsageError
from reportguard.core.labels import MODEL_LABELS

# (title, description, model labels, evidence phrases per label)
_TEMPLATES = [
    ("质检报告代办当天出", "不用寄样，CMA报告可查可验，包过", ["report_sale", "false_ad", "testing_service"],
     {"report_sale": "质检报告代办", "false_ad": "当天出"}),
    ("第三方检测机构 寄样检测", "寄样后7个工作日出具报告，CMA证书编号161912345678", ["testing_service"],
     {"testing_service": "第三方检测"}),
    ("加急检测报告24小时出", "免寄样，不过全额退款", ["false_ad", "testing_service"], {"false_ad": "免寄样"}),
    ("纯棉T恤 男款 夏季", "附SGS检测报告，质量放心", [], {}),
    ("检测报告模板 可编辑", "改个名就能用，公章图片另售", ["report_sale"], {"report_sale": "检测报告模板"}),
    ("CNAS实验室 送检服务", "需寄样品，CNAS L1234，正常周期", ["testing_service"], {"testing_service": "送检服务"}),
]


def sample_rows(n: int = 40, seed: int = 0, model_version: str = "rg-test-0001") -> list[dict]:
    """`n` scored rows with varied labels, probabilities, decisions and evidence."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        title, description, labels, phrases = _TEMPLATES[i % len(_TEMPLATES)]
        probs = {}
        for label in MODEL_LABELS:
            on = label in labels
            probs[label] = round(rng.uniform(0.55, 0.999) if on else rng.uniform(0.001, 0.45), 4)
        predicted = list(labels)
        if "testing_service" in predicted and "CMA证书" not in description and "CNAS" not in description:
            predicted.append("credential_missing")
        evidence = []
        for label, phrase in phrases.items():
            for field, text in (("title", title), ("description", description)):
                start = text.find(phrase)
                if start >= 0:
                    evidence.append({"label": label, "text": phrase, "field": field, "start": start, "end": start + len(phrase)})
        decision = "block" if "report_sale" in predicted else ("review" if predicted else "pass")
        rows.append({
            "listing_id": f"L{i:04d}", "p_report_sale": probs["report_sale"], "p_false_ad": probs["false_ad"],
            "p_testing_service": probs["testing_service"], "labels": predicted, "decision": decision,
            "evidence": json.dumps(evidence, ensure_ascii=False), "model_version": model_version,
            "title": f"{title} {i}", "description": description, "platform": rng.choice(["淘宝", "闲鱼", "拼多多"]),
            "shop_name": f"店铺{i % 7}", "qualification": "", "price": round(rng.uniform(10, 500), 2),
        })
    return rows


def write_run(rows: list[dict], path: str | Path) -> Path:
    """Write `rows` as the scorer would, by suffix (.parquet, .jsonl, .csv), with manifest and rejects."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif suffix == ".jsonl":
        with open(path, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif suffix == ".csv":
        import csv
        columns = list(dict.fromkeys(k for row in rows for k in row))
        with open(path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "labels": "|".join(row["labels"])})
    else:
        raise UsageError(f"{path}: write .parquet, .jsonl or .csv")
    versions = {row.get("model_version") for row in rows}
    manifest = {"model_version": versions.pop() if len(versions) == 1 else None,
                "rows": {"in": len(rows), "accepted": len(rows), "rejected": 0, "unique": len(rows)}}
    path.with_name(path.name + ".manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    path.with_name(path.name + ".rejects.jsonl").write_text("", encoding="utf-8")
    return path
