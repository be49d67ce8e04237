"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24 01:39:42.176979
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=True),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batches')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_batches_idempotency_key'))
    )
    op.create_table('blog_posts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=200), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('markdown', sa.Text(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('language', sa.String(length=35), nullable=False),
    sa.Column('source_path', sa.Text(), nullable=True),
    sa.Column('images_enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_blog_posts')),
    sa.UniqueConstraint('slug', name=op.f('uq_blog_posts_slug'))
    )
    op.create_table('image_prompts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('post_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('size', sa.String(length=16), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('alt_hint', sa.Text(), nullable=False),
    sa.Column('heading', sa.Text(), nullable=False),
    sa.Column('line', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['post_id'], ['blog_posts.id'], name=op.f('fk_image_prompts_post_id_blog_posts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_image_prompts')),
    sa.UniqueConstraint('post_id', 'fingerprint', name=op.f('uq_image_prompts_post_id_fingerprint'))
    )
    with op.batch_alter_table('image_prompts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_image_prompts_post_id_position'), ['post_id', 'position'], unique=False)

    op.create_table('generated_images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prompt_id', sa.Integer(), nullable=False),
    sa.Column('post_id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=True),
    sa.Column('variation', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error_code', sa.String(length=32), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('lease_owner', sa.String(length=200), nullable=True),
    sa.Column('lease_token', sa.String(length=64), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=True),
    sa.Column('model', sa.String(length=128), nullable=True),
    sa.Column('cost_usd', sa.Float(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=True),
    sa.Column('processing_ms', sa.Integer(), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('format', sa.String(length=16), nullable=True),
    sa.Column('bytes_original', sa.Integer(), nullable=True),
    sa.Column('bytes_stored', sa.Integer(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('storage_key', sa.String(length=512), nullable=True),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('thumbnail_key', sa.String(length=512), nullable=True),
    sa.Column('thumbnail_url', sa.Text(), nullable=True),
    sa.Column('alt_text', sa.Text(), nullable=True),
    sa.Column('revised_prompt', sa.Text(), nullable=True),
    sa.Column('lqip', sa.Text(), nullable=True),
    sa.Column('dominant_color', sa.String(length=7), nullable=True),
    sa.Column('focal_x', sa.Float(), nullable=True),
    sa.Column('focal_y', sa.Float(), nullable=True),
    sa.Column('rating', sa.Integer(), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_generated_images_batch_id_batches'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['post_id'], ['blog_posts.id'], name=op.f('fk_generated_images_post_id_blog_posts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['prompt_id'], ['image_prompts.id'], name=op.f('fk_generated_images_prompt_id_image_prompts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_generated_images')),
    sa.UniqueConstraint('prompt_id', 'variation', name=op.f('uq_generated_images_prompt_id_variation'))
    )
    with op.batch_alter_table('generated_images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_generated_images_batch_id_status'), ['batch_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_generated_images_created_at_id'), ['created_at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_generated_images_post_id'), ['post_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_generated_images_provider_status'), ['provider', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_generated_images_status_lease_expires_at'), ['status', 'lease_expires_at'], unique=False)

    op.create_table('generation_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=128), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=False),
    sa.Column('cost_usd', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('lease_owner', sa.String(length=200), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['generated_images.id'], name=op.f('fk_generation_attempts_image_id_generated_images'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_generation_attempts'))
    )
    with op.batch_alter_table('generation_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_generation_attempts_image_id_attempt'), ['image_id', 'attempt'], unique=False)
        batch_op.create_index(batch_op.f('ix_generation_attempts_provider_started_at'), ['provider', 'started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_generation_attempts_started_at'), ['started_at'], unique=False)

    op.create_table('image_variants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('bytes', sa.Integer(), nullable=False),
    sa.Column('storage_key', sa.String(length=512), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['generated_images.id'], name=op.f('fk_image_variants_image_id_generated_images'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_image_variants')),
    sa.UniqueConstraint('image_id', 'format', 'width', name=op.f('uq_image_variants_image_id_format_width'))
    )


def downgrade() -> None:
    op.drop_table('image_variants')
    with op.batch_alter_table('generation_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_generation_attempts_started_at'))
        batch_op.drop_index(batch_op.f('ix_generation_attempts_provider_started_at'))
        batch_op.drop_index(batch_op.f('ix_generation_attempts_image_id_attempt'))

    op.drop_table('generation_attempts')
    with op.batch_alter_table('generated_images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_generated_images_status_lease_expires_at'))
        batch_op.drop_index(batch_op.f('ix_generated_images_provider_status'))
        batch_op.drop_index(batch_op.f('ix_generated_images_post_id'))
        batch_op.drop_index(batch_op.f('ix_generated_images_created_at_id'))
        batch_op.drop_index(batch_op.f('ix_generated_images_batch_id_status'))

    op.drop_table('generated_images')
    with op.batch_alter_table('image_prompts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_image_prompts_post_id_position'))

    op.drop_table('image_prompts')
    op.drop_table('blog_posts')
    op.drop_table('batches')
