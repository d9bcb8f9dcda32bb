"""The layers, enforced on the source (every import, function-level ones included, read by AST):

- core (src/core): imported by every layer; imports none of them, and no torch, onnxruntime or
  other heavy runtime;
- serve (src/serve): onnxruntime and tokenizers; never imports train, torch or transformers;
- review (src/review): the web tool; imports neither train nor torch (nor transformers);
- train (src/train) may import core and serve (it evaluates what ships through serve's Bundle);
  the command line (src/reportguard) may import every layer.
"""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = ("core", "train", "serve", "review")
HEAVY = {"torch", "transformers", "onnxruntime", "onnx", "accelerate", "mlflow", "fastapi", "starlette", "sqlalchemy", "pyspark"}
FORBIDDEN = {
    "core": {"layers": {"train", "serve", "review", "cli"}, "modules": HEAVY},
    "serve": {"layers": {"train", "review", "cli"}, "modules": {"torch", "transformers", "accelerate"}},
    "review": {"layers": {"train", "cli"}, "modules": {"torch", "transformers", "onnxruntime", "accelerate"}},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts if parts[0] == "reportguard" else ["reportguard", *parts])


def imports(path: Path, source: str | None = None) -> list[tuple[str, int]]:
    """(absolute module name, line) for every import in the file (or in `source`, as if it were that file)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source if source is not None else path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                found += [(module, node.lineno)] if node.module else [(f"{module}.{a.name}", node.lineno) for a in node.names]
            else:
                found.append((node.module, node.lineno))
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "reportguard":
        return None
    if len(parts) == 1 or parts[1] in ("cli", "commands", "api", "__main__"):
        return "cli"
    return parts[1] if parts[1] in LAYERS else "cli"


def violations(layer: str) -> list[str]:
    rules = FORBIDDEN[layer]
    out = []
    for path in sorted((SRC / layer).rglob("*.py")):
        for module, line in imports(path):
            target = layer_of(module)
            dotted = ".".join(module.split(".")[1:3])
            if target in rules["layers"] or dotted in rules["layers"] or module.split(".")[0] in rules["modules"]:
                out.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_what_it_may(layer):
    assert violations(layer) == []


def test_the_checker_sees_relative_and_function_level_imports():
    """The layer test would pass vacuously if imports were missed: the resolver on a known file."""
    source = ("from ..outputs import iter_run\nfrom . import page\n"
              "def f():\n    import torch\n    from reportguard.train.pipeline import train\n")
    found = [m for m, _ in imports(SRC / "serve" / "report" / "tally.py", source)]
    assert found == ["reportguard.serve.outputs", "reportguard.serve.report.page", "torch", "reportguard.train.pipeline"]
    assert [layer_of(m) for m in found] == ["serve", "serve", None, "train"]
    assert layer_of("reportguard.cli") == layer_of("reportguard.commands.train") == "cli"
    assert any(m == "reportguard.serve.bundle" for m, _ in imports(SRC / "train" / "pipeline.py"))  # inside a function
