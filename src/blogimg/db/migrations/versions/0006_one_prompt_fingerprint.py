"""prompts sent through the API take the fingerprint prompts read from posts have

The API used to hash its prompts its own way; now every prompt is identified by
``blogimg.domain.fingerprint``. Rows stored with the old API hash are rewritten, so asking again
for a prompt made before the upgrade finds its image instead of paying for a new one. A row
whose new fingerprint is already taken in its post (the same prompt in another letter case, or
the post's own prompt) keeps its old one: it stays a prompt of its own, as it was.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 19:50:00
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def _old_api_fingerprint(kind: str, prompt: str, size: str) -> str:
    return hashlib.sha256("\x1f".join(("api", kind, prompt, size)).encode()).hexdigest()


def _fingerprint(kind: str, prompt: str, size: str) -> str:
    # blogimg.domain.fingerprint as of this revision, written out: a migration must not change
    # when the code it once called does.
    return hashlib.sha256("\x1f".join(["v1", kind, prompt.casefold(), size, "0"]).encode()).hexdigest()


_PROMPTS = sa.table('image_prompts', sa.column('id', sa.Integer), sa.column('post_id', sa.Integer),
                    sa.column('kind', sa.String), sa.column('position', sa.Integer), sa.column('prompt', sa.Text),
                    sa.column('size', sa.String), sa.column('fingerprint', sa.String))
_API_POSITION = 1000  # API prompts were stored at 1000 + their place in the request


def upgrade() -> None:
    _rewrite(lambda kind, prompt, size: (_old_api_fingerprint(kind, prompt, size), _fingerprint(kind, prompt, size)))


def downgrade() -> None:
    _rewrite(lambda kind, prompt, size: (_fingerprint(kind, prompt, size), _old_api_fingerprint(kind, prompt, size)))


def _rewrite(fingerprints: Callable[[str, str, str], tuple[str, str]]) -> None:
    """Give each API prompt stored with the first fingerprint the second, unless its post has it."""
    bind = op.get_bind()
    rows = bind.execute(sa.select(_PROMPTS.c.id, _PROMPTS.c.post_id, _PROMPTS.c.kind, _PROMPTS.c.prompt,
                                  _PROMPTS.c.size, _PROMPTS.c.fingerprint, _PROMPTS.c.position)).all()
    taken = {(post_id, fingerprint) for _, post_id, _, _, _, fingerprint, _ in rows}
    for prompt_id, post_id, kind, prompt, size, fingerprint, position in rows:
        before, after = fingerprints(kind, prompt, size)
        if position < _API_POSITION or fingerprint != before or (post_id, after) in taken:
            continue
        bind.execute(sa.update(_PROMPTS).where(_PROMPTS.c.id == prompt_id).values(fingerprint=after))
        taken.discard((post_id, before))
        taken.add((post_id, after))
