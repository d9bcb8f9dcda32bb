"""`reportguard distill --teacher DIR`: students of the shipped model and the route through them (train/distill/)."""
from __future__ import annotations

import argparse

from . import add_output, command


def register(subparsers) -> None:
    p = command(subparsers, "distill", help="distil cheaper students of a bundle and ship the tiered route -> models/, reports/distill/",
                description="Build a transfer set (train rows, ordinary listings, seeded variants), label it with the teacher\n"
                            "bundle, train tier 1 (hashed character n-grams) and tier 2 (a few of the teacher's own layers),\n"
                            "fit routing margins on validation so that no validation decision moves against the teacher,\n"
                            "gate the route on every evaluation set, and write a tiered bundle (models/current points at it).\n"
                            "The bundle ships teacher-only, with the reason in bundle.json, when the gate fails.",
                examples=["reportguard distill --teacher models/current",
                          "reportguard distill --teacher models/current --config configs/distill_e5_small.yaml --set tier2.max_seconds=600",
                          "reportguard distill --refit models/current --set routing.fit_on=validation"])
    p.add_argument("--teacher", default=None, metavar="DIR", help="the teacher bundle (default: the config's, models/current)")
    p.add_argument("--config", default="configs/distill_e5_small.yaml", metavar="YAML", help="distillation config (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set transfer.size=50000 (repeatable)")
    p.add_argument("--refit", default=None, metavar="DIR",
                   help="fit the margins of an existing tiered bundle again (with the config's routing section), gate and reseal it; no training")
    add_output(p, default=None, metavar="DIR", help="models folder for the tiered bundle (default: the config's output.models_dir)")
    p.set_defaults(func=_distill)


def _distill(args: argparse.Namespace) -> int:
    from reportguard.train.distill.config import load_distill_config
    from reportguard.train.distill.pipeline import distill
    overrides = list(args.overrides)
    if args.teacher:
        overrides.append(f"teacher={args.teacher}")
    if args.output:
        overrides.append(f"output.models_dir={args.output}")
    config = load_distill_config(args.config, overrides)
    if args.refit:
        from pathlib import Path
        from reportguard.train.distill.pipeline import refit
        print(refit(Path(args.refit), config))
        return 0
    print(distill(config))
    return 0
