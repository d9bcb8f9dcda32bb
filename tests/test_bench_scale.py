"""The scale benchmark's summary: the 12M-row extrapolation and the table it renders (the runs
themselves take minutes to hours and are made by `reportguard bench scale`, not by tests)."""
from reportguard.train.bench.scale import extrapolate, render_scale

BUDGET = {"memory_texts": 100_000, "memory_ids": 250_000}


def run(rows, rss, **extra):
    return {"rows": rows, "unique": int(rows * 0.7), "seconds": rows / 2000, "rows_per_second": 2000.0, "peak_rss_mb": rss,
            "model_seconds": rows / 10_000, "memory_budget": BUDGET, "date": "2026-12-06", **extra}


def test_the_line_goes_through_the_runs_past_the_spill_thresholds():
    runs = [run(100_000, 900.0), run(1_000_000, 600.0), run(5_000_000, 640.0)]
    e = extrapolate(runs)
    assert "300,000" not in e["basis"] and "1,000,000, 5,000,000" in e["basis"]  # the 100k run is before the spill
    assert abs(e["peak_rss_mb"] - (600 + 40 * 11 / 4)) < 1e-6
    assert abs(e["bytes_per_row"] - 40 / 4_000_000 * 1024 * 1024) < 1e-6


def test_the_table_names_each_runs_model_and_load_and_keeps_its_note():
    runs = [run(1_000_000, 600.0, model_version="tiny-a"),
            run(5_000_000, 640.0, model_version="tiny-b", load_average_1min={"start": 3.2, "end": 2.9}, note="shared cores")]
    text = render_scale({"model": "/x/tiny-b", "threads": 2, "memory_budget": BUDGET, "runs": runs, "extrapolation": extrapolate(runs)})
    assert "| 1,000,000 | 700,000 |" in text and "`tiny-a`" in text and "not recorded" in text
    assert "3.2 → 2.9" in text and "5,000,000 rows: shared cores" in text
    assert "within the 2,048 MB goal" in text and "No 5M-row run yet" not in text
    assert "No 5M-row run yet" in render_scale({"model": "/x", "threads": 2, "memory_budget": BUDGET, "runs": runs[:1],
                                                "extrapolation": extrapolate(runs[:1])})
