"""rollups: per-day aggregates of images and provider calls, kept by triggers, backfilled here

The stats endpoint computed percentiles in Python over every image (p95 ~4 s at 1M rows). These
tables hold what it and the status page need per UTC day, provider and model: counts by status
or outcome, cost, bytes, and a latency histogram (fixed log-spaced buckets, ``rollup_latency_buckets``).

Triggers on ``generated_images`` and ``generation_attempts`` keep them exact in the transaction
that changes a row, whichever code path wrote it (queue, ledger, catalogue deletes, cascades,
hand-written SQL):

- SQLite upserts the rollup rows directly: its writers already take turns (one write lock for
  the whole database), so a shared rollup row costs no extra waiting and cannot deadlock.
- PostgreSQL only *appends* to ``*_rollup_deltas``: concurrent workers upserting the same
  (day, provider, model) row would queue on its row lock, and a statement changing several
  images could lock several rollup rows in an order another statement reverses — a deadlock.
  An insert takes no lock another writer waits on. db/rollups.py folds deltas into the rollups
  (bounded, one folder at a time) and readers add the few not folded yet.

A call's cost also counts on its image's row in ``image_rollups`` (what the images of a group
cost, as the stats reported before). On PostgreSQL the call's trigger takes a share lock on the
image row, so a concurrent change of the image's group (its completion) and of the call's cost
are applied in one order: neither is lost between the old and the new group. An image's
BEFORE DELETE trigger takes its calls' cost with it, so calls deleted by the cascade find no
image and add nothing; calls deleted first (db/catalog.py) take their own cost away.

Locks on PostgreSQL, and why they cannot deadlock on blogimg's paths: writers never lock a
rollup row (they insert deltas; one folder at a time upserts). The only new lock is that share
lock, taken by a ledger write after its own ledger row, and every path that holds an image row
and then touches its ledger rows takes them in the same order (a completion holds the image and
touches no ledger row; db/catalog.py deletes an image's calls before the image). A hand-written
DELETE of a post or prompt, whose cascade locks the image before its calls, can meet a worker
closing a call of that image in the other order: PostgreSQL then aborts one of the two with a
deadlock error (nothing half-done), which blogimg itself never issues.

A later migration that rebuilds generated_images or generation_attempts in SQLite batch mode
drops these triggers (as 0007 found for 0004's) and must create them again.

This file freezes its own copy of the SQL (a migration must not change when the code does);
``blogimg rebuild-rollups`` recomputes the same tables from db/rollups.py, and the tests check
that the two agree with what the triggers keep.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 03:20:00
"""

from __future__ import annotations

import math

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

#: Eight buckets per doubling: a bucket's upper bound is at most 2^(1/8) ≈ 9% above its lower
#: bound (whole milliseconds below ~12 ms), up to 2^27 ms (~37 h); one last bucket holds the rest.
BUCKETS_PER_DOUBLING = 8
LAST_BOUND = 2**27
LARGEST = 2**31 - 1

IMAGE_KEY = ("day", "provider", "model", "status", "latency_bucket")
IMAGE_MEASURES = ("images", "bytes_original", "bytes_stored", "cost_usd", "unknown_cost_images")
ATTEMPT_KEY = ("day", "provider", "model", "outcome", "latency_bucket")
ATTEMPT_MEASURES = ("calls", "cost_usd", "unknown_cost_calls", "spent_usd")

#: Columns whose change moves an image or a call between rollup rows; other updates (heartbeats,
#: alt text, ratings) fire nothing.
IMAGE_COLUMNS = ("created_at", "provider", "model", "status", "latency_ms", "bytes_original", "bytes_stored")
ATTEMPT_COLUMNS = ("image_id", "started_at", "provider", "model", "outcome", "latency_ms", "cost_usd",
                   "estimated_cost_usd")


def bucket_bounds() -> list[int]:
    """Upper bounds in ms: 0, then whole ms growing by 2^(1/8) each bucket (at least 1 ms)."""
    bounds, edge = [0], 1.0
    while bounds[-1] < LAST_BOUND:
        bounds.append(max(bounds[-1] + 1, math.ceil(edge)))
        edge *= 2 ** (1 / BUCKETS_PER_DOUBLING)
    return [*bounds, LARGEST]


