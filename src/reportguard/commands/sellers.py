"""`reportguard sellers RUN`: the seller roll-up (its parser and handler: serve/sellers.py)."""
from __future__ import annotations

from . import adopt_output_flags, describe


def register(subparsers) -> None:
    from reportguard.serve.sellers import add_sellers_command  # stdlib and core only: no pyarrow until a run is read
    p = add_sellers_command(subparsers)
    describe(p, "One row per seller (platform + shop_id, else platform + shop_name) of a scored run, worst\n"
                "offenders first: listings, counts per label and decision, flagged listings, maximum\n"
                "severity, sample listing ids. Streams the run; memory grows with sellers, not rows.",
             ["reportguard sellers runs/nov/scored.parquet",
              "reportguard sellers runs/nov/scored.parquet --output runs/nov/sellers.parquet --samples 10"])
    adopt_output_flags(p)
