"""``blogimg migrate-storage``: every object the catalogue refers to is copied, verified by reading it
back, and a run cut off half-way is finished by running it again; nothing is switched on failure."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from blogimg.cli.migrate import destination
from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.errors import InputError
from blogimg.pipeline.generate import generate
from blogimg.pipeline.migrate_storage import migrate_storage
from blogimg.storage import LocalStorage, MemoryStorage, StoredObject
from tests.fakes import moto_s3
from tests.fakes.moto_s3 import create_bucket, remove_bucket, s3_client
from tests.fakes.moto_s3 import environment as moto_environment
from tests.support import query, referenced_keys, run_cli, stored_files, write_posts

moto_s3_endpoint = moto_s3.moto_s3_endpoint  # the session fixture, where pytest looks for it

FAST: dict[str, Any] = {"BLOGIMG_COVER_SIZE": "320x200", "BLOGIMG_INLINE_SIZE": "200x200", "BLOGIMG_VARIANT_WIDTHS": "96",
        "BLOGIMG_AVIF_EFFORT": "0"}


class Interrupted(Exception):
    """What a process killed half-way looks like to the code: it stops wherever it was."""


class CutOffStorage(MemoryStorage):
    """A destination that stops the run after ``allowed`` puts (None: never), and counts how many
    puts run at once."""

    def __init__(self, allowed: int | None) -> None:
        super().__init__()
        self.allowed = allowed
        self.started = self.in_flight = self.most_in_flight = 0

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        self.started += 1
        if self.allowed is not None and self.started > self.allowed:
            raise Interrupted
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.002)  # a network round trip: lets other copies start meanwhile
            return await super().put(key, data, content_type)
        finally:
            self.in_flight -= 1


class GarblingStorage(MemoryStorage):
    """A destination that keeps one key's bytes wrong (a bad disk, a proxy that re-encodes)."""

    def __init__(self, garbled: str) -> None:
        super().__init__()
        self.garbled = garbled

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        return await super().put(key, data[::-1] if key == self.garbled else data, content_type)


@pytest.fixture
def small(settings: Settings) -> Settings:
    return settings.model_copy(update={"cover_size": "320x200", "inline_size": "200x200", "variant_widths": [96]})


@pytest.fixture
async def library(tmp_path: Path, small: Settings) -> AsyncIterator[tuple[Database, MemoryStorage]]:
    """Three images made by the offline card provider, plus an orphan object nobody refers to."""
    source = MemoryStorage()
    summary = await generate([write_posts(tmp_path / "posts", 1, markers=2)], small, providers=["card"],
                             storage=source)
    assert summary.succeeded == 3
    await source.put("zz/yy/orphan.webp", b"nobody's", "image/webp")
    database = await Database.open(small.database_url)
    yield database, source
    await database.close()


async def catalogue_keys(database: Database) -> dict[str, int]:
    return await database.catalog.referenced_keys()


async def test_every_referenced_object_is_copied_and_verified(library: tuple[Database, MemoryStorage]) -> None:
    database, source = library
    keys = await catalogue_keys(database)
    assert sorted(set(keys.values())) == [1, 2, 3] and len(keys) >= 3 * 4  # master, thumbnail, variants
    destination = CutOffStorage(allowed=None)
    progress: list[int] = []
    report = await migrate_storage(database.catalog, source, destination, concurrency=3, page_size=2,
                                   on_image=lambda done: progress.append(done.images))
    assert report.ok and report.images == 3 and report.copied == len(keys) and report.already_there == 0
    assert set(destination.files) == set(keys)  # the orphan stays behind
    assert all(destination.files[key] == source.files[key] for key in keys)
    assert report.bytes_copied == sum(len(source.files[key]) for key in keys)
    assert progress == [1, 2, 3]
    assert 1 < destination.most_in_flight <= 3  # a few at once, never more than asked
    assert destination.content_types[next(key for key in keys if key.endswith(".webp"))] == "image/webp"

    again = await migrate_storage(database.catalog, source, destination)
    assert again.ok and again.copied == 0 and again.already_there == len(keys)
    assert destination.puts == len(keys)  # nothing written twice