def upgrade() -> None:
    bind = op.get_bind()
    _create_tables()
    op.bulk_insert(sa.table("rollup_latency_buckets", sa.column("bucket", sa.Integer), sa.column("upper_ms", sa.BigInteger)),
                   [{"bucket": number, "upper_ms": bound} for number, bound in enumerate(bucket_bounds())])
    sql = _Sql(bind.dialect.name)
    _backfill(sql)
    if bind.dialect.name == "sqlite":
        for statement in sql.sqlite_triggers():
            op.execute(statement)
    elif bind.dialect.name == "postgresql":
        for statement in sql.postgresql_triggers():
            op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for table in ("generated_images", "generation_attempts"):
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_rollup_{event}")
    elif bind.dialect.name == "postgresql":
        for table in ("generated_images", "generation_attempts"):
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_rollup_{event} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS blogimg_image_rollup()")
        op.execute("DROP FUNCTION IF EXISTS blogimg_attempt_rollup()")
    for table in ("attempt_rollup_deltas", "attempt_rollups", "image_rollup_deltas", "image_rollups",
                  "rollup_latency_buckets"):
        op.drop_table(table)


def _create_tables() -> None:
    op.create_table(
        "rollup_latency_buckets",
        sa.Column("bucket", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("upper_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_rollup_latency_buckets")),
        sa.UniqueConstraint("upper_ms", name=op.f("uq_rollup_latency_buckets_upper_ms")),
    )
    delta_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    for name, columns, key in (("image", _image_columns, IMAGE_KEY), ("attempt", _attempt_columns, ATTEMPT_KEY)):
        op.create_table(f"{name}_rollups", *columns(), sa.PrimaryKeyConstraint(*key, name=op.f(f"pk_{name}_rollups")))
        op.create_table(f"{name}_rollup_deltas", sa.Column("id", delta_id, nullable=False), *columns(),
                        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}_rollup_deltas")))


def _key_columns(kind: str) -> list[sa.Column]:
    return [sa.Column("day", sa.String(10), nullable=False), sa.Column("provider", sa.String(64), nullable=False),
            sa.Column("model", sa.String(128), nullable=False), sa.Column(kind, sa.String(16), nullable=False),
            sa.Column("latency_bucket", sa.Integer(), nullable=False)]


def _image_columns() -> list[sa.Column]:
    return [*_key_columns("status"), sa.Column("images", sa.BigInteger(), nullable=False),
            sa.Column("bytes_original", sa.BigInteger(), nullable=False),
            sa.Column("bytes_stored", sa.BigInteger(), nullable=False), sa.Column("cost_usd", sa.Float(), nullable=False),
            sa.Column("unknown_cost_images", sa.BigInteger(), nullable=False)]


def _attempt_columns() -> list[sa.Column]:
    return [*_key_columns("outcome"), sa.Column("calls", sa.BigInteger(), nullable=False),
            sa.Column("cost_usd", sa.Float(), nullable=False),
            sa.Column("unknown_cost_calls", sa.BigInteger(), nullable=False),
            sa.Column("spent_usd", sa.Float(), nullable=False)]


