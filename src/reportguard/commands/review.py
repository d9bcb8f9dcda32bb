"""`reportguard review ...`: the reviewer audit loop. Its parsers and handlers are review/cli.py's
(FastAPI, SQLAlchemy and scikit-learn imported in the handlers); here it joins the registry and
gets a description and examples for every subcommand, and `--output` for `--out`."""
from __future__ import annotations

from . import adopt_output_flags, describe, subcommands

DESCRIPTIONS: dict[str, tuple[str, list[str]]] = {
    "queue": ("A review batch from a scored run: stratified (weighted, for unbiased precision and recall\n"
              "estimates), uncertainty (nearest the thresholds) or top (most severe first).",
              ["reportguard review queue runs/sample/scored.parquet --size 50 --strategy stratified --output reviews/q1.jsonl"]),
    "serve": ("The keyboard-driven reviewer web UI (1-4 labels, s save, ? help), on this machine only\n"
              "(--local-only) or with reviewer tokens, over HTTPS or behind a TLS proxy.",
              ["reportguard review serve reviews/q1.jsonl --local-only",
               "reportguard review serve reviews/q1.jsonl --tokens reviews/tokens.txt --behind-tls"]),
    "load": ("Store queue files in the verdict store without serving (loading twice is harmless).",
             ["reportguard review load reviews/q1.jsonl reviews/q2.jsonl"]),
    "tokens": ("Add reviewers, each with a fresh random token, to a tokens file (mode 0600).",
               ["reportguard review tokens alice bob --adjudicator carol --output reviews/tokens.txt"]),
    "export": ("Final verdicts as corpus-format records for retraining, and precision/recall estimates\n"
               "(weighted when the queue was stratified) for `reportguard report --precision`.",
               ["reportguard review export --labelled reviews/labelled.jsonl --precision reviews/precision.json"]),
    "db": ("Verdict store maintenance.", ["reportguard review db upgrade"]),
    "labelstudio-export": ("A queue as Label Studio tasks with the model's predictions, and the labelling config\n"
                           "(Chinese label names, hotkeys) beside them as .xml.",
                           ["reportguard review labelstudio-export reviews/q1.jsonl --output reviews/q1.tasks.json"]),
    "labelstudio-import": ("Label Studio annotations (its JSON export) stored as verdicts, beside the web UI's.",
                           ["reportguard review labelstudio-import export.json --queue reviews/q1.jsonl"]),
    "noise": ("Rank labelled corpus rows most likely mislabelled: out-of-fold TF-IDF probabilities and\n"
              "cleanlab, written as a Markdown report.",
              ["reportguard review noise --output reports/label_noise.md"]),
}


def register(subparsers) -> None:
    from reportguard.review.cli import add_review_commands  # argparse only: every module loads in its handler
    review = add_review_commands(subparsers)
    describe(review, "Review what the model flagged: build queues from a scored run, review them in the web UI\n"
                     "or Label Studio, and export verdicts as training data and precision estimates.",
             ["reportguard review queue runs/sample/scored.parquet --size 50 --output reviews/q1.jsonl",
              "reportguard review serve reviews/q1.jsonl --local-only"])
    for name, parser in subcommands(review).items():
        description, examples = DESCRIPTIONS.get(name, (None, [f"reportguard review {name} --help"]))
        describe(parser, description, examples)
    db = subcommands(review).get("db")
    if db is not None:
        for name, parser in subcommands(db).items():
            describe(parser, "Run the verdict store's Alembic migrations up to the latest revision.",
                     [f"reportguard review db {name}", f"reportguard review db {name} --db postgresql+psycopg://user@host/reviews"])
    adopt_output_flags(review)
