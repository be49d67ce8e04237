"""SQLite tables use AUTOINCREMENT: an id, once given, is never given again

Without AUTOINCREMENT, SQLite hands out the largest id plus one, so deleting the newest image
gave its id to the next one — while clients, caches and webhooks still held it. SQLite can only
add AUTOINCREMENT by rebuilding a table; the rebuild runs with foreign keys off (see
db/engine.py), so copying a parent table does not cascade into its children, and re-creates the
text-search triggers of 0004, which a rebuilt table loses. PostgreSQL's sequences never reuse
an id: nothing to do there.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 20:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

#: Parents before children, as their foreign keys point.
TABLES = ('blog_posts', 'batches', 'image_prompts', 'generated_images', 'image_variants',
          'generation_attempts', 'image_events')
#: (table, column, FTS table) as in 0004.
INDEXED = (("generated_images", "alt_text", "generated_images_text"),
           ("image_prompts", "prompt", "image_prompts_text"))


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)


def _rebuild(*, autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always",
                                  table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass
    existing = {row[0] for row in bind.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table, column, name in INDEXED:
        if name not in existing:
            continue  # this SQLite had no FTS5 when 0004 ran: search scans
        # The same triggers as 0004; the FTS rows point at ids, which the rebuild kept.
        op.execute(f"CREATE TRIGGER IF NOT EXISTS {name}_insert AFTER INSERT ON {table} BEGIN "
                   f"INSERT INTO {name}(rowid, {column}) VALUES (new.id, new.{column}); END")
        op.execute(f"CREATE TRIGGER IF NOT EXISTS {name}_delete AFTER DELETE ON {table} BEGIN "
                   f"INSERT INTO {name}({name}, rowid, {column}) VALUES ('delete', old.id, old.{column}); END")
        op.execute(f"CREATE TRIGGER IF NOT EXISTS {name}_update AFTER UPDATE OF {column} ON {table} BEGIN "
                   f"INSERT INTO {name}({name}, rowid, {column}) VALUES ('delete', old.id, old.{column}); "
                   f"INSERT INTO {name}(rowid, {column}) VALUES (new.id, new.{column}); END")