def _backfill(sql: _Sql) -> None:
    """The rollups of the rows already there, in the same terms as the triggers."""
    key = "day, provider, model, status, latency_bucket"
    op.execute(
        f"INSERT INTO image_rollups ({', '.join(IMAGE_KEY + IMAGE_MEASURES)}) "
        f"SELECT {key}, count(*), sum(bytes_original), sum(bytes_stored), sum(cost_usd), sum(unknown) FROM ("
        f"SELECT {sql.day('g.created_at')} AS day, coalesce(g.provider, '') AS provider, "
        f"coalesce(g.model, '') AS model, g.status AS status, {sql.bucket('g.latency_ms')} AS latency_bucket, "
        "coalesce(g.bytes_original, 0) AS bytes_original, coalesce(g.bytes_stored, 0) AS bytes_stored, "
        "coalesce(a.cost, 0) AS cost_usd, "
        "CASE WHEN g.status = 'succeeded' AND a.unknown > 0 THEN 1 ELSE 0 END AS unknown "
        "FROM generated_images g LEFT JOIN (SELECT image_id, sum(cost_usd) AS cost, "
        "sum(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) AS unknown FROM generation_attempts GROUP BY image_id) a "
        f"ON a.image_id = g.id) AS images GROUP BY {key}")
    key = "day, provider, model, outcome, latency_bucket"
    op.execute(
        f"INSERT INTO attempt_rollups ({', '.join(ATTEMPT_KEY + ATTEMPT_MEASURES)}) "
        f"SELECT {key}, count(*), sum(cost_usd), sum(unknown), sum(spent) FROM ("
        f"SELECT {sql.day('a.started_at')} AS day, a.provider AS provider, coalesce(a.model, '') AS model, "
        f"a.outcome AS outcome, {sql.attempt_bucket('a')} AS latency_bucket, coalesce(a.cost_usd, 0) AS cost_usd, "
        f"CASE WHEN a.cost_usd IS NULL THEN 1 ELSE 0 END AS unknown, {sql.spent('a')} AS spent "
        f"FROM generation_attempts a) AS calls GROUP BY {key}")


