"""The error-analysis notebook runs top to bottom (slow: starts a kernel)."""
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_error_analysis_notebook_runs(tiny_bundle, tmp_path, monkeypatch):
    # The notebook reads the newest reports/train/*/summary.json; point it at the committed one if
    # there is one, else at the tiny bundle's run, so it runs on a clean checkout too.
    committed = sorted((ROOT / "reports" / "train").glob("*/summary.json"))
    target = committed[-1] if committed else next((tiny_bundle.parents[1] / "reports" / "train").glob("*/summary.json"))
    monkeypatch.setenv("REPORTGUARD_SUMMARY", str(target))
    nb = nbformat.read(ROOT / "notebooks" / "error_analysis.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "macro-F1" in outputs
