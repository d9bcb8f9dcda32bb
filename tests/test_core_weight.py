"""The shared core must stay importable without torch, transformers or scikit-learn: the scorer
installs it with the `serve` extra alone."""
import subprocess
import sys

HEAVY = ("torch", "transformers", "sklearn", "datasets", "mlflow")


def test_core_imports_no_heavy_packages():
    code = (
        "import sys\n"
        "import reportguard.core.labels, reportguard.core.normalize, reportguard.core.credentials\n"
        "import reportguard.core.records, reportguard.core.columns, reportguard.core.phrases\n"
        "import reportguard.cli\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_building_the_cli_parser_imports_no_heavy_packages():
    code = (
        "import sys\n"
        "from reportguard.cli import build_parser\n"
        "build_parser()\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