class _Sql:
    """The trigger SQL of one engine, built from the same expressions for both."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    def day(self, column: str) -> str:
        return f"strftime('%Y-%m-%d', {column})" if self.dialect == "sqlite" else f"to_char({column}, 'YYYY-MM-DD')"

    @staticmethod
    def bucket(latency: str) -> str:
        return f"coalesce((SELECT min(bucket) FROM rollup_latency_buckets WHERE upper_ms >= {latency}), -1)"

    def attempt_bucket(self, row: str) -> str:
        # A pending call has no latency yet (its row says 0).
        return f"CASE WHEN {row}.outcome = 'pending' THEN -1 ELSE {self.bucket(f'{row}.latency_ms')} END"

    @staticmethod
    def spent(row: str) -> str:
        # As db/ledger.py's spent_amount(): the cost, else the estimate the call reserved.
        return (f"CASE WHEN {row}.outcome = 'pending' OR {row}.cost_usd IS NULL "
                f"THEN coalesce({row}.estimated_cost_usd, 0) ELSE {row}.cost_usd END")

    # One row's share of a rollup, with a sign: + for the row as it is now, - for it as it was.

    def image_share(self, row: str, sign: str) -> str:
        calls = f"generation_attempts WHERE image_id = {row}.id"
        return ", ".join([
            self.day(f"{row}.created_at"), f"coalesce({row}.provider, '')", f"coalesce({row}.model, '')",
            f"{row}.status", self.bucket(f"{row}.latency_ms"), f"{sign}1",
            f"{sign}coalesce({row}.bytes_original, 0)", f"{sign}coalesce({row}.bytes_stored, 0)",
            f"{sign}coalesce((SELECT sum(cost_usd) FROM {calls}), 0)",
            f"{sign}(CASE WHEN {row}.status = 'succeeded' AND EXISTS (SELECT 1 FROM {calls} AND cost_usd IS NULL) "
            "THEN 1 ELSE 0 END)"])

    def attempt_share(self, row: str, sign: str) -> str:
        return ", ".join([
            self.day(f"{row}.started_at"), f"{row}.provider", f"coalesce({row}.model, '')", f"{row}.outcome",
            self.attempt_bucket(row), f"{sign}1", f"{sign}coalesce({row}.cost_usd, 0)",
            f"{sign}(CASE WHEN {row}.cost_usd IS NULL THEN 1 ELSE 0 END)", f"{sign}({self.spent(row)})"])

    def call_cost_on_image(self, target: str, old: bool, new: bool) -> str:
        """What a call's change does to its image's row: its cost, and whether the image has a call of
        unknown cost. ``old``/``new``: whether OLD/NEW exist (update: both). A no-op adds nothing."""
        this_id = "NEW.id" if new else "OLD.id"
        ids = ", ".join(([("OLD.image_id")] if old else []) + (["NEW.image_id"] if new else []))
        added = "CASE WHEN NEW.image_id = g.id THEN coalesce(NEW.cost_usd, 0) ELSE 0 END" if new else "0"
        removed = "CASE WHEN OLD.image_id = g.id THEN coalesce(OLD.cost_usd, 0) ELSE 0 END" if old else "0"
        others = (f"EXISTS (SELECT 1 FROM generation_attempts other WHERE other.image_id = g.id "
                  f"AND other.cost_usd IS NULL AND other.id <> {this_id})")
        after = "(NEW.image_id = g.id AND NEW.cost_usd IS NULL)" if new else "false"
        before = "(OLD.image_id = g.id AND OLD.cost_usd IS NULL)" if old else "false"
        unknown = (f"CASE WHEN g.status <> 'succeeded' THEN 0 WHEN {others} THEN 0 "
                   f"ELSE (CASE WHEN {after} THEN 1 ELSE 0 END) - (CASE WHEN {before} THEN 1 ELSE 0 END) END")
        return (
            f"INSERT INTO {target} ({', '.join(IMAGE_KEY + IMAGE_MEASURES)}) "
            f"SELECT * FROM (SELECT {self.day('g.created_at')} AS day, coalesce(g.provider, '') AS provider, "
            f"coalesce(g.model, '') AS model, g.status AS status, {self.bucket('g.latency_ms')} AS latency_bucket, "
            "0 AS images, 0 AS bytes_original, 0 AS bytes_stored, "
            f"({added}) - ({removed}) AS cost_usd, {unknown} AS unknown_cost_images "
            f"FROM generated_images g WHERE g.id IN ({ids})) AS change "
            "WHERE change.cost_usd <> 0 OR change.unknown_cost_images <> 0")

    # SQLite: upsert the rollups themselves.

    def sqlite_triggers(self) -> list[str]:
        image_upsert = self._upsert("image_rollups", IMAGE_KEY, IMAGE_MEASURES)
        attempt_upsert = self._upsert("attempt_rollups", ATTEMPT_KEY, ATTEMPT_MEASURES)

        def image(row: str, sign: str) -> str:
            return f"INSERT INTO image_rollups ({', '.join(IMAGE_KEY + IMAGE_MEASURES)}) " \
                   f"SELECT {self.image_share(row, sign)} WHERE true {image_upsert};"

        def attempt(row: str, sign: str) -> str:
            return f"INSERT INTO attempt_rollups ({', '.join(ATTEMPT_KEY + ATTEMPT_MEASURES)}) " \
                   f"SELECT {self.attempt_share(row, sign)} WHERE true {attempt_upsert};"

        def cost(old: bool, new: bool) -> str:
            return f"{self.call_cost_on_image('image_rollups', old, new)} {image_upsert};"

        image_changed = " OR ".join(f"OLD.{column} IS NOT NEW.{column}" for column in IMAGE_COLUMNS)
        attempt_changed = " OR ".join(f"OLD.{column} IS NOT NEW.{column}" for column in ATTEMPT_COLUMNS)
        return [
            f"CREATE TRIGGER generated_images_rollup_insert AFTER INSERT ON generated_images BEGIN "
            f"{image('NEW', '+')} END",
            f"CREATE TRIGGER generated_images_rollup_update AFTER UPDATE ON generated_images "
            f"WHEN {image_changed} BEGIN {image('OLD', '-')} {image('NEW', '+')} END",
            # BEFORE: the image's calls are still there to take their cost away (see the docstring).
            f"CREATE TRIGGER generated_images_rollup_delete BEFORE DELETE ON generated_images BEGIN "
            f"{image('OLD', '-')} END",
            f"CREATE TRIGGER generation_attempts_rollup_insert AFTER INSERT ON generation_attempts BEGIN "
            f"{attempt('NEW', '+')} {cost(False, True)} END",
            f"CREATE TRIGGER generation_attempts_rollup_update AFTER UPDATE ON generation_attempts "
            f"WHEN {attempt_changed} BEGIN {attempt('OLD', '-')} {attempt('NEW', '+')} {cost(True, True)} END",
            f"CREATE TRIGGER generation_attempts_rollup_delete AFTER DELETE ON generation_attempts BEGIN "
            f"{attempt('OLD', '-')} {cost(True, False)} END",
        ]

    @staticmethod
    def _upsert(table: str, key: tuple[str, ...], measures: tuple[str, ...]) -> str:
        return (f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET "
                + ", ".join(f"{column} = {table}.{column} + excluded.{column}" for column in measures))

    # PostgreSQL: append deltas only.

    def postgresql_triggers(self) -> list[str]:
        image_columns = ", ".join(IMAGE_KEY + IMAGE_MEASURES)
        attempt_columns = ", ".join(ATTEMPT_KEY + ATTEMPT_MEASURES)

        def image(row: str, sign: str) -> str:
            return f"INSERT INTO image_rollup_deltas ({image_columns}) SELECT {self.image_share(row, sign)};"

        def attempt(row: str, sign: str) -> str:
            return f"INSERT INTO attempt_rollup_deltas ({attempt_columns}) SELECT {self.attempt_share(row, sign)};"

        def cost(old: bool, new: bool) -> str:
            ids = ", ".join((["OLD.image_id"] if old else []) + (["NEW.image_id"] if new else []))
            # The image row's share lock orders this against a change of the image's group.
            return (f"PERFORM 1 FROM generated_images WHERE id IN ({ids}) ORDER BY id FOR SHARE; "
                    f"{self.call_cost_on_image('image_rollup_deltas', old, new)};")

        image_function = (
            "CREATE FUNCTION blogimg_image_rollup() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF TG_OP <> 'INSERT' THEN {image('OLD', '-')} END IF; "
            f"IF TG_OP <> 'DELETE' THEN {image('NEW', '+')} RETURN NEW; END IF; "
            "RETURN OLD; END $$")
        attempt_function = (
            "CREATE FUNCTION blogimg_attempt_rollup() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF TG_OP = 'INSERT' THEN {attempt('NEW', '+')} {cost(False, True)} "
            f"ELSIF TG_OP = 'UPDATE' THEN {attempt('OLD', '-')} {attempt('NEW', '+')} {cost(True, True)} "
            f"ELSE {attempt('OLD', '-')} {cost(True, False)} END IF; "
            "RETURN NULL; END $$")

        def changed(columns: tuple[str, ...]) -> str:
            return (f"({', '.join(f'OLD.{column}' for column in columns)}) IS DISTINCT FROM "
                    f"({', '.join(f'NEW.{column}' for column in columns)})")

        return [
            image_function,
            attempt_function,
            "CREATE TRIGGER generated_images_rollup_insert AFTER INSERT ON generated_images "
            "FOR EACH ROW EXECUTE FUNCTION blogimg_image_rollup()",
            "CREATE TRIGGER generated_images_rollup_update AFTER UPDATE ON generated_images "
            f"FOR EACH ROW WHEN ({changed(IMAGE_COLUMNS)}) EXECUTE FUNCTION blogimg_image_rollup()",
            # BEFORE: the row is locked and its calls are still there to take their cost away.
            "CREATE TRIGGER generated_images_rollup_delete BEFORE DELETE ON generated_images "
            "FOR EACH ROW EXECUTE FUNCTION blogimg_image_rollup()",
            "CREATE TRIGGER generation_attempts_rollup_insert AFTER INSERT ON generation_attempts "
            "FOR EACH ROW EXECUTE FUNCTION blogimg_attempt_rollup()",
            "CREATE TRIGGER generation_attempts_rollup_update AFTER UPDATE ON generation_attempts "
            f"FOR EACH ROW WHEN ({changed(ATTEMPT_COLUMNS)}) EXECUTE FUNCTION blogimg_attempt_rollup()",
            "CREATE TRIGGER generation_attempts_rollup_delete AFTER DELETE ON generation_attempts "
            "FOR EACH ROW EXECUTE FUNCTION blogimg_attempt_rollup()",
        ]
