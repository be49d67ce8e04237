"""ledger rows are written before the call: estimated cost, pending outcome

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('generation_attempts') as batch:
        batch.add_column(sa.Column('estimated_cost_usd', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('generation_attempts') as batch:
        batch.drop_column('estimated_cost_usd')
