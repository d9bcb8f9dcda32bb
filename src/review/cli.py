"""`reportguard review ...`: the reviewer audit loop on the command line.

    reportguard review queue RUN --size 50 --strategy stratified --out reviews/q1.jsonl
    reportguard review tokens alice bob --adjudicator carol --out reviews/tokens.txt
    reportguard review serve reviews/q1.jsonl --tokens reviews/tokens.txt      # or --local-only
    reportguard review serve reviews/q1.jsonl --tokens reviews/tokens.txt --behind-tls   # behind nginx/Caddy
    reportguard review export --labelled reviews/labelled.jsonl --precision reviews/precision.json
    reportguard review labelstudio-export reviews/q1.jsonl --out reviews/q1.tasks.json
    reportguard review labelstudio-import export.json --queue reviews/q1.jsonl
    reportguard review noise --out reports/label_noise.md
    reportguard review db upgrade

`add_review_commands(subparsers)` adds the `review` command to reportguard's parser (through
reportguard/commands/review.py, which adds descriptions and examples). Every module
is imported inside its handler, so `reportguard --help` never loads FastAPI, SQLAlchemy or
scikit-learn. Standalone: `python -m reportguard.review.cli review ...`.
"""
from __future__ import annotations

import argparse
import json
import sys

from reportguard.core.errors import UsageError


def _print(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False, default=str))


def _queue(args: argparse.Namespace) -> int:
    from .queue import make_queue, write_queue
    queue = make_queue(args.run, args.size, args.strategy, seed=args.seed, model_dir=args.model)
    path = write_queue(queue, args.out)
    h = queue.header
    print(f"queue {h['queue_id']}: {h['items']} of {h['run_rows']} listings ({h['strategy']}, model {h['model_version']}, "
          f"thresholds from {h['threshold_source']}) -> {path}")
    if h["weights"]["kind"]:
        for key, s in h["weights"]["strata"].items():
            print(f"  {key:28s} {s['sampled']:4d} of {s['population']:6d}  weight {s['weight'] or 0:.2f}")
    print(f"  {h['weights']['note']}")
    return 0


def _load_queues(store, paths: list[str]) -> None:
    from .queue import read_queue
    for path in paths:
        queue = read_queue(path)
        new = store.load_queue(queue)
        print(f"{'loaded' if new else 'already stored'}: queue {queue.queue_id} ({len(queue.items)} items) from {path}")


def _load(args: argparse.Namespace) -> int:
    from .store import Store
    _load_queues(Store(args.db), args.queues)
    return 0


