"""alerts: one row per episode of an alert rule (firing → resolved), kept as history

A row is written when a rule starts firing for a subject and closed (state 'resolved',
resolved_at) when it stops; a resolved row never changes again, so the table is the history.
At most one row per (rule, subject) may be firing: a partial unique index says so on both
engines, so two workers evaluating at once cannot open the same alert twice (the second insert
conflicts and is taken as "already firing"). It is also the index that finds the open alerts.

The p95 imaging-time rule reads the images finished in a window of minutes: ``finished_at``
gets an index so that read is bounded by the window, not by the catalogue.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

_FIRING = sa.text("state = 'firing'")


def upgrade() -> None:
    op.create_table(
        'alerts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('rule', sa.String(length=64), nullable=False),
        sa.Column('subject', sa.String(length=200), nullable=False),  # '' for a rule about the whole system
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('value', sa.Float(), nullable=True),
        sa.Column('threshold', sa.Float(), nullable=True),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('resolved_at', sa.DateTime(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
        sa.CheckConstraint("state IN ('firing', 'resolved')", name=op.f('ck_alerts_state')),
        sqlite_autoincrement=True,  # as every table since 0007: an id is never given twice
    )
    op.create_index('ix_alerts_open', 'alerts', ['rule', 'subject'], unique=True,
                    sqlite_where=_FIRING, postgresql_where=_FIRING)
    op.create_index(op.f('ix_generated_images_finished_at'), 'generated_images', ['finished_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_generated_images_finished_at'), table_name='generated_images')
    op.drop_index('ix_alerts_open', table_name='alerts')
    op.drop_table('alerts')
