"""per-job options from the API, and image status events for SSE across processes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 02:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('generated_images') as batch:
        batch.add_column(sa.Column('options', sa.JSON(), nullable=True))
    with op.batch_alter_table('batches') as batch:
        batch.add_column(sa.Column('image_ids', sa.JSON(), nullable=True))
    op.create_table(
        'image_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('image_id', sa.Integer(), nullable=False),
        sa.Column('batch_id', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_image_events')),
    )
    op.create_index(op.f('ix_image_events_image_id'), 'image_events', ['image_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_image_events_image_id'), table_name='image_events')
    op.drop_table('image_events')
    with op.batch_alter_table('batches') as batch:
        batch.drop_column('image_ids')
    with op.batch_alter_table('generated_images') as batch:
        batch.drop_column('options')
