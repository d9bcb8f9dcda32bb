"""The shared core must stay importable without torch, transformers or scikit-learn: the scorer
installs it with the `serve` extra alone."""
import subprocess
import sys

HEAVY = ("torch", "transformers", "sklearn", "datasets", "mlflow")


def heavy_modules_after(code: str) -> str:
    """Run `code` in a fresh interpreter; return which heavy packages it left imported."""
    code += f"\nimport sys\nprint([m for m in {HEAVY!r} if m in sys.modules])\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_core_imports_no_heavy_packages():
    assert heavy_modules_after(
        "import reportguard.core.labels, reportguard.core.normalize, reportguard.core.credentials\n"
        "import reportguard.core.records, reportguard.core.columns, reportguard.core.phrases\n"
        "import reportguard.cli\n") == "[]"


def test_building_the_cli_parser_imports_no_heavy_packages():
    assert heavy_modules_after("from reportguard.cli import build_parser\nbuild_parser()\n") == "[]"
