"""The project home (core/paths.py): --home, else $REPORTGUARD_HOME, else the current folder; the
packaged defaults when the home has no configs/ of its own; nothing resolved against the package."""
import subprocess
import sys
from pathlib import Path

import pytest

from reportguard.core import paths
from reportguard.core.columns import ReasonCodes, load_column_map

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A folder with no configs/, as the current folder and no home set."""
    monkeypatch.delenv("REPORTGUARD_HOME", raising=False)
    monkeypatch.delenv("REPORTGUARD_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_home_is_the_flag_else_the_variable_else_the_current_folder(elsewhere, monkeypatch):
    assert paths.home() == elsewhere and paths.current_model_dir() == elsewhere / "models" / "current"
    monkeypatch.setenv("REPORTGUARD_HOME", str(elsewhere / "env"))
    assert paths.labelled_dir() == elsewhere / "env" / "data" / "labelled"
    monkeypatch.setenv("REPORTGUARD_MODEL", "bundle")
    assert paths.current_model_dir() == elsewhere / "bundle"  # absolute, so a later chdir cannot move it
    paths.set_home(elsewhere / "flag")
    try:
        assert paths.reports_dir() == elsewhere / "flag" / "reports"
    finally:
        paths.set_home(None)
    assert paths.home() == elsewhere / "env"


def test_packaged_defaults_map_chinese_headers_with_no_configs_folder(elsewhere):
    assert not (elsewhere / "configs").exists()
    assert paths.config_file("columns.yaml") == paths.default_config("columns.yaml")
    mapping = load_column_map()
    assert mapping["商品ID"] == "listing_id" and mapping["商品标题"] == "title"
    assert ReasonCodes().labels_for("REPORT_TRADE") == ["report_sale"]


def test_a_homes_configs_override_the_packaged_defaults(elsewhere):
    (elsewhere / "configs").mkdir()
    (elsewhere / "configs" / "columns.yaml").write_text("aliases:\n  listing_id: [编号]\n  title: [名称]\n", encoding="utf-8")
    assert load_column_map() == {"编号": "listing_id", "名称": "title"}


def test_in_the_repo_the_packaged_defaults_are_the_configs_files():
    for name in paths.PACKAGED_CONFIGS:
        assert paths.default_config(name).resolve() == (ROOT / "configs" / name).resolve()


def test_no_module_resolves_paths_against_its_own_location():
    """REPO_ROOT = parents[2] held only in an editable install; every default now goes through core/paths.py."""
    offenders = []
    for source in (ROOT / "src").rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        if "REPO_ROOT" in text or "parents[2]" in text or "parent.parent.parent" in text:
            offenders.append(str(source.relative_to(ROOT)))
    assert offenders == []


def test_score_from_another_folder_uses_the_packaged_column_aliases(tiny_bundle, elsewhere):
    """The sample export's Chinese headers map with no configs/ in the current folder (the case that
    failed from a wheel: "required column 'listing_id' is missing")."""
    import os
    script = Path(sys.executable).parent / "reportguard"
    env = {k: v for k, v in os.environ.items() if k not in ("REPORTGUARD_HOME", "REPORTGUARD_MODEL")}
    res = subprocess.run([str(script), "score", str(ROOT / "data" / "sample" / "platform_export.csv"), "--output",
                          "scored.jsonl", "--model", str(tiny_bundle), "--quiet", "--attribution", "none"],
                         cwd=elsewhere, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (elsewhere / "scored.jsonl").exists() and (elsewhere / "scored.jsonl.manifest.json").exists()