async def test_a_run_cut_off_half_way_is_finished_by_the_next(library: tuple[Database, MemoryStorage]) -> None:
    database, source = library
    keys = await catalogue_keys(database)
    destination = CutOffStorage(allowed=5)
    with pytest.raises(Interrupted):
        await migrate_storage(database.catalog, source, destination, concurrency=2)
    done = set(destination.files)
    assert 0 < len(done) <= 5
    torn = sorted(done)[0]
    destination.files[torn] = b"half a file"  # a copy left wrong must not count as done

    destination.allowed = None
    report = await migrate_storage(database.catalog, source, destination, concurrency=2)
    assert report.ok, report.failures
    assert report.already_there == len(done) - 1  # the sound copies of the first run are kept
    assert report.copied == len(keys) - len(done) + 1  # the rest, and the torn one again
    for key in keys:
        assert hashlib.sha256(destination.files[key]).digest() == hashlib.sha256(source.files[key]).digest()
    assert set(destination.files) == set(keys)


async def test_a_missing_source_object_is_reported_with_its_image(library: tuple[Database, MemoryStorage]) -> None:
    database, source = library
    keys = await catalogue_keys(database)
    lost = sorted(key for key in keys if key.endswith(".avif"))[0]
    del source.files[lost]
    destination = MemoryStorage()
    report = await migrate_storage(database.catalog, source, destination)
    assert not report.ok
    assert [(failure.image_id, failure.key, failure.reason) for failure in report.failures] == [
        (keys[lost], lost, "missing from the source")]
    assert set(destination.files) == set(keys) - {lost}  # everything else is copied


async def test_a_copy_that_reads_back_wrong_is_a_failure(library: tuple[Database, MemoryStorage]) -> None:
    database, source = library
    keys = await catalogue_keys(database)
    garbled = sorted(keys)[0]
    report = await migrate_storage(database.catalog, source, GarblingStorage(garbled))
    assert [(failure.image_id, failure.key, failure.reason) for failure in report.failures] == [
        (keys[garbled], garbled, "the copy read back differs from the source")]
    assert report.copied == len(keys) - 1


async def test_local_to_local_through_a_folder(library: tuple[Database, MemoryStorage], tmp_path: Path) -> None:
    database, source = library
    destination = LocalStorage(tmp_path / "elsewhere")
    report = await migrate_storage(database.catalog, source, destination)
    assert report.ok
    assert stored_files(tmp_path / "elsewhere") == set(await catalogue_keys(database))


def test_the_command_copies_verifies_and_says_what_to_switch(tmp_path: Path) -> None:
    data, moved = tmp_path / "data", tmp_path / "moved"
    made = run_cli("generate", str(write_posts(tmp_path / "posts", 1, markers=1)), data=data, cwd=tmp_path, **FAST)
    assert made.returncode == 0, made.stderr
    (data / "images" / "zz").mkdir()
    (data / "images" / "zz" / "orphan.webp").write_bytes(b"nobody's")
    keys = referenced_keys(data / "blogimg.db")

    result = run_cli("migrate-storage", "--to", "local", "--to-path", str(moved), data=data, cwd=tmp_path, **FAST)
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"2 images: {len(keys)} files verified" in result.stdout
    assert f"BLOGIMG_STORAGE=local\n  BLOGIMG_STORAGE_PATH={moved}" in result.stdout
    assert stored_files(moved) == keys
    assert all((moved / key).read_bytes() == (data / "images" / key).read_bytes() for key in keys)

    again = run_cli("migrate-storage", "--to", "local", "--to-path", str(moved), data=data, cwd=tmp_path, **FAST)
    assert f"(0 copied now, {len(keys)} already there" in again.stdout

    [(image_id, master)] = query(data / "blogimg.db", "SELECT id, storage_key FROM generated_images "
                                                      "ORDER BY id LIMIT 1")
    (data / "images" / master).unlink()
    failed = run_cli("migrate-storage", "--to", "local", "--to-path", str(tmp_path / "third"), data=data,
                     cwd=tmp_path, **FAST)
    assert failed.returncode == 1
    assert f"image {image_id}: {master}: missing from the source" in failed.stderr
    assert "nothing was switched" in failed.stderr
    assert "BLOGIMG_STORAGE=" not in failed.stdout  # no switch is offered


