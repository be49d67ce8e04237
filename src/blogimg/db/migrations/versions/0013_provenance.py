"""provenance: a provider's C2PA-signed original, kept beside the master, and its manifest's verdict

``original_key`` and ``original_sha256`` name the provider's bytes, stored untouched when they carry
a C2PA manifest (pipeline/provenance.py); ``c2pa_manifest`` is 'none', 'valid' or 'invalid' and
``c2pa_detail`` the SDK's validation state with its failure codes. Existing rows were made before
manifests were read: 'none'.

Plain ADD/DROP COLUMN (no batch copy): on SQLite a table copy would drop 0012's triggers.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-20 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

_COLUMNS = ('original_key', 'original_sha256', 'c2pa_manifest', 'c2pa_detail')


def upgrade() -> None:
    op.add_column('generated_images', sa.Column('original_key', sa.String(length=512), nullable=True))
    op.add_column('generated_images', sa.Column('original_sha256', sa.String(length=64), nullable=True))
    op.add_column('generated_images', sa.Column('c2pa_manifest', sa.String(length=8), nullable=False,
                                                server_default='none'))
    op.add_column('generated_images', sa.Column('c2pa_detail', sa.Text(), nullable=True))


def downgrade() -> None:
    for column in reversed(_COLUMNS):
        op.drop_column('generated_images', column)
