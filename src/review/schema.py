"""The verdict store's tables, as SQLAlchemy models.

The database schema itself is created and changed only by the Alembic migrations in
migrations/versions/ (tests/test_review_store.py checks that the migrations and these models
agree), so a team database can be upgraded in place without losing verdicts.

- `queues`, `items`: review batches as `reportguard review queue` wrote them; an item keeps the
  whole scored row (JSON) so a verdict can always be traced back to what the reviewer saw.
- `verdicts`: one row per (item, reviewer, role). Two reviewers never write the same row, so
  neither can overwrite the other; a reviewer who changes their mind updates their own row.
  `role` is "review" or "adjudication" (the final word on a disagreement).
- `verdict_history`: every save appended, never updated: the audit trail.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

VERSION_TABLE = "reportguard_review_version"  # not "alembic_version": a shared database may hold other apps


class Base(DeclarativeBase):
    pass


class QueueRow(Base):
    __tablename__ = "queues"
    queue_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_path: Mapped[str] = mapped_column(Text)
    model_version: Mapped[str] = mapped_column(String(200))
    strategy: Mapped[str] = mapped_column(String(20))
    seed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[str] = mapped_column(String(40))  # as the queue file says, ISO 8601
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    header_json: Mapped[str] = mapped_column(Text)


class ItemRow(Base):
    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("queue_id", "position", name="uq_items_queue_position"),
                      UniqueConstraint("queue_id", "listing_id", name="uq_items_queue_listing"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    queue_id: Mapped[str] = mapped_column(String(64), ForeignKey("queues.queue_id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    listing_id: Mapped[str] = mapped_column(String(200))
    stratum: Mapped[str] = mapped_column(String(64))
    inclusion_probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    weight: Mapped[float | None] = mapped_column(Float, nullable=True)
    record_json: Mapped[str] = mapped_column(Text)


class VerdictRow(Base):
    __tablename__ = "verdicts"
    __table_args__ = (UniqueConstraint("item_id", "reviewer", "role", name="uq_verdicts_item_reviewer_role"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(Integer, ForeignKey("items.id"), index=True)
    queue_id: Mapped[str] = mapped_column(String(64), index=True)
    listing_id: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(200))
    reviewer: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    labels_json: Mapped[str] = mapped_column(Text)  # labels the reviewer says the listing has
    decisions_json: Mapped[str] = mapped_column(Text)  # label -> accept / reject / add
    comment: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(40))  # web, labelstudio, api
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HistoryRow(Base):
    __tablename__ = "verdict_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    verdict_id: Mapped[int] = mapped_column(Integer, index=True)
    item_id: Mapped[int] = mapped_column(Integer)
    reviewer: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    labels_json: Mapped[str] = mapped_column(Text)
    decisions_json: Mapped[str] = mapped_column(Text)
    comment: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(40))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
