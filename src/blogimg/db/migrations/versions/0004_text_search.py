"""trigram indexes for the search endpoint's text filter (prompt and alt text)

A substring search (``LIKE '%phrase%'``) cannot use a B-tree, so at a million images a phrase
that matches little scanned every row (bench/database.py: ~0.5 s). Trigram indexes answer it
from the index on both engines:

- SQLite: FTS5 tables with the trigram tokenizer, kept in step by triggers. They hold no copy
  of the text (external content); SQLite builds without FTS5 simply go without.
- PostgreSQL: pg_trgm GIN indexes. Where the extension cannot be created (no privilege), the
  indexes are skipped and search keeps working by scanning.

db/catalog.py looks for these and falls back to scanning where they are missing. A later
migration that rebuilds generated_images or image_prompts in SQLite batch mode drops their
triggers and must create them again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 05:20:00
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

# (table, column, index name); the SQLite FTS table is named after the index.
INDEXED = (("generated_images", "alt_text", "generated_images_text"),
           ("image_prompts", "prompt", "image_prompts_text"))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _sqlite_upgrade(bind)
    elif bind.dialect.name == "postgresql":
        _postgresql_upgrade(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for _, _, name in INDEXED:
        if bind.dialect.name == "sqlite":
            for event in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {name}_{event}")
            op.execute(f"DROP TABLE IF EXISTS {name}")
        elif bind.dialect.name == "postgresql":
            op.execute(f"DROP INDEX IF EXISTS ix_{name}_trgm")


def _sqlite_upgrade(bind: sa.engine.Connection) -> None:
    options = {row[0] for row in bind.exec_driver_sql("PRAGMA compile_options")}
    if "ENABLE_FTS5" not in options:
        log.warning("this SQLite has no FTS5: text search will scan instead of using an index")
        return
    for table, column, name in INDEXED:
        op.execute(f"CREATE VIRTUAL TABLE {name} USING fts5({column}, content='{table}', content_rowid='id', "
                   "tokenize='trigram')")
        op.execute(f"INSERT INTO {name}({name}) VALUES ('rebuild')")
        op.execute(f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} BEGIN "
                   f"INSERT INTO {name}(rowid, {column}) VALUES (new.id, new.{column}); END")
        op.execute(f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} BEGIN "
                   f"INSERT INTO {name}({name}, rowid, {column}) VALUES ('delete', old.id, old.{column}); END")
        # Only when the text itself changes: the queue updates these rows all the time.
        op.execute(f"CREATE TRIGGER {name}_update AFTER UPDATE OF {column} ON {table} BEGIN "
                   f"INSERT INTO {name}({name}, rowid, {column}) VALUES ('delete', old.id, old.{column}); "
                   f"INSERT INTO {name}(rowid, {column}) VALUES (new.id, new.{column}); END")


def _postgresql_upgrade(bind: sa.engine.Connection) -> None:
    savepoint = bind.begin_nested()
    try:
        bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as error:
        savepoint.rollback()
        log.warning("pg_trgm could not be created (%s): text search will scan instead of using an index",
                    str(error.orig).splitlines()[0])
        return
    savepoint.commit()
    for table, column, name in INDEXED:
        op.execute(f"CREATE INDEX ix_{name}_trgm ON {table} USING gin ({column} gin_trgm_ops)")
