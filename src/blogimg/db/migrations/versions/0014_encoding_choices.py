"""encoding choices: the quality, score and encoder each stored file was made with

With quality search (imaging/quality_search.py) every image gets its own encoder quality per
format: ``quality`` is the quality chosen, ``score`` the file's SSIMULACRA2 score against the
source at its size, ``encoder`` the encoder that wrote it ('jpegli', 'libwebp', 'libaom' …).
Variants keep them on their own rows, the master on the image's (``master_*``). Rows made before
are NULL: unknown, not zero.

Plain ADD/DROP COLUMN (no batch copy): on SQLite a table copy would drop 0012's triggers.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-21 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

#: (table, column prefix): the variant's own columns, and the master's on its image row
_OWNERS = (('image_variants', ''), ('generated_images', 'master_'))


def upgrade() -> None:
    for table, prefix in _OWNERS:
        op.add_column(table, sa.Column(f'{prefix}quality', sa.Integer(), nullable=True))
        op.add_column(table, sa.Column(f'{prefix}score', sa.Float(), nullable=True))
        op.add_column(table, sa.Column(f'{prefix}encoder', sa.String(length=24), nullable=True))


def downgrade() -> None:
    for table, prefix in reversed(_OWNERS):
        for column in ('encoder', 'score', 'quality'):
            op.drop_column(table, f'{prefix}{column}')
