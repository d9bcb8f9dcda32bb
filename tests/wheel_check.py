"""The wheel as a user installs it: build it from a copy of the sources, install it with the `serve`
extra into a fresh virtualenv (no torch, no transformers), and score the sample export from
another folder, with no project home, so that the column aliases, the defaults and the model
path all resolve as they would on a user's machine.

Two ways to get the `serve` extra into the fresh virtualenv:
- `link` (tests/test_install.py, offline, seconds): the requirements of reportguard[serve], read
  from the wheel's own metadata and followed transitively, are satisfied from this checkout's
  .venv by linking exactly those distributions (code and .dist-info) into a folder the fresh
  environment sees through a .pth file. Nothing else of .venv is visible: torch is not importable.
- `pip` (`.ci/run` through `python tests/wheel_check.py`, needs PyPI): `pip install
  'reportguard-*.whl[serve]' -c constraints.txt`, as a user would.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "platform_export.csv"
#: What a wheel is built from: the sources, the files pyproject.toml names, and the configs the
#: packaged defaults link to.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "src", "configs/columns.yaml", "configs/takedown_reasons.yaml")


def build_wheel(work: Path) -> Path:
    """Build the wheel from a copy of the sources (the checkout gets no build/ or egg-info)."""
    tree = work / "source"
    for name in SOURCES:
        src, dst = ROOT / name, tree / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dst)
    dist = work / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(tree)],
                   check=True, capture_output=True, text=True)
    (wheel,) = dist.glob("reportguard-*.whl")
    return wheel


def fresh_venv(folder: Path, with_pip: bool = False) -> Path:
    """A virtualenv with nothing in it but the standard library (and pip if asked); returns its python."""
    venv.EnvBuilder(with_pip=with_pip, clear=True).create(folder)
    return folder / "bin" / "python"


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out)


def install_wheel(python: Path, wheel: Path, deps: str, constraints: Path | None = None) -> None:
    """Install `wheel` into the virtualenv of `python` with the serve extra (`deps`: link or pip)."""
    if deps == "pip":
        args = [str(python), "-m", "pip", "install", "-q", f"{wheel}[serve]"]
        subprocess.run(args + (["-c", str(constraints)] if constraints else []), check=True)
        return
    # .venv's pip installs into the fresh environment; no index is asked.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, text=True)
    installed = site_packages(python)
    requires = _wheel_requires(installed, "serve")
    linked = installed.parent / "serve-deps"
    linked.mkdir(exist_ok=True)
    for dist in _closure(requires):
        for top in _top_level(dist):
            target = linked / top.name
            if not target.exists():
                target.symlink_to(top)
    (installed / "serve-deps.pth").write_text(str(linked) + "\n", encoding="utf-8")


def _wheel_requires(site: Path, extra: str) -> list[str]:
    """reportguard's requirements with `extra`, from the installed wheel's metadata."""
    from packaging.requirements import Requirement
    (dist,) = [d for d in metadata.distributions(path=[str(site)]) if d.metadata["Name"] == "reportguard"]
    wanted = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": extra}):
            wanted.append(line)
    return wanted


def _closure(requires: list[str]) -> list[metadata.Distribution]:
    """The distributions of this interpreter's environment that satisfy `requires` (already
    selected for the extra), and what they require in turn."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    seen: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in requires]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        dist = metadata.distribution(req.name)
        assert req.specifier.contains(dist.version, prereleases=True), f"{req}: .venv has {dist.version}"
        seen[name] = dist
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(sub)
    return list(seen.values())


def _top_level(dist: metadata.Distribution) -> set[Path]:
    """The top-level files and folders a distribution installed into site-packages."""
    tops = set()
    for f in dist.files or []:
        parts = Path(f).parts
        if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith(".pth"):
            continue
        top = Path(dist.locate_file(parts[0]))
        if top.exists():
            tops.add(top)
    return tops


def clean_env() -> dict:
    """The environment of a user who never heard of this checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("REPORTGUARD_HOME", "REPORTGUARD_MODEL", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return env


def score_from_elsewhere(python: Path, bundle: Path, work: Path) -> dict:
    """`reportguard score` of the sample export, run from an empty folder; the manifest."""
    folder = work / "elsewhere"
    folder.mkdir(exist_ok=True)
    script = python.parent / "reportguard"
    out = folder / "scored.parquet"
    res = subprocess.run([str(script), "score", str(SAMPLE), "--output", str(out), "--model", str(bundle), "--quiet",
                          "--threads", "1"], cwd=folder, env=clean_env(), capture_output=True, text=True)
    if res.returncode != 0:
        raise AssertionError(f"score from the wheel failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return json.loads(Path(f"{out}.manifest.json").read_text(encoding="utf-8"))


def tiny_bundle(work: Path) -> Path:
    """A tiny bundle trained from configs/tiny.yaml (torch: this checkout's .venv), as tests/conftest.py does."""
    os.environ["REPORTGUARD_HOME"] = str(ROOT)
    from reportguard.train.config import load_config
    from reportguard.train.pipeline import train
    config = load_config(ROOT / "configs" / "tiny.yaml", [
        f"output.models_dir={work / 'models'}", f"output.reports_dir={work / 'reports'}", "mlflow.disabled=true"])
    return train(config)


def main() -> int:
    """CI (`.ci/run`): build, `pip install` with the serve extra from PyPI, score from elsewhere,
    compare with the in-repo scorer."""
    import tempfile

    from reportguard.serve.score import ScoreOptions, score
    with tempfile.TemporaryDirectory(prefix="rg-wheel-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work)
        python = fresh_venv(work / "venv", with_pip=True)
        install_wheel(python, wheel, "pip", ROOT / "constraints.txt")
        torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True)
        assert torch.returncode != 0, "the serve extra must not install torch"
        bundle = tiny_bundle(work)
        got = score_from_elsewhere(python, bundle, work)
        ref = score([str(SAMPLE)], work / "ref.parquet", ScoreOptions(model=str(bundle), threads=1, progress=False))
        assert (got["rows"], got["decisions"], got["labels"]) == (ref["rows"], ref["decisions"], ref["labels"]), (got, ref)
        print(f"wheel {wheel.name}: installed with [serve] from PyPI (no torch), scored {got['rows']['accepted']} of "
              f"{got['rows']['in']} sample rows from another folder; counts equal the in-repo scorer's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
