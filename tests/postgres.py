"""A PostgreSQL database of the test's own: created before, dropped after.

``BLOGIMG_TEST_POSTGRES_URL`` names a server (``.ci/run`` exports it); without it PostgreSQL
tests skip with that reason — except where ``BLOGIMG_TEST_REQUIRE_POSTGRES=1`` (CI), where a
missing server is a failure, so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SERVER_VARIABLE = "BLOGIMG_TEST_POSTGRES_URL"


def server_url() -> str:
    url = os.environ.get(SERVER_VARIABLE)
    if not url:
        if os.environ.get("BLOGIMG_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{SERVER_VARIABLE} is not set but PostgreSQL tests are required here")
        pytest.skip(f"PostgreSQL tests need {SERVER_VARIABLE} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    return url


@contextmanager
def postgres_database() -> Iterator[str]:
    """Yield the URL of a new, empty database on the test server; drop it afterwards."""
    try:
        import psycopg
    except ImportError:
        pytest.fail("PostgreSQL tests need psycopg: pip install 'blogimg[postgres]'")
    from sqlalchemy.engine import make_url

    server = make_url(server_url())
    name = f"blogimg_test_{uuid.uuid4().hex[:12]}"
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        connection = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        if os.environ.get("BLOGIMG_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL at {server.host}:{server.port} does not answer: {error}")
        pytest.skip(f"PostgreSQL at {server.host}:{server.port} does not answer")
    with connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
