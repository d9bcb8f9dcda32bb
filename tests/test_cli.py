"""The console script works as the README says, and follows one set of conventions: one registry
of commands, a description and an example in every --help, --output everywhere (old spellings
hidden), paths under the project home, one-line errors for the project's own error classes only."""
import argparse
import hashlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from reportguard.cli import build_parser, main
from reportguard.commands import subcommands

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "reportguard"


def run(*args, stdin=None):
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, input=stdin)


def test_console_script_is_installed_in_the_venv():
    assert SCRIPT.exists(), "make setup must install .venv/bin/reportguard"
    out = run("--help")
    assert out.returncode == 0 and "data" in out.stdout and "baselines" in out.stdout


def test_normalize_subcommand():
    out = run("normalize", "檢*測報告 ＣＭＡ 包🔥过")
    assert out.stdout.strip() == "检测报告 cma 包过"


def test_data_validate_passes_on_the_committed_corpus():
    out = run("data", "validate")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "corpus valid" in out.stdout


def test_import_takedowns_maps_reason_codes_and_rejects_unknown_ones(tmp_path):
    export = tmp_path / "takedowns.csv"
    export.write_text("商品ID,商品标题,takedown_reason\n"
                      "1,质检报告代办当天出,FAKE_REPORT|FAST_REPORT\n"
                      "2,普通T恤,CLEARED\n"
                      "3,某商品,NOT_A_CODE\n"
                      "4,,FAKE_REPORT\n", encoding="utf-8")
    out_file = tmp_path / "labelled.jsonl"
    res = run("data", "import-takedowns", str(export), "--output", str(out_file))
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary == {"rows_in": 4, "accepted": 2, "rejected": 2, "output": str(out_file)}
    rows = [json.loads(l) for l in out_file.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["labels"] == ["report_sale", "false_ad", "testing_service"]
    assert rows[1]["labels"] == []
    rejects = [json.loads(l) for l in Path(f"{out_file}.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["line"]: r["reason"] for r in rejects} == {
        4: "unknown takedown reason code 'NOT_A_CODE'; add it to " + str(ROOT / "configs" / "takedown_reasons.yaml"),
        5: "no text",
    }


def test_missing_column_is_a_clear_error(tmp_path):
    export = tmp_path / "t.csv"
    export.write_text("商品ID,takedown_reason\n1,CLEARED\n", encoding="utf-8")
    res = run("data", "import-takedowns", str(export), "--output", str(tmp_path / "o.jsonl"))
    assert res.returncode == 1  # a refused input (2 is for usage errors)
    assert "t.csv: line 1: required column 'title' is missing" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


# --- the registry and its conventions -----------------------------------------------------------

def all_parsers(parser=None, path=("reportguard",)):
    """(command path, parser) for the top parser and every subcommand under it."""
    parser = parser or build_parser()
    yield path, parser
    for name, child in subcommands(parser).items():
        yield from all_parsers(child, path + (name,))


def test_every_command_has_a_description_and_an_example():
    missing = []
    for path, parser in all_parsers():
        help_text = parser.format_help()
        if not parser.description or "example" not in (parser.epilog or ""):
            missing.append(" ".join(path))
        assert "reportguard" in help_text
    assert not missing, f"commands without a description or an example in --help: {missing}"


def test_output_is_spelled_output_everywhere_and_the_old_spellings_are_hidden_aliases():
    writes = []
    for path, parser in all_parsers():
        help_text = parser.format_help()
        for old in ("--out ", "--out-dir", "--folder"):
            assert old not in help_text, f"{' '.join(path)} --help shows {old.strip()}"
        if "--output" in parser._option_string_actions:
            writes.append(" ".join(path[1:]))
    assert {"score", "sellers", "report", "review queue", "review tokens", "review noise", "data build", "baselines",
            "bench", "evaluate", "pretrain", "backbone provision"} <= set(writes)
    parser = build_parser()
    old = parser.parse_args(["review", "queue", "run.parquet", "--size", "3", "--out", "q.jsonl"])
    new = parser.parse_args(["review", "queue", "run.parquet", "--size", "3", "--output", "q.jsonl"])
    assert old.out == new.out == "q.jsonl"
    assert parser.parse_args(["report", "r.parquet", "--out-dir", "d"]).out_dir == "d"
    assert parser.parse_args(["report", "r.parquet", "--output", "d"]).out_dir == "d"
    assert parser.parse_args(["baselines", "--out", "x"]).output == "x"
    assert parser.parse_args(["data", "validate", "--folder", "x"]).data == "x"


def test_building_the_parser_imports_no_engine():
    """The Spark options are the score command's own: building the parser no longer imports
    spark_engine (and its warnings filter) on every command."""
    code = ("import sys\nfrom reportguard.cli import build_parser\nbuild_parser()\n"
            "print([m for m in ('reportguard.serve.spark_engine', 'pyspark', 'onnxruntime', 'tokenizers', 'fastapi',"
            " 'sqlalchemy', 'torch', 'pandas', 'pyarrow', 'openpyxl') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_the_score_commands_spark_options_are_the_engines():
    from reportguard.serve.spark_engine import build_parser as spark_parser

    def spark_group(parser):
        (group,) = [g for g in parser._action_groups if g.title and g.title.startswith("Spark engine")]
        # (the engine's own entry point defaults --engine to spark: that is the one difference)
        return {(a.dest, tuple(a.option_strings), repr(a.default) if a.dest != "engine" else "", tuple(a.choices or ()))
                for a in group._group_actions}
    assert spark_group(subcommands(build_parser())["score"]) == spark_group(spark_parser())


def blocked_env(tmp_path, blocked: tuple[str, ...]) -> dict:
    """An environment where importing any of `blocked` fails, as on an install without that extra."""
    blocker = tmp_path / "blocker"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ImportError(f'{name} is not installed (blocked for this test)')\n"
        "sys.meta_path.insert(0, _Block())\n")
    import os
    return dict(os.environ, PYTHONPATH=str(blocker))


TRAIN = ("torch", "transformers", "sklearn", "datasets", "mlflow", "matplotlib", "accelerate", "safetensors", "scipy")
SERVE = ("onnxruntime", "tokenizers", "openpyxl")
REVIEW = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "jinja2", "cleanlab", "multipart", "psycopg")


def test_help_and_review_work_on_a_review_only_install(tmp_path):
    env = blocked_env(tmp_path, TRAIN + SERVE + ("pyspark", "pandas"))
    assert subprocess.run([sys.executable, "-c", "import tokenizers"], env=env, capture_output=True).returncode != 0
    res = subprocess.run([str(SCRIPT), "--help"], env=env, capture_output=True, text=True)
    assert res.returncode == 0 and "review" in res.stdout, res.stderr
    tokens = tmp_path / "tokens.txt"
    res = subprocess.run([str(SCRIPT), "review", "tokens", "alice", "--output", str(tokens)], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert tokens.read_text().startswith("alice")
    res = subprocess.run([str(SCRIPT), "review", "serve", "--db", f"sqlite:///{tmp_path / 'v.sqlite'}"], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith("reportguard: error: choose how reviewers log in")


def test_help_and_score_help_work_on_a_serve_only_install(tmp_path):
    env = blocked_env(tmp_path, TRAIN + REVIEW + ("pyspark", "pandas"))
    for args in (["--help"], ["score", "--help"], ["predict", "--help"], ["review", "--help"], ["train", "--help"]):
        res = subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True)
        assert res.returncode == 0, (args, res.stderr)


def test_version_names_the_package_the_model_and_the_normaliser(tmp_path):
    from reportguard import __version__
    from reportguard.core.normalize import NORMALIZER_VERSION
    import os
    res = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True,
                         env=dict(os.environ, REPORTGUARD_MODEL=str(tmp_path / "nothing")))
    assert res.returncode == 0
    assert res.stdout.splitlines() == [f"reportguard {__version__}", f"model none at {tmp_path / 'nothing'}",
                                       f"normaliser {NORMALIZER_VERSION}"]


def test_home_flag_and_variable_set_where_defaults_live(tmp_path, monkeypatch):
    from reportguard.core import paths
    monkeypatch.setenv("REPORTGUARD_HOME", str(tmp_path / "env-home"))
    (tmp_path / "env-home").mkdir()
    (tmp_path / "flag-home").mkdir()
    seen = {}
    monkeypatch.setattr("reportguard.commands.baselines._baselines", lambda args: seen.update(vars(args)) or 0)
    assert main(["baselines"]) == 0
    assert seen["data"] == str(tmp_path / "env-home" / "data" / "labelled")
    assert main(["--home", str(tmp_path / "flag-home"), "baselines"]) == 0
    assert seen["data"] == str(tmp_path / "flag-home" / "data" / "labelled")
    assert seen["output"] == str(tmp_path / "flag-home" / "reports")
    assert paths.home() == tmp_path / "env-home"  # the flag lasts one command


def test_a_missing_home_is_a_usage_error(tmp_path, capsys):
    assert main(["--home", str(tmp_path / "nope"), "normalize", "x"]) == 2
    assert capsys.readouterr().err == f"reportguard: error: --home {tmp_path / 'nope'}: no such folder\n"


def test_only_the_projects_own_errors_become_one_line(monkeypatch, capsys):
    from reportguard.core.errors import InputError, UsageError

    def failing(exc):
        def handler(args):
            raise exc
        return handler
    monkeypatch.setattr("reportguard.commands.normalize._normalize", failing(InputError("in.csv: line 3: bad\nrow")))
    assert main(["normalize", "x"]) == 1
    assert capsys.readouterr().err == "reportguard: error: in.csv: line 3: bad row\n"
    monkeypatch.setattr("reportguard.commands.normalize._normalize", failing(UsageError("--a needs --b")))
    assert main(["normalize", "x"]) == 2
    monkeypatch.setattr("reportguard.commands.normalize._normalize", failing(KeyError("a bug")))
    with pytest.raises(KeyError):  # not a one-liner: the traceback shows
        main(["normalize", "x"])
    monkeypatch.setattr("reportguard.commands.normalize._normalize", failing(ValueError("another bug")))
    with pytest.raises(ValueError):
        main(["normalize", "x"])


def test_bundle_record_and_scorer_errors_are_the_projects_own():
    from reportguard.core import records
    from reportguard.core.errors import InputError, ReportguardError
    from reportguard.review.runs import RunError
    from reportguard.serve.bundle import BundleError, GraphError
    from reportguard.serve.score import ScoreError
    for cls in (records.InputError, records.ReadError, BundleError, GraphError, RunError):
        assert issubclass(cls, InputError) and cls.exit_code == 1
    assert issubclass(ScoreError, ReportguardError) and ScoreError.exit_code == 1


# --- the README's commands exist ----------------------------------------------------------------

README = ROOT / "README.md"


def readme_commands() -> tuple[list[str], list[str]]:
    """(lines of ```bash blocks that run reportguard, inline `reportguard ...` code spans)."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()
             if re.match(r"(\.venv/bin/)?reportguard\s", line.strip())]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = [" ".join(s.split()) for s in re.findall(r"`((?:\.venv/bin/)?reportguard\s[^`]*)`", prose)]
    return lines, spans


def words(command: str) -> list[str]:
    """The arguments after `reportguard`; `[--opt VALUE]` (optional parts) are kept, unbracketed."""
    args = shlex.split(command.replace("[", " ").replace("]", " "), comments=True)
    return args[1:]


def unknown_names(args: list[str]) -> list[str]:
    """Subcommands and --flags in `args` that the CLI does not have (values are not checked)."""
    parser, bad, skip = build_parser(), [], 0
    for arg in args:
        if skip or arg == "...":
            skip -= bool(skip)
            continue
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            action = parser._option_string_actions.get(name)
            if action is None:
                bad.append(name)
            elif "=" not in arg and action.nargs in (None, 1):
                skip = 1  # its value
            continue
        children = subcommands(parser)
        if children:
            if arg not in children and not any(a.choices and arg in a.choices for a in parser._actions
                                                if not isinstance(a, argparse._SubParsersAction)):
                bad.append(arg)
                break
            parser = children.get(arg, parser)
    return bad


def test_the_readme_names_commands_and_flags_that_exist():
    lines, spans = readme_commands()
    assert len(lines) >= 10 and len(spans) >= 5  # the scan finds them
    problems = {c: unknown_names(words(c)) for c in lines + spans}
    assert not {c: p for c, p in problems.items() if p}


def test_the_readme_bash_commands_parse_as_written():
    parser = build_parser()
    lines, _ = readme_commands()
    for line in lines:
        try:
            parser.parse_args(words(line))
        except SystemExit as exc:  # --version and --help exit 0 after printing
            if exc.code:
                pytest.fail(f"README: `{line}` does not parse")


def test_the_readme_check_catches_what_does_not_exist():
    assert unknown_names(words("reportguard bench scale --rows 1000")) == []
    assert unknown_names(words("reportguard bench scale --no-such-flag 1")) == ["--no-such-flag"]
    assert unknown_names(words("reportguard frobnicate x")) == ["frobnicate"]
    assert unknown_names(words("reportguard review queue r --out q.jsonl")) == []
    assert unknown_names(words("reportguard review nope")) == ["nope"]


# --- score: inputs first, hashing while reading, a summary, exit codes ------------------------

def test_a_missing_input_is_named_before_the_bundle_loads(tmp_path):
    res = run("score", str(tmp_path / "missing.csv"), "--output", str(tmp_path / "o.parquet"),
              "--model", str(tmp_path / "no-bundle"))
    assert res.returncode == 1
    assert res.stderr == f"reportguard: error: {tmp_path / 'missing.csv'}: no such file or directory\n"
    res = run("score", str(ROOT / "data" / "sample" / "platform_export.csv"), "--output", str(tmp_path / "o.txt"),
              "--model", str(tmp_path / "no-bundle"))
    assert res.returncode == 2 and "must end in .parquet, .jsonl or .csv" in res.stderr


def test_score_summary_names_output_rejects_and_manifest(tiny_bundle, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("listing_id,title\n1,代办质检报告 当天出\n2,\n3,不锈钢保温杯\n", encoding="utf-8")
    out = tmp_path / "o.parquet"
    res = run("score", str(src), "--output", str(out), "--model", str(tiny_bundle), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "scored 2 of 3 rows (1 rejected" in res.stdout
    assert f"output:    {out}\n" in res.stdout
    assert f"rejects:   {out}.rejects.jsonl (1 rows)" in res.stdout
    assert f"manifest:  {out}.manifest.json" in res.stdout
    assert "{" not in res.stdout  # words, not a Python dict


def test_a_run_whose_every_row_is_rejected_exits_1(tiny_bundle, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"listing_id": "1", "title": ""}\n{"listing_id": "2", "title": 42}\n', encoding="utf-8")
    out = tmp_path / "o.jsonl"
    res = run("score", str(src), "--output", str(out), "--model", str(tiny_bundle), "--quiet")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1] == (f"reportguard: error: all 2 input rows were rejected; "
                                                   f"the reasons are in {out}.rejects.jsonl")
    assert out.exists() and Path(f"{out}.manifest.json").exists()  # the run's files are still written
    empty = tmp_path / "empty.csv"
    empty.write_text("listing_id,title\n", encoding="utf-8")
    assert run("score", str(empty), "--output", str(tmp_path / "e.jsonl"), "--model", str(tiny_bundle), "--quiet").returncode == 0


def test_inputs_are_hashed_while_they_are_read_not_in_a_pass_before(tiny_bundle, tmp_path, monkeypatch):
    import gzip

    import reportguard.serve.score as scoring
    rows = [json.loads(l) for l in (ROOT / "data" / "labelled" / "test.jsonl").read_text(encoding="utf-8").splitlines()][:30]
    src = tmp_path / "in.jsonl.gz"
    src.write_bytes(gzip.compress("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")))
    plain = tmp_path / "in.csv"
    plain.write_text("listing_id,title\nx1,代办质检报告\n", encoding="utf-8")
    opened = []
    real_open = gzip.open

    def no_pass_before(*args, **kwargs):  # the reader opens .gz through the tap, never gzip.open
        opened.append(args[0])
        return real_open(*args, **kwargs)
    monkeypatch.setattr(scoring, "sha256_file", lambda path: pytest.fail(f"{path} hashed in a separate pass"))
    monkeypatch.setattr(gzip, "open", no_pass_before)
    manifest = scoring.score([str(src), str(plain)], tmp_path / "o.parquet",
                             scoring.ScoreOptions(model=str(tiny_bundle), threads=1, progress=False))
    assert opened == []
    assert manifest["inputs"] == [
        {"path": str(src), "bytes": src.stat().st_size, "sha256": hashlib.sha256(src.read_bytes()).hexdigest()},
        {"path": str(plain), "bytes": plain.stat().st_size, "sha256": hashlib.sha256(plain.read_bytes()).hexdigest()}]
    assert manifest["rows"]["accepted"] == 31


def test_the_progress_bar_counts_bytes_read_for_text_input_and_rows_for_parquet(tmp_path):
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    from reportguard.core.records import ReadOptions, iter_chunks
    from reportguard.serve.score import InputTap
    src = tmp_path / "in.csv.gz"
    src.write_bytes(gzip.compress(("listing_id,title\n" + "".join(f"{i},检测报告{i}\n" for i in range(500))).encode()))
    tap = InputTap([src])
    assert tap.unit == "bytes" and tap.progress_total() == src.stat().st_size  # compressed bytes: known at once
    weights = [tap.chunk_weight(c) for c in iter_chunks([src], ReadOptions(chunk_size=100, on_bytes=tap))]
    assert sum(weights) == src.stat().st_size
    table = tmp_path / "in.parquet"
    pq.write_table(pa.table({"listing_id": ["1", "2"], "title": ["a", "b"]}), table)
    assert InputTap([table]).unit == "rows" and InputTap([table]).progress_total() == 2