@pytest.mark.parametrize(("arguments", "message"), [
    (["--to", "s3", "--to-path", "x"], "error: --to-path is for --to local"),
    (["--to", "local", "--to-bucket", "b"], "error: --to-bucket is for --to s3"),
    (["--to", "ftp"], "error: --to 'ftp': use one of local, s3, cloudinary, vercel-blob"),
    (["--to", "local"], "error: the destination is the storage configured now"),
    (["--to", "s3"], "error: --to s3 needs a bucket: pass --to-bucket"),
])
def test_options_that_do_not_fit_are_one_line(tmp_path: Path, arguments: list[str], message: str) -> None:
    data = tmp_path / "data"
    assert run_cli("init", data=data, cwd=tmp_path).returncode == 0
    result = run_cli("migrate-storage", *arguments, data=data, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("configured", "given"), [("blog", "blog/"), ("/blog/", "blog"), ("blog/", "/blog")])
def test_a_prefix_is_the_same_folder_however_it_is_written(configured: str, given: str) -> None:
    for backend in ("s3", "vercel-blob", "cloudinary"):
        source = Settings(storage=backend, storage_bucket="b" if backend == "s3" else None, storage_prefix=configured)
        with pytest.raises(InputError, match="the destination is the storage configured now"):
            destination(source, to=backend, path=None, bucket="b" if backend == "s3" else None, prefix=given)
    moved = destination(Settings(storage="s3", storage_bucket="b", storage_prefix=configured),
                        to="s3", path=None, bucket=None, prefix="other")
    assert moved.storage_prefix == "other"


def test_the_command_moves_a_local_library_into_an_s3_bucket(tmp_path: Path, moto_s3_endpoint: str) -> None:
    """``blogimg migrate-storage --to s3 --to-bucket B`` from local disk into moto's S3: every
    referenced file arrives with the same SHA-256, and a second run copies nothing."""
    data = tmp_path / "data"
    made = run_cli("generate", str(write_posts(tmp_path / "posts", 1, markers=1)), data=data, cwd=tmp_path, **FAST)
    assert made.returncode == 0, made.stderr
    keys = referenced_keys(data / "blogimg.db")
    bucket = create_bucket(moto_s3_endpoint)
    aws = {name: value for name, value in moto_environment(moto_s3_endpoint, bucket).items()
           if name.startswith("AWS_")}  # the source stays local: only the credentials and endpoint
    try:
        result = run_cli("migrate-storage", "--to", "s3", "--to-bucket", bucket, data=data, cwd=tmp_path,
                         **FAST, **aws)
        assert result.returncode == 0, result.stderr + result.stdout
        assert f"2 images: {len(keys)} files verified" in result.stdout
        assert f"BLOGIMG_STORAGE=s3\n  BLOGIMG_STORAGE_BUCKET={bucket}" in result.stdout
        client = s3_client(moto_s3_endpoint)
        arrived = {item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                   for item in page.get("Contents", [])}
        assert arrived == keys
        for key in keys:
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert hashlib.sha256(body).digest() == hashlib.sha256((data / "images" / key).read_bytes()).digest()

        again = run_cli("migrate-storage", "--to", "s3", "--to-bucket", bucket, data=data, cwd=tmp_path,
                        **FAST, **aws)
        assert again.returncode == 0, again.stderr + again.stdout
        assert f"(0 copied now, {len(keys)} already there" in again.stdout
    finally:
        remove_bucket(moto_s3_endpoint, bucket)
