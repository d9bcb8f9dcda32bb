"""The verdict store: SQLite by default, any SQLAlchemy URL (PostgreSQL for a team) otherwise.

Every query goes through SQLAlchemy's expression language or ORM with bound parameters; there is
no string-built SQL here, so a reviewer name or comment like `'); DROP TABLE verdicts;--` is
stored as the text it is.

Concurrency. Each reviewer writes only their own verdict row (unique on item, reviewer, role), so
two reviewers working at once cannot overwrite each other. On SQLite the store uses WAL (readers
never block the writer), a 30 s busy timeout, and BEGIN IMMEDIATE, which takes the write lock at
the start of a transaction: a deferred transaction that reads and then writes can fail with
"database is locked" when another writer got in between, without waiting. On PostgreSQL a
unique-constraint race (one reviewer double-submitting) is retried once as an update.

The schema is created by Alembic migrations (`upgrade`), run by `reportguard review db upgrade`
and on every `review serve` start.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from reportguard.core import paths
from reportguard.core.labels import ALL_LABEL_NAMES

from .queue import Queue
from .schema import HistoryRow, ItemRow, QueueRow, VerdictRow

HERE = Path(__file__).resolve().parent
ROLES = ("review", "adjudication")
MAX_COMMENT = 5000
MAX_REVIEWER = 100


def default_url() -> str:
    """$REPORTGUARD_REVIEW_DB, else reviews/verdicts.sqlite in the project home (core/paths.py)."""
    return os.environ.get("REPORTGUARD_REVIEW_DB") or f"sqlite:///{paths.under_home('reviews', 'verdicts.sqlite')}"


def safe_url(url: str) -> str:
    """The URL with its password masked, for logs and exports."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    memory = database in ("", ":memory:")
    if not memory:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           poolclass=StaticPool if memory else None)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision` on `engine`'s database."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(HERE / "alembic.ini"))
    config.set_main_option("script_location", str(HERE / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from .schema import VERSION_TABLE
    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Item:
    id: int
    queue_id: str
    position: int
    listing_id: str
    stratum: str
    weight: float | None
    record: dict

    @property
    def predicted(self) -> list[str]:
        return [x for x in ALL_LABEL_NAMES if x in self.record.get("labels", [])]


def decisions_for(predicted: list[str], labels: list[str]) -> dict[str, str]:
    """Per label: accept (predicted, kept), reject (predicted, dropped), add (missed by the model).

    >>> decisions_for(["report_sale", "testing_service"], ["report_sale", "false_ad"])
    {'report_sale': 'accept', 'false_ad': 'add', 'testing_service': 'reject'}
    """
    out = {}
    for label in ALL_LABEL_NAMES:
        if label in predicted:
            out[label] = "accept" if label in labels else "reject"
        elif label in labels:
            out[label] = "add"
    return out


def clean_reviewer(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise ValueError("a reviewer name is required")
    if len(name) > MAX_REVIEWER:
        raise ValueError(f"a reviewer name is at most {MAX_REVIEWER} characters")
    return name


class Store:
    def __init__(self, url: str | None = None, migrate: bool = True):
        self.url = url or default_url()
        self.engine = make_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            upgrade(self.engine)

    def session(self) -> Session:
        return self._sessions()

    def close(self) -> None:
        self.engine.dispose()

    # -- queues and items -------------------------------------------------------------------

    def load_queue(self, queue: Queue) -> bool:
        """Store a queue and its items; False if a queue with this id is already stored."""
        header = queue.header
        with self.session() as s, s.begin():
            if s.get(QueueRow, header["queue_id"]) is not None:
                return False
            s.add(QueueRow(queue_id=header["queue_id"], run_path=header["run"], model_version=header["model_version"],
                           strategy=header["strategy"], seed=int(header["seed"]), created_at=header["created_at"],
                           loaded_at=_now(), header_json=json.dumps(header, ensure_ascii=False)))
            s.flush()
            s.add_all(ItemRow(queue_id=header["queue_id"], position=int(it["position"]), listing_id=it["listing_id"],
                              stratum=it["stratum"], inclusion_probability=it.get("inclusion_probability"),
                              weight=it.get("weight"), record_json=json.dumps(it["record"], ensure_ascii=False))
                      for it in queue.items)
        return True

    def queue_header(self, queue_id: str) -> dict | None:
        with self.session() as s:
            row = s.get(QueueRow, queue_id)
            return json.loads(row.header_json) if row else None

    def queues(self) -> list[dict]:
        """Every stored queue with its item count and how many items have at least one verdict."""
        with self.session() as s:
            counts = dict(s.execute(select(ItemRow.queue_id, func.count()).group_by(ItemRow.queue_id)).all())
            reviewed = dict(s.execute(select(VerdictRow.queue_id, func.count(func.distinct(VerdictRow.item_id)))
                                      .group_by(VerdictRow.queue_id)).all())
            rows = s.scalars(select(QueueRow).order_by(QueueRow.loaded_at, QueueRow.queue_id)).all()
            return [{"queue_id": q.queue_id, "model_version": q.model_version, "strategy": q.strategy,
                     "run": q.run_path, "created_at": q.created_at, "items": counts.get(q.queue_id, 0),
                     "reviewed": reviewed.get(q.queue_id, 0)} for q in rows]

    def item(self, queue_id: str, position: int) -> Item | None:
        with self.session() as s:
            row = s.scalars(select(ItemRow).where(ItemRow.queue_id == queue_id, ItemRow.position == position)).first()
            return _item(row) if row else None

    def item_by_listing(self, queue_id: str, listing_id: str) -> Item | None:
        with self.session() as s:
            row = s.scalars(select(ItemRow).where(ItemRow.queue_id == queue_id,
                                                  ItemRow.listing_id == listing_id)).first()
            return _item(row) if row else None

    def positions(self, queue_id: str) -> list[int]:
        """The queue's positions in order, without loading the listings."""
        with self.session() as s:
            return list(s.scalars(select(ItemRow.position).where(ItemRow.queue_id == queue_id).order_by(ItemRow.position)))

    def items(self, queue_id: str) -> list[Item]:
        with self.session() as s:
            return [_item(r) for r in s.scalars(select(ItemRow).where(ItemRow.queue_id == queue_id)
                                                .order_by(ItemRow.position))]

    # -- verdicts ---------------------------------------------------------------------------

    def save_verdict(self, queue_id: str, position: int, reviewer: str, labels: list[str], comment: str = "",
                     role: str = "review", source: str = "web", at: datetime | None = None) -> dict:
        """Record (or update) `reviewer`'s verdict on one item; returns the stored verdict."""
        reviewer = clean_reviewer(reviewer)
        unknown = [x for x in labels if x not in ALL_LABEL_NAMES]
        if unknown:
            raise ValueError(f"unknown label(s) {unknown}")
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        comment = (comment or "").strip()
        if len(comment) > MAX_COMMENT:
            raise ValueError(f"a comment is at most {MAX_COMMENT} characters")
        item = self.item(queue_id, position)
        if item is None:
            raise LookupError(f"queue {queue_id!r} has no item {position}")
        labels = [x for x in ALL_LABEL_NAMES if x in labels]
        decisions = decisions_for(item.predicted, labels)
        model_version = str(item.record.get("model_version") or (self.queue_header(queue_id) or {}).get("model_version", ""))
        for attempt in (1, 2):
            try:
                return self._upsert(item, reviewer, role, labels, decisions, comment, source, model_version, at or _now())
            except IntegrityError:
                # Another request by the same reviewer inserted the row first: update it instead.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _upsert(self, item: Item, reviewer: str, role: str, labels: list[str], decisions: dict, comment: str,
                source: str, model_version: str, at: datetime) -> dict:
        with self.session() as s, s.begin():
            row = s.scalars(select(VerdictRow).where(VerdictRow.item_id == item.id, VerdictRow.reviewer == reviewer,
                                                     VerdictRow.role == role)).first()
            if row is None:
                row = VerdictRow(item_id=item.id, queue_id=item.queue_id, listing_id=item.listing_id,
                                 model_version=model_version, reviewer=reviewer, role=role, created_at=at)
                s.add(row)
            row.labels_json = json.dumps(labels)
            row.decisions_json = json.dumps(decisions)
            row.comment = comment
            row.source = source
            row.updated_at = at
            s.flush()
            s.add(HistoryRow(verdict_id=row.id, item_id=item.id, reviewer=reviewer, role=role,
                             labels_json=row.labels_json, decisions_json=row.decisions_json, comment=comment,
                             source=source, recorded_at=at))
            return _verdict(row, item.position)

    def verdict(self, queue_id: str, position: int, reviewer: str, role: str = "review") -> dict | None:
        with self.session() as s:
            row = s.execute(select(VerdictRow, ItemRow.position).join(ItemRow, ItemRow.id == VerdictRow.item_id)
                            .where(ItemRow.queue_id == queue_id, ItemRow.position == position,
                                   VerdictRow.reviewer == reviewer, VerdictRow.role == role)).first()
            return _verdict(*row) if row else None

    def verdicts(self, queue_id: str | None = None) -> list[dict]:
        """Every verdict (both roles), oldest first, with the item's position."""
        query = (select(VerdictRow, ItemRow.position).join(ItemRow, ItemRow.id == VerdictRow.item_id)
                 .order_by(VerdictRow.created_at, VerdictRow.id))
        if queue_id is not None:
            query = query.where(VerdictRow.queue_id == queue_id)
        with self.session() as s:
            return [_verdict(v, pos) for v, pos in s.execute(query).all()]

    def history(self, item_id: int | None = None) -> list[dict]:
        query = select(HistoryRow).order_by(HistoryRow.id)
        if item_id is not None:
            query = query.where(HistoryRow.item_id == item_id)
        with self.session() as s:
            return [{"verdict_id": h.verdict_id, "item_id": h.item_id, "reviewer": h.reviewer, "role": h.role,
                     "labels": json.loads(h.labels_json), "comment": h.comment, "source": h.source,
                     "recorded_at": h.recorded_at} for h in s.scalars(query)]

    def reviewed_positions(self, queue_id: str, reviewer: str) -> set[int]:
        with self.session() as s:
            return set(s.scalars(select(ItemRow.position).join(VerdictRow, VerdictRow.item_id == ItemRow.id)
                                 .where(ItemRow.queue_id == queue_id, VerdictRow.reviewer == reviewer,
                                        VerdictRow.role == "review")))

    def next_unreviewed(self, queue_id: str, reviewer: str, after: int = -1) -> int | None:
        """The first position after `after` (wrapping round) that `reviewer` has not reviewed."""
        done = self.reviewed_positions(queue_id, reviewer)
        positions = self.positions(queue_id)
        todo = [p for p in positions if p not in done]
        later = [p for p in todo if p > after]
        return (later or todo or [None])[0]

    def verdicts_by_item(self, queue_id: str) -> dict[int, dict[str, list[dict]]]:
        """position -> {"review": [...], "adjudication": [...]}"""
        grouped: dict[int, dict[str, list[dict]]] = defaultdict(lambda: {"review": [], "adjudication": []})
        for v in self.verdicts(queue_id):
            grouped[v["position"]][v["role"]].append(v)
        return dict(grouped)


def _item(row: ItemRow) -> Item:
    return Item(id=row.id, queue_id=row.queue_id, position=row.position, listing_id=row.listing_id,
                stratum=row.stratum, weight=row.weight, record=json.loads(row.record_json))


def _verdict(row: VerdictRow, position: int) -> dict:
    return {"id": row.id, "item_id": row.item_id, "queue_id": row.queue_id, "position": position,
            "listing_id": row.listing_id, "model_version": row.model_version, "reviewer": row.reviewer,
            "role": row.role, "labels": json.loads(row.labels_json), "decisions": json.loads(row.decisions_json),
            "comment": row.comment, "source": row.source, "created_at": row.created_at, "updated_at": row.updated_at}
