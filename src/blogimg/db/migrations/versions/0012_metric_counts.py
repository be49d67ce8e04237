"""metric counts: bytes stored by format, imaging time, and the workers' circuit states, for /metrics

/metrics is answered from the catalogue, so every API node says the same and any number of
worker processes on any number of machines count once (api/metrics.py). Two things it needs
were nowhere in the catalogue in a form a scrape could read without scanning rows:

- ``metric_counts``: append-only counters, written by triggers in the transaction that changes
  the rows: ``stored_bytes`` (label: variant format; count: files, total: bytes) from every
  insert, update and delete of ``image_variants``; ``imaging_ms`` (label: the upper bound in ms
  of the ``rollup_latency_buckets`` bucket holding the image's ``processing_ms``; total: the
  milliseconds) when an image becomes ``succeeded``. Triggers only *insert*, on both engines,
  so concurrent writers never wait on a shared row (the reason 0008 appends deltas on
  PostgreSQL); db/metric_counts.py compacts the rows now and then into one per (metric, label),
  in a single statement, and readers sum whatever is there.
  ``masters`` and ``masters_original`` (label: the master's format; totals: ``bytes_stored`` and
  ``bytes_original``) count each image's master while its row refers to one (``storage_key``
  set), from every insert, delete and change of ``generated_images``' key, format or sizes;
  thumbnails are not counted (their size is recorded nowhere).
  ``webhook_deliveries`` (label ``delivered``) counts deliveries as they become delivered, so a
  scrape never counts that table's delivered rows, which are never pruned.
- ``worker_circuits``: each worker process's circuit-breaker state per provider, upserted by
  that worker every few seconds (breakers live in worker memory); a scrape counts the rows of
  live workers (recently updated) only.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_BUCKET = ("coalesce((SELECT CAST(min(upper_ms) AS TEXT) FROM rollup_latency_buckets "
           "WHERE upper_ms >= {ms}), 'inf')")
_STORED = "INSERT INTO metric_counts (metric, label, count, total) VALUES ('stored_bytes', {row}.format, {sign}1, {sign}{row}.bytes)"
_IMAGING = ("INSERT INTO metric_counts (metric, label, count, total) "
            "VALUES ('imaging_ms', " + _BUCKET.format(ms="NEW.processing_ms") + ", 1, NEW.processing_ms)")
_MASTER = ("INSERT INTO metric_counts (metric, label, count, total) SELECT '{metric}', coalesce({row}.format, ''), "
           "{sign}1, {sign}coalesce({row}.{column}, 0) WHERE {row}.storage_key IS NOT NULL")
_MASTER_COLUMNS = ("storage_key", "format", "bytes_stored", "bytes_original")
_MASTER_CHANGED = " OR ".join(f"OLD.{column} {{differs}} NEW.{column}" for column in _MASTER_COLUMNS)
_DELIVERED = "INSERT INTO metric_counts (metric, label, count, total) VALUES ('webhook_deliveries', 'delivered', 1, 0)"
_BECOMES_DELIVERED = "NEW.status = 'delivered' AND OLD.status <> 'delivered'"
_BECOMES_SUCCEEDED = ("NEW.status = 'succeeded' AND OLD.status <> 'succeeded' "
                      "AND NEW.processing_ms IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        'metric_counts',
        # 64-bit on PostgreSQL: every counted change takes an id (SQLite's rowid is 64-bit anyway and
        # AUTOINCREMENT needs the INTEGER type there).
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('metric', sa.String(length=32), nullable=False),
        sa.Column('label', sa.String(length=64), nullable=False),
        sa.Column('count', sa.BigInteger(), nullable=False),
        sa.Column('total', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_metric_counts')),
        sqlite_autoincrement=True,
    )
    op.create_table(
        'worker_circuits',
        sa.Column('owner', sa.String(length=200), nullable=False),
        sa.Column('provider', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('owner', 'provider', name=op.f('pk_worker_circuits')),
    )
    op.create_index(op.f('ix_worker_circuits_updated_at'), 'worker_circuits', ['updated_at'])
    # What is already there counts from the start.
    op.execute("INSERT INTO metric_counts (metric, label, count, total) "
               "SELECT 'stored_bytes', format, count(*), coalesce(sum(bytes), 0) FROM image_variants GROUP BY format")
    op.execute("INSERT INTO metric_counts (metric, label, count, total) SELECT 'imaging_ms', label, count(*), "
               "sum(processing_ms) FROM (SELECT processing_ms, " + _BUCKET.format(ms="processing_ms")
               + " AS label FROM generated_images WHERE status = 'succeeded' AND processing_ms IS NOT NULL) AS made "
               "GROUP BY label")
    for metric, column in (("masters", "bytes_stored"), ("masters_original", "bytes_original")):
        op.execute(f"INSERT INTO metric_counts (metric, label, count, total) SELECT '{metric}', "
                   f"coalesce(format, ''), count(*), coalesce(sum({column}), 0) FROM generated_images "
                   "WHERE storage_key IS NOT NULL GROUP BY coalesce(format, '')")
    op.execute("INSERT INTO metric_counts (metric, label, count, total) SELECT 'webhook_deliveries', 'delivered', "
               "count(*), 0 FROM webhook_deliveries WHERE status = 'delivered'")
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()


def _masters(row: str, sign: str) -> str:
    """The statements (each ending in ';') that count ``row``'s master in or (sign '-') out."""
    return " ".join(_MASTER.format(metric=metric, column=column, row=row, sign=sign) + ";"
                    for metric, column in (("masters", "bytes_stored"), ("masters_original", "bytes_original")))


