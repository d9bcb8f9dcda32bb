"""Installed from a wheel with the `serve` extra into a fresh virtualenv (no torch) and run from
another folder, reportguard scores the sample export (Chinese headers, GB18030) exactly as the
in-repo scorer does. Offline: the serve extra's distributions come from .venv (tests/wheel_check.py);
`.ci/run` repeats this with a real `pip install` from PyPI."""
import json
import subprocess

import pyarrow.parquet as pq
import pytest

from wheel_check import SAMPLE, build_wheel, clean_env, fresh_venv, install_wheel, score_from_elsewhere, site_packages


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work)
    python = fresh_venv(work / "venv")
    install_wheel(python, wheel, "link")
    return work, wheel, python


def test_the_wheel_ships_the_packaged_defaults_and_the_license(installed):
    import zipfile
    _, wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    for packaged in ("reportguard/core/defaults/columns.yaml", "reportguard/core/defaults/takedown_reasons.yaml",
                     "reportguard/core/lexicon/evasions.tsv", "reportguard/commands/score.py", "reportguard/api.py"):
        assert packaged in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    columns = zipfile.ZipFile(wheel).read("reportguard/core/defaults/columns.yaml").decode("utf-8")
    assert "商品ID" in columns  # the link's target, not the link


def test_the_serve_install_has_no_torch_and_reads_no_checkout(installed):
    work, _, python = installed
    probe = ("import importlib.util, json, reportguard, reportguard.core.paths as p\n"
             "print(json.dumps({'file': reportguard.__file__, 'torch': importlib.util.find_spec('torch') is not None,"
             " 'transformers': importlib.util.find_spec('transformers') is not None,"
             " 'columns': str(p.config_file('columns.yaml')), 'home': str(p.home())}))")
    folder = work / "elsewhere"
    folder.mkdir(exist_ok=True)
    res = subprocess.run([str(python), "-c", probe], cwd=folder, env=clean_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    seen = json.loads(res.stdout)
    site = str(site_packages(python))
    assert seen["file"].startswith(site) and seen["columns"].startswith(site)  # the wheel's copy, packaged defaults
    assert not seen["torch"] and not seen["transformers"]
    assert seen["home"] == str(folder)  # the current folder, not site-packages


def test_the_wheel_scores_the_sample_from_another_folder_like_the_repo(installed, tiny_bundle, tmp_path):
    from reportguard.serve.score import ScoreOptions, score
    work, _, python = installed
    got = score_from_elsewhere(python, tiny_bundle, work)
    ref = score([str(SAMPLE)], tmp_path / "ref.parquet", ScoreOptions(model=str(tiny_bundle), threads=1, progress=False))
    assert got["rows"]["accepted"] >= 500  # the Chinese headers mapped: no "required column 'listing_id' is missing"
    assert (got["rows"], got["decisions"], got["labels"]) == (ref["rows"], ref["decisions"], ref["labels"])
    a = pq.read_table(work / "elsewhere" / "scored.parquet").to_pydict()
    b = pq.read_table(tmp_path / "ref.parquet").to_pydict()
    assert a["listing_id"] == b["listing_id"] and a["labels"] == b["labels"]
    assert max(abs(x - y) for x, y in zip(a["p_report_sale"], b["p_report_sale"])) <= 1e-6


def test_the_installed_command_reports_its_versions(installed, tiny_bundle):
    work, _, python = installed
    env = dict(clean_env(), REPORTGUARD_MODEL=str(tiny_bundle))
    res = subprocess.run([str(python.parent / "reportguard"), "--version"], cwd=work, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("reportguard 0.") and lines[1].startswith("model ") and str(tiny_bundle) in lines[1]
    assert lines[2].startswith("normaliser ")
