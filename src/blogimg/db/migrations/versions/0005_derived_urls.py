"""URLs derived from storage keys when read; batch columns nobody read

Stored URLs froze the base URL of the day they were written, so changing
BLOGIMG_PUBLIC_BASE_URL (or moving to a CDN) left every old URL at the old address: URLs now
follow from ``storage_key`` and the storage's base when read. ``batches.total`` was written and
never read, ``batches.finished_at`` set only by CLI runs: a batch's progress is derived from
its images.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 19:30:00
"""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa
from alembic import op

from blogimg.errors import DatabaseError

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise DatabaseError(f"blogimg needs SQLite 3.35 or newer (this Python has {sqlite3.sqlite_version}); "
                            "use a Python built with a newer SQLite, or PostgreSQL")
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+), not batch mode: batch mode would copy
    # generated_images into a new table and silently lose the text-search triggers of 0004.
    for table, column in (('generated_images', 'url'), ('generated_images', 'thumbnail_url'),
                          ('image_variants', 'url'), ('batches', 'total'), ('batches', 'finished_at')):
        op.drop_column(table, column)


def downgrade() -> None:
    # The URLs cannot be rebuilt here (they depend on settings); they come back empty.
    with op.batch_alter_table('batches') as batch:
        batch.add_column(sa.Column('finished_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('total', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('image_variants') as batch:
        batch.add_column(sa.Column('url', sa.Text(), nullable=False, server_default=''))
    with op.batch_alter_table('generated_images') as batch:
        batch.add_column(sa.Column('thumbnail_url', sa.Text(), nullable=True))
        batch.add_column(sa.Column('url', sa.Text(), nullable=True))
