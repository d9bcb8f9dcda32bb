"""train() reads as its steps, and what it reports about the shipped model is what the scorer computes."""
import ast
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "src" / "train" / "pipeline.py"


def _calls_in_order(function: ast.FunctionDef) -> list[str]:
    calls = [(node.lineno, node.col_offset, node.func) for node in ast.walk(function) if isinstance(node, ast.Call)]
    names = []
    for _, _, func in sorted(calls, key=lambda c: (c[0], c[1])):
        names.append(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def test_train_runs_its_named_steps_in_order_and_logs_through_tracking():
    tree = ast.parse(PIPELINE.read_text(encoding="utf-8"))
    train = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "train")
    calls = _calls_in_order(train)
    steps = ["load_data", "fine_tune", "calibrate", "export_graphs", "run_gate", "evaluate_shipped", "register"]
    positions = [calls.index(step) for step in steps]
    assert positions == sorted(positions), calls
    # MLflow only through tracking: no `mlflow.<call>` in the pipeline itself
    direct = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
              and isinstance(n.func.value, ast.Name) and n.func.value.id == "mlflow"]
    assert direct == []
    assert len(train.body) < 40


def test_the_reported_test_metrics_are_the_scorers(tiny_bundle):
    """summary.json's test split results come from serve's Bundle: the same probabilities, the same
    float32 thresholds, hence the same label sets as `reportguard score`."""
    from reportguard.core.normalize import listing_text
    from reportguard.serve.bundle import load_bundle
    from reportguard.train.corpus import load_split
    from reportguard.train.metrics import per_label, to_matrix

    bundle = load_bundle(tiny_bundle, threads=2)
    summary = json.loads((tiny_bundle.parents[1] / "reports" / "train" / bundle.model_version / "summary.json").read_text())
    rows = load_split(ROOT / "data" / "labelled", "test")
    assert len(rows) == summary["test_rows"]
    probs, _ = bundle.predict_proba([listing_text(r["title"], r["description"]) for r in rows])
    scored = per_label(to_matrix([r["labels"] for r in rows]), (probs >= bundle.thresholds).astype(np.int8))
    assert scored["macro_f1"] == summary["test"]["macro_f1"]
    assert [scored[x]["f1"] for x in ("report_sale", "false_ad", "testing_service")] == \
        [summary["test"][x]["f1"] for x in ("report_sale", "false_ad", "testing_service")]
    assert summary["precision"] == bundle.meta["precision"] and summary["export"]["fp32"]["test"]["label_set_agreement"] >= 0
