"""The Spark engine: the local scorer's output row for row, and task retries that neither lose
nor duplicate rows. Spark runs in local mode (local[2,4]: two cores, a task may fail 4 times).

Skipped where pyspark or Java is missing, unless CI is set: there they fail instead.
"""
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reportguard.core.records import InputError
from reportguard.serve.bundle import seal_bundle, sha256_file
from reportguard.serve.outputs import read_run
from reportguard.serve.score import ScoreOptions, score

ROOT = Path(__file__).resolve().parents[1]


def _missing() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install -e '.[spark]')"
    java = Path(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
    if not java or not Path(java).exists() or subprocess.run([str(java), "-version"], capture_output=True).returncode != 0:
        return "no Java runtime (bash .ci/install-java.sh installs openjdk-17-jre-headless)"
    return None


MISSING = _missing()
pytestmark = [pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]
if MISSING and not os.environ.get("CI"):
    pytestmark.append(pytest.mark.skip(reason=f"Spark tests need pyspark and Java 17+: {MISSING}"))


@pytest.fixture(scope="module")
def spark():
    if MISSING:
        pytest.fail(f"CI is set, so the Spark tests must run: {MISSING}")
    from reportguard.serve.spark_engine import spark_session
    session = spark_session("local[2,4]", {
        "spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2", "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false", "spark.sql.execution.arrow.maxRecordsPerBatch": "200"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def fp32_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle running its fp32 model. The int8 model quantises activations with one
    scale per batch, so a text's probabilities move (~1e-3) with the texts batched beside it, in
    the local scorer too; fp32 gives the same numbers in any batch, so engines compare to 1e-6."""
    dst = tmp_path_factory.mktemp("fp32") / "bundle"
    shutil.copytree(tiny_bundle, dst, ignore=shutil.ignore_patterns("hf"))
    if (dst / "model_fp32.onnx").exists():
        shutil.copyfile(dst / "model_fp32.onnx", dst / "model.onnx")
        meta = json.loads((dst / "bundle.json").read_text(encoding="utf-8"))
        meta["files"]["model.onnx"] = sha256_file(dst / "model.onnx")
        meta["precision"] = "fp32"
        (dst / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    seal_bundle(dst)  # an edited bundle.json must be re-sealed, or it refuses to load
    return dst


def opts(bundle) -> ScoreOptions:
    return ScoreOptions(model=str(bundle), progress=False, threads=1)


def train_rows() -> list[dict]:
    return [json.loads(l) for l in (ROOT / "data" / "labelled" / "train.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def listings(tmp_path_factory) -> list[str]:
    """~4,200 listings in three formats: the train split, 400 of them re-posted under new ids, the
    GB18030 sample export (multi-line fields, a broken quote) and rows that must be rejected."""
    folder = tmp_path_factory.mktemp("listings")
    rows = train_rows()
    rows += [dict(r, listing_id=f"repost-{i}") for i, r in enumerate(rows[::8][:400])]
    first, second = rows[:2600], rows[2600:]
    bad = ['{"listing_id": "bad-1", "title": ""}', '{"listing_id": "bad-2", "title": 42}', "{oops", "[1, 2]", "",
           json.dumps({"listing_id": first[5]["listing_id"], "title": "重复的编号 检测报告代做"}, ensure_ascii=False),
           '{"listing_id": "bad-3", "title": "nul\\u0000byte"}', '{"listing_id": 12345, "title": "整数编号 CMA报告代做"}']
    lines = [json.dumps(r, ensure_ascii=False) for r in first[:1300]] + bad + [json.dumps(r, ensure_ascii=False) for r in first[1300:]]
    (folder / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for r in second:  # Parquet: list columns as text, one id repeated from the JSONL file
        r["labels"], r["tags"] = "|".join(r["labels"]), "|".join(r["tags"])
    second.append(dict(second[0], listing_id=first[7]["listing_id"]))
    pq.write_table(pa.Table.from_pylist(second), folder / "b.parquet")
    shutil.copyfile(ROOT / "data" / "sample" / "platform_export.csv", folder / "c.csv")
    return [str(folder / "a.jsonl"), str(folder / "b.parquet"), str(folder / "c.csv")]


def assert_same_rows(spark_rows: list[dict], local_rows: list[dict]) -> None:
    local = {r["listing_id"]: r for r in local_rows}
    assert sorted(r["listing_id"] for r in spark_rows) == sorted(local)  # every id once, no other
    for row in spark_rows:
        expected = local[row["listing_id"]]
        assert list(row) == list(expected)
        for column, value in row.items():
            if column.startswith("p_"):
                assert abs(value - expected[column]) <= 1e-6, (row["listing_id"], column)
            elif column == "evidence":
                assert json.loads(value) == json.loads(expected[column]), row["listing_id"]
            else:
                assert value == expected[column], (row["listing_id"], column)


@pytest.mark.parametrize("dedup", ["global", pytest.param("partition", marks=pytest.mark.slow)])
def test_spark_output_equals_local_scorer(spark, fp32_bundle, listings, tmp_path, dedup):
    from reportguard.serve.spark_engine import read_spark_rejects, read_spark_run, score_spark
    local = score(listings, tmp_path / "local.parquet", opts(fp32_bundle))
    manifest = score_spark(listings, str(tmp_path / "spark.parquet"), opts(fp32_bundle), spark, dedup=dedup)

    assert_same_rows(read_spark_run(tmp_path / "spark.parquet"), read_run(tmp_path / "local.parquet"))
    rows = manifest["rows"]
    assert rows["in"] == rows["accepted"] + rows["rejected"] == local["rows"]["in"] > 4000
    assert (rows["accepted"], rows["rejected"], rows["unique"]) == (local["rows"]["accepted"], local["rows"]["rejected"], local["rows"]["unique"])
    assert rows["inferred"] == rows["unique"] if dedup == "global" else rows["inferred"] > rows["unique"]
    assert manifest["decisions"] == local["decisions"] and manifest["labels"] == local["labels"]
    local_rejects = [json.loads(l) for l in (tmp_path / "local.parquet.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert read_spark_rejects(tmp_path / "spark.parquet") == local_rejects  # same reasons, files, lines, in order
    assert {r["listing_id"] for r in local_rejects} >= {"bad-1", "bad-2", "bad-3"}
    assert sorted((tmp_path / "spark.parquet").glob("decision=*")), "partitioned by decision"


def test_injected_task_failure_neither_loses_nor_duplicates_rows(spark, fp32_bundle, tmp_path):
    from reportguard.serve.spark_engine import read_spark_run, score_spark
    src = tmp_path / "in.jsonl"
    rows = train_rows()[:700]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    score([str(src)], tmp_path / "local.parquet", opts(fp32_bundle))
    markers = tmp_path / "markers"
    markers.mkdir()
    # Scoring task 0 (of 2, ~350 rows, 200-row batches) hands its first batch to the Parquet
    # writer, then dies; Spark retries it (local[2,4] allows 4 attempts).
    manifest = score_spark([str(src)], str(tmp_path / "out"), opts(fp32_bundle), spark, partitions=2,
                           inject_failure=(0, str(markers)))
    assert [p.name for p in markers.iterdir()] == ["failed-p0-a0"], "the injected failure did not happen"
    assert_same_rows(read_spark_run(tmp_path / "out"), read_run(tmp_path / "local.parquet"))
    assert manifest["rows"]["in"] == manifest["rows"]["accepted"] == 700
    assert manifest["rows"]["inferred"] == manifest["rows"]["unique"]  # the failed attempt's counts are dropped too
    assert not list((tmp_path / "out").rglob("_temporary")), "uncommitted task output left behind"


def test_bundle_shipped_as_archive(spark, fp32_bundle, tmp_path):
    """--archives bundle.tar.gz#NAME: workers find the bundle under NAME (SparkFiles)."""
    from reportguard.serve.spark_engine import read_spark_run, score_spark
    archive = tmp_path / "bundle.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fp32_bundle, arcname=".")
    spark.sparkContext.addArchive(f"{archive}#rgbundle")
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train_rows()[:150]), encoding="utf-8")
    score([str(src)], tmp_path / "local.parquet", opts(fp32_bundle))
    score_spark([str(src)], str(tmp_path / "out"), ScoreOptions(model="rgbundle", progress=False, threads=1), spark)
    assert_same_rows(read_spark_run(tmp_path / "out"), read_run(tmp_path / "local.parquet"))


def test_missing_column_stops_before_any_work_with_the_local_message(spark, fp32_bundle, tmp_path):
    from reportguard.serve.spark_engine import score_spark
    src = tmp_path / "in.csv"
    src.write_text("listing_id,name_of_item\n1,质检报告代办\n", encoding="utf-8")
    with pytest.raises(InputError) as local:
        score([str(src)], tmp_path / "local.parquet", opts(fp32_bundle))
    with pytest.raises(InputError) as spark_error:
        score_spark([str(src)], str(tmp_path / "out"), opts(fp32_bundle), spark)
    assert str(spark_error.value) == str(local.value)
    assert "required column 'title' is missing" in str(local.value)
    assert not (tmp_path / "out").exists()


def test_refuses_to_replace_a_folder_it_did_not_write(spark, fp32_bundle, tmp_path):
    from reportguard.serve.spark_engine import score_spark
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"listing_id": "1", "title": "检测报告"}, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an output of the Spark engine"):
        score_spark([str(src)], str(tmp_path / "precious"), opts(fp32_bundle), spark)
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"


def _cli_has_engine() -> bool:
    from reportguard.cli import build_parser
    return hasattr(build_parser().parse_args(["score", "in.csv", "--output", "out"]), "engine")


@pytest.mark.skipif(not _cli_has_engine(), reason="reportguard/cli.py does not call add_spark_options yet")
def test_cli_score_engine_spark(spark, fp32_bundle, tmp_path, capsys):
    """`reportguard score --engine spark` on the sample export, as docs/spark.md shows it."""
    from reportguard.cli import main
    from reportguard.serve.spark_engine import read_spark_run
    out = tmp_path / "scored.parquet"
    sample = str(ROOT / "data" / "sample" / "platform_export.csv")
    assert main(["score", "--engine", "spark", "--master", "local[2]", sample, "--output", str(out),
                 "--model", str(fp32_bundle), "--threads", "1", "--quiet"]) == 0
    assert "512 rows in, 510 scored, 2 rejected" in capsys.readouterr().out  # the row with no title has a description
    score([sample], tmp_path / "local.parquet", opts(fp32_bundle))
    assert_same_rows(read_spark_run(out), read_run(tmp_path / "local.parquet"))
