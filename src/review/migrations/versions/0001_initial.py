"""The first verdict store: queues, items, verdicts and their history.

Revision ID: 0001
Revises:
Create Date: 2025-11-28
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queues",
        sa.Column("queue_id", sa.String(64), primary_key=True),
        sa.Column("run_path", sa.Text(), nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("strategy", sa.String(20), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("header_json", sa.Text(), nullable=False),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("queue_id", sa.String(64), sa.ForeignKey("queues.queue_id"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("listing_id", sa.String(200), nullable=False),
        sa.Column("stratum", sa.String(64), nullable=False),
        sa.Column("inclusion_probability", sa.Float(), nullable=True),
        sa.Column("weight", sa.Float(), nullable=True),
        sa.Column("record_json", sa.Text(), nullable=False),
        sa.UniqueConstraint("queue_id", "position", name="uq_items_queue_position"),
        sa.UniqueConstraint("queue_id", "listing_id", name="uq_items_queue_listing"),
    )
    op.create_index("ix_items_queue_id", "items", ["queue_id"])
    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id"), nullable=False),
        sa.Column("queue_id", sa.String(64), nullable=False),
        sa.Column("listing_id", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("labels_json", sa.Text(), nullable=False),
        sa.Column("decisions_json", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("item_id", "reviewer", "role", name="uq_verdicts_item_reviewer_role"),
    )
    op.create_index("ix_verdicts_item_id", "verdicts", ["item_id"])
    op.create_index("ix_verdicts_queue_id", "verdicts", ["queue_id"])
    op.create_table(
        "verdict_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("verdict_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("labels_json", sa.Text(), nullable=False),
        sa.Column("decisions_json", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_verdict_history_verdict_id", "verdict_history", ["verdict_id"])


def downgrade() -> None:
    op.drop_table("verdict_history")
    op.drop_table("verdicts")
    op.drop_table("items")
    op.drop_table("queues")
