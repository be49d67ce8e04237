"""Running the real ``blogimg`` command as a subprocess against a temporary data directory."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROVIDER_VARIABLES

BLOGIMG = [sys.executable, "-m", "blogimg"]


def cli_environment(data: Path, **extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("BLOGIMG_") and k not in PROVIDER_VARIABLES}
    environment.update(
        BLOGIMG_DATABASE_URL=f"sqlite+aiosqlite:///{data / 'blogimg.db'}",
        BLOGIMG_STORAGE_PATH=str(data / "images"),
        COLUMNS="200",
    )
    environment.update(extra)
    return environment


def run_cli(*arguments: str, data: Path, cwd: Path, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BLOGIMG, *arguments], cwd=cwd, env=cli_environment(data, **extra),
                          capture_output=True, text=True, timeout=timeout)


def query(database: Path, sql: str, *parameters: object) -> list[tuple]:
    with sqlite3.connect(database, timeout=30) as connection:
        return connection.execute(sql, parameters).fetchall()


def stored_files(images: Path) -> set[str]:
    return {p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")}


def referenced_keys(database: Path) -> set[str]:
    keys = {row[0] for row in query(database, "SELECT storage_key FROM image_variants")}
    for master, thumbnail in query(database, "SELECT storage_key, thumbnail_key FROM generated_images WHERE status = 'succeeded'"):
        keys |= {master, thumbnail}
    return keys
