"""Alembic environment for the verdict store.

reportguard calls the migrations with an open connection in `config.attributes["connection"]`
(see store.upgrade); the alembic command line gives a URL with `-x url=...` instead. Logging is
left alone: reconfiguring it from an ini file would silence the server's own logs.
"""
from alembic import context
from sqlalchemy import create_engine

from reportguard.review.schema import VERSION_TABLE, Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead.
    context.configure(connection=connection, target_metadata=target_metadata,
                      version_table=VERSION_TABLE, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database with: alembic -c src/review/alembic.ini -x url=URL upgrade head")
    with create_engine(url).connect() as connection:
        _configure(connection)


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_online()