def _serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from .app import create_app
    from .auth import LOCAL_BIND_HOSTS, Auth, is_loopback, read_tokens
    from .store import Store, safe_url

    if args.local_only and args.host not in LOCAL_BIND_HOSTS:
        # Exactly the names the Host check accepts: a browser must be able to reach us by one of them.
        raise UsageError(f"--local-only lets anyone who reaches the server review under any name; "
                         f"it binds only to the loopback address 127.0.0.1, localhost or ::1, not {args.host}. "
                         "Use --tokens FILE instead.")
    if args.local_only and args.behind_tls:
        raise UsageError("--behind-tls puts the server on the network through a proxy, where --local-only would let "
                         "anyone review under any name; use --tokens FILE instead")
    if not args.local_only and not args.tokens:
        raise UsageError("choose how reviewers log in: --tokens FILE (make one with `reportguard review tokens NAME...`) "
                         "or --local-only (this machine only)")
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise UsageError("HTTPS needs both --ssl-certfile and --ssl-keyfile")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin otherwise
    store = Store(args.db)  # runs the migrations
    _load_queues(store, args.queues)
    auth = Auth(tokens=read_tokens(args.tokens) if args.tokens else None, local_only=args.local_only)
    scheme = "https" if args.ssl_certfile else "http"
    if not is_loopback(args.host) and scheme == "http" and not args.behind_tls:
        print(f"warning: serving on {args.host} over plain HTTP; put a TLS proxy in front (--behind-tls) or give "
              "--ssl-certfile/--ssl-keyfile so tokens are not sent in the clear", file=sys.stderr)
    shown = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address goes in brackets in a URL
    where = "behind your TLS proxy" if args.behind_tls else f"open {scheme}://{shown}:{args.port}/"
    print(f"verdicts in {safe_url(store.url)}; {where} ({'local-only' if args.local_only else 'token'} login); "
          "Ctrl+C stops", file=sys.stderr)
    # Behind a proxy, X-Forwarded-For/-Proto are believed from $FORWARDED_ALLOW_IPS only (uvicorn's
    # default: 127.0.0.1), so the login throttle sees real client addresses; otherwise never.
    uvicorn.run(create_app(store, auth, behind_tls=args.behind_tls), host=args.host, port=args.port, log_level="info",
                proxy_headers=args.behind_tls, ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    return 0


def _tokens(args: argparse.Namespace) -> int:
    from .auth import write_tokens
    made = write_tokens(args.out, args.names + args.adjudicator, adjudicators=args.adjudicator)
    print(f"added {len(made)} reviewer token(s) to {args.out} (mode 0600); hand each reviewer their line:")
    for name, token in made.items():
        print(f"  {name}: {token}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .exporters import estimate_precision, export_labelled, write_json
    from .store import Store
    if not args.labelled and not args.precision:
        raise UsageError("nothing to do: give --labelled OUT.jsonl and/or --precision OUT.json")
    store = Store(args.db)
    if args.labelled:
        _print(export_labelled(store, args.labelled, args.queue or None, args.labelled_dir or None))
    if args.precision:
        document = estimate_precision(store, args.queue or None)
        write_json(document, args.precision)
        for version, model in document["models"].items():
            print(f"model {version}: {model['method']} estimates ({model['counts']['final']} final verdicts, "
                  f"coverage {model['coverage']})")
            for label, m in model["labels"].items():
                p, r = m["precision"], m["recall"]
                print(f"  {label:20s} precision " + (f"{p['estimate']:.3f} [{p['low']:.3f}, {p['high']:.3f}] n={p['reviewed']}" if p else "n/a")
                      + "   recall " + (f"{r['estimate']:.3f} [{r['low']:.3f}, {r['high']:.3f}]" if r else "n/a"))
        print(f"-> {args.precision}")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from .store import Store, current_revision, safe_url
    store = Store(args.db)
    print(f"{safe_url(store.url)}: at revision {current_revision(store.engine)}")
    return 0


def _ls_export(args: argparse.Namespace) -> int:
    from .labelstudio import export_tasks
    from .queue import read_queue
    tasks, config = export_tasks(read_queue(args.queue), args.out)
    print(f"Label Studio tasks -> {tasks}; labelling config -> {config}")
    return 0


def _ls_import(args: argparse.Namespace) -> int:
    from .labelstudio import import_annotations
    from .store import Store
    store = Store(args.db)
    if args.queue:
        _load_queues(store, [args.queue])
    counts = import_annotations(store, args.annotations)
    _print(counts)
    return 1 if counts["unknown_items"] and not counts["verdicts"] else 0


def _noise(args: argparse.Namespace) -> int:
    from .noise import write_report
    _print(write_report(args.data, args.out, folds=args.folds, seed=args.seed, top=args.top))
    return 0


def add_review_commands(subparsers) -> argparse.ArgumentParser:
    """Add `review` and its subcommands to a subparsers object of the reportguard parser."""
    from reportguard.core import paths

    review = subparsers.add_parser("review", help="review queues, the reviewer web UI, verdict exports, label noise")
    sub = review.add_subparsers(dest="review_command", required=True)

    def db_option(p):
        p.add_argument("--db", default=None, help="SQLAlchemy URL of the verdict store (default $REPORTGUARD_REVIEW_DB "
                                                  "or sqlite:///reviews/verdicts.sqlite; PostgreSQL: postgresql+psycopg://...)")

    p = sub.add_parser("queue", help="build a review batch from a scored run")
    p.add_argument("run", help="a `reportguard score` output (.parquet, .jsonl or .csv)")
    p.add_argument("--size", type=int, required=True, help="items in the batch")
    p.add_argument("--strategy", choices=("stratified", "uncertainty", "top"), default="stratified",
                   help="stratified: weighted sample for precision/recall; uncertainty: nearest the thresholds; "
                        "top: most severe first")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--model", default=None, help="model bundle directory: thresholds from its bundle.json (default 0.5)")
    p.add_argument("--out", required=True, help="queue file to write (JSONL)")
    p.set_defaults(func=_queue)

    p = sub.add_parser("serve", help="the reviewer web UI (localhost by default)")
    p.add_argument("queues", nargs="*", help="queue files to load before serving (loading twice is harmless)")
    db_option(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    login = p.add_mutually_exclusive_group()
    login.add_argument("--local-only", action="store_true", help="no tokens: reviewers type a name; loopback only")
    login.add_argument("--tokens", default=None, help="reviewer tokens file (`reportguard review tokens`)")
    p.add_argument("--behind-tls", action="store_true",
                   help="a TLS-terminating proxy (nginx, Caddy) forwards to this server: cookies get Secure, and "
                        "X-Forwarded-For/-Proto are trusted from $FORWARDED_ALLOW_IPS (default 127.0.0.1); "
                        "see src/review/README.md")
    p.add_argument("--ssl-certfile", default=None, help="serve HTTPS directly with this certificate (PEM)")
    p.add_argument("--ssl-keyfile", default=None, help="... and this private key (PEM)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("load", help="store queue files in the verdict store without serving")
    p.add_argument("queues", nargs="+")
    db_option(p)
    p.set_defaults(func=_load)

    p = sub.add_parser("tokens", help="add reviewers with fresh random tokens to a tokens file")
    p.add_argument("names", nargs="*", help="reviewer names (one word each)")
    p.add_argument("--adjudicator", action="append", default=[], help="a reviewer who may also adjudicate (repeatable)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_tokens)

    p = sub.add_parser("export", help="verdicts -> labelled records for retraining and precision estimates")
    db_option(p)
    p.add_argument("--labelled", default=None, help="corpus-format JSONL (add it to data.extra_train to retrain)")
    p.add_argument("--precision", default=None, help="precision/recall estimates JSON for `reportguard report --verdicts`")
    p.add_argument("--queue", action="append", default=[], help="only this queue id (repeatable; default all)")
    p.add_argument("--labelled-dir", default=str(paths.labelled_dir()),
                   help="leave out listings duplicating its validation/test rows ('' to keep all)")
    p.set_defaults(func=_export)

    p = sub.add_parser("db", help="verdict store maintenance")
    db_sub = p.add_subparsers(dest="db_command", required=True)
    q = db_sub.add_parser("upgrade", help="run the Alembic migrations up to the latest revision")
    db_option(q)
    q.set_defaults(func=_db_upgrade)

    p = sub.add_parser("labelstudio-export", help="a queue as Label Studio tasks with predictions (+ labelling config)")
    p.add_argument("queue")
    p.add_argument("--out", required=True, help="tasks JSON; the labelling config goes beside it as .xml")
    p.set_defaults(func=_ls_export)

    p = sub.add_parser("labelstudio-import", help="Label Studio annotations (JSON export) -> verdicts")
    p.add_argument("annotations")
    p.add_argument("--queue", default=None, help="the queue file the tasks came from (stored first if new)")
    db_option(p)
    p.set_defaults(func=_ls_import)

    p = sub.add_parser("noise", help="rank labelled rows most likely mislabelled (TF-IDF CV + cleanlab)")
    p.add_argument("--data", default=str(paths.labelled_dir()))
    p.add_argument("--out", default=str(paths.reports_dir() / "label_noise.md"))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--top", type=int, default=50, help="rows shown in the report")
    p.set_defaults(func=_noise)
    return review


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m reportguard.review.cli review ...`); `reportguard review` registers
    the same parsers through reportguard/commands/review.py."""
    parser = argparse.ArgumentParser(prog="reportguard")
    add_review_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError, LookupError) as exc:
        print(f"reportguard: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
