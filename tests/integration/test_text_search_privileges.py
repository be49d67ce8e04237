"""On a managed PostgreSQL where the app's role may not create extensions, migration 0004 goes on
without pg_trgm, and search still answers, by scanning."""

from __future__ import annotations

import uuid

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from blogimg.db.catalog import Catalog
from blogimg.db.engine import alembic_config, open_database
from tests.postgres import postgres_database
from tests.support import every_page, populate, scanned, uses_index


async def test_without_the_extension_privilege_migrations_pass_and_search_scans() -> None:
    import psycopg

    role = f"blogimg_noext_{uuid.uuid4().hex[:8]}"
    with postgres_database() as url:
        admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as connection:
            if connection.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone():
                pytest.skip("pg_trgm is installed in the template database: nothing to refuse")
            # May create tables in the public schema, may not create extensions in the database.
            connection.execute(f'CREATE ROLE "{role}" LOGIN')
            connection.execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{role}"')
        try:
            engine, sessions = await open_database(make_url(url).set(username=role).render_as_string(hide_password=False))
            try:
                catalog = Catalog(engine, sessions)
                await populate(catalog, 200)
                assert not await uses_index(catalog, "frame 123")
                for phrase in ("frame 123", "kitchen at", "LIGHTHOUSE"):
                    assert await every_page(catalog, phrase) == await scanned(catalog, phrase)
            finally:
                await engine.dispose()
            with psycopg.connect(admin, autocommit=True) as connection:
                assert not connection.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone()
                version = connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]
                # Every migration ran to the end (0004 without its indexes).
                assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()
        finally:
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(f'DROP OWNED BY "{role}"')
    with psycopg.connect(make_url(url).set(drivername="postgresql", database="postgres")
                         .render_as_string(hide_password=False), autocommit=True) as connection:
        connection.execute(f'DROP ROLE IF EXISTS "{role}"')