def _sqlite_triggers() -> None:
    op.execute("CREATE TRIGGER image_variants_metric_insert AFTER INSERT ON image_variants BEGIN "
               f"{_STORED.format(row='NEW', sign='')}; END")
    op.execute("CREATE TRIGGER image_variants_metric_delete AFTER DELETE ON image_variants BEGIN "
               f"{_STORED.format(row='OLD', sign='-')}; END")
    op.execute("CREATE TRIGGER image_variants_metric_update AFTER UPDATE OF format, bytes ON image_variants BEGIN "
               f"{_STORED.format(row='OLD', sign='-')}; {_STORED.format(row='NEW', sign='')}; END")
    op.execute("CREATE TRIGGER generated_images_metric_imaging AFTER UPDATE OF status ON generated_images "
               f"WHEN {_BECOMES_SUCCEEDED} BEGIN {_IMAGING}; END")
    op.execute("CREATE TRIGGER generated_images_metric_master_insert AFTER INSERT ON generated_images BEGIN "
               f"{_masters('NEW', '')} END")
    op.execute("CREATE TRIGGER generated_images_metric_master_delete AFTER DELETE ON generated_images BEGIN "
               f"{_masters('OLD', '-')} END")
    op.execute(f"CREATE TRIGGER generated_images_metric_master_update AFTER UPDATE OF {', '.join(_MASTER_COLUMNS)} "
               f"ON generated_images WHEN {_MASTER_CHANGED.format(differs='IS NOT')} BEGIN "
               f"{_masters('OLD', '-')} {_masters('NEW', '')} END")
    op.execute("CREATE TRIGGER webhook_deliveries_metric_delivered AFTER UPDATE OF status ON webhook_deliveries "
               f"WHEN {_BECOMES_DELIVERED} BEGIN {_DELIVERED}; END")


def _postgresql_triggers() -> None:
    op.execute(
        "CREATE FUNCTION blogimg_variant_metric() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP <> 'INSERT' THEN {_STORED.format(row='OLD', sign='-')}; END IF; "
        f"IF TG_OP <> 'DELETE' THEN {_STORED.format(row='NEW', sign='')}; END IF; "
        "RETURN NULL; END $$")
    op.execute(
        "CREATE FUNCTION blogimg_imaging_metric() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"{_IMAGING}; RETURN NULL; END $$")
    op.execute("CREATE TRIGGER image_variants_metric_insert AFTER INSERT OR DELETE ON image_variants "
               "FOR EACH ROW EXECUTE FUNCTION blogimg_variant_metric()")
    op.execute("CREATE TRIGGER image_variants_metric_update AFTER UPDATE OF format, bytes ON image_variants "
               "FOR EACH ROW EXECUTE FUNCTION blogimg_variant_metric()")
    op.execute("CREATE TRIGGER generated_images_metric_imaging AFTER UPDATE OF status ON generated_images "
               f"FOR EACH ROW WHEN ({_BECOMES_SUCCEEDED}) EXECUTE FUNCTION blogimg_imaging_metric()")
    op.execute(
        "CREATE FUNCTION blogimg_master_metric() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP <> 'INSERT' THEN {_masters('OLD', '-')} END IF; "
        f"IF TG_OP <> 'DELETE' THEN {_masters('NEW', '')} END IF; "
        "RETURN NULL; END $$")
    op.execute(
        f"CREATE FUNCTION blogimg_delivered_metric() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {_DELIVERED}; "
        "RETURN NULL; END $$")
    op.execute("CREATE TRIGGER generated_images_metric_master AFTER INSERT OR DELETE ON generated_images "
               "FOR EACH ROW EXECUTE FUNCTION blogimg_master_metric()")
    op.execute(f"CREATE TRIGGER generated_images_metric_master_update AFTER UPDATE OF {', '.join(_MASTER_COLUMNS)} "
               f"ON generated_images FOR EACH ROW WHEN ({_MASTER_CHANGED.format(differs='IS DISTINCT FROM')}) "
               "EXECUTE FUNCTION blogimg_master_metric()")
    op.execute("CREATE TRIGGER webhook_deliveries_metric_delivered AFTER UPDATE OF status ON webhook_deliveries "
               f"FOR EACH ROW WHEN ({_BECOMES_DELIVERED}) EXECUTE FUNCTION blogimg_delivered_metric()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS image_variants_metric_insert ON image_variants")
        op.execute("DROP TRIGGER IF EXISTS image_variants_metric_update ON image_variants")
        op.execute("DROP TRIGGER IF EXISTS generated_images_metric_imaging ON generated_images")
        op.execute("DROP TRIGGER IF EXISTS generated_images_metric_master ON generated_images")
        op.execute("DROP TRIGGER IF EXISTS generated_images_metric_master_update ON generated_images")
        op.execute("DROP TRIGGER IF EXISTS webhook_deliveries_metric_delivered ON webhook_deliveries")
        for function in ("variant", "imaging", "master", "delivered"):
            op.execute(f"DROP FUNCTION IF EXISTS blogimg_{function}_metric()")
    else:
        for name in ("image_variants_metric_insert", "image_variants_metric_delete", "image_variants_metric_update",
                     "generated_images_metric_imaging", "generated_images_metric_master_insert",
                     "generated_images_metric_master_delete", "generated_images_metric_master_update",
                     "webhook_deliveries_metric_delivered"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_index(op.f('ix_worker_circuits_updated_at'), table_name='worker_circuits')
    op.drop_table('worker_circuits')
    op.drop_table('metric_counts')
