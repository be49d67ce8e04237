"""Helpers shared by test modules: import them from here, never from another test module or a conftest.

Paths and markers, posts on disk, a registry of fakes, the ``blogimg`` command as a subprocess,
and the text-search checks that more than one module runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pyvips
from sqlalchemy import insert, select

from blogimg.db.tables import BlogPost, GeneratedImage, ImagePromptRow, utcnow
from blogimg.domain import Status
from blogimg.pipeline.runtime import open_runtime
from blogimg.testing import FakeProvider

if TYPE_CHECKING:
    from blogimg.config import Settings
    from blogimg.db.catalog import Catalog
    from blogimg.providers.registry import ProviderRegistry
    from blogimg.storage import MemoryStorage

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPOSITORY_ROOT / "examples" / "posts"
# The SDKs' own variables: a developer's real keys or endpoints must never reach a test.
PROVIDER_VARIABLES = frozenset({
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_ADMIN_KEY",
    "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_VERTEX_BASE_URL",
    "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION", "GOOGLE_APPLICATION_CREDENTIALS",
})

ENGINES = ["sqlite", "postgresql"]
#: Run a test on SQLite and on PostgreSQL: ``@on_both_engines`` (or as a module's ``pytestmark``).
#: The ``database_url`` fixture (tests/conftest.py) takes the parameter.
on_both_engines = pytest.mark.parametrize("database_url", ENGINES, indirect=True)

#: The API key the app under test accepts (tests/api/conftest.py), and the header that sends it.
API_KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
#: Its read-only key (BLOGIMG_API_READ_KEYS): sees everything, changes nothing.
READ_KEY = "read-key-0123456789"
READ_AUTH = {"Authorization": f"Bearer {READ_KEY}"}


# --- posts and providers ---------------------------------------------------------------------


def write_posts(
    directory: Path,
    count: int,
    markers: int = 2,
    *,
    name: str = "post-{number}",
    title: str = "Post {number}",
    prompt: str = "picture {marker} of post {number}",
    tags: Iterable[str] = ("t",),
) -> Path:
    """Write ``count`` markdown posts with ``markers`` inline image markers each; return ``directory``.

    Every post also wants a cover, so ``count * (1 + markers)`` images in all. ``name``, ``title``
    and ``prompt`` are format strings of ``number`` (the post's, from 0) and, for ``prompt``,
    ``marker``; with no ``tags`` the front matter has no tags line.
    """
    directory.mkdir(parents=True, exist_ok=True)
    tag_list = list(tags)
    tag_line = f"tags: [{', '.join(tag_list)}]\n" if tag_list else ""
    for number in range(count):
        body = "\n\n".join(f"<!-- image: {prompt.format(marker=m, number=number)} -->" for m in range(markers))
        front = f"---\ntitle: {title.format(number=number)}\n{tag_line}---\n"
        (directory / f"{name.format(number=number)}.md").write_text(f"{front}{body}\n")
    return directory


def make_images(settings: Settings, storage: MemoryStorage, provider: FakeProvider | None = None) -> None:
    """Run a worker over the queue until it is empty (as `blogimg worker` would)."""
    provider = provider or FakeProvider("fake")
    registry = registry_with(provider)

    async def drain() -> None:
        async with open_runtime(settings, providers=[provider.info.name], registry=registry, storage=storage) as runtime:
            worker = runtime.worker()
            worker.poll_interval = 0.05
            task = asyncio.create_task(worker.run())
            while True:
                counts = await runtime.database.reporting.status_counts()
                if counts[Status.QUEUED] == 0 and counts[Status.RUNNING] == 0:
                    break
                await asyncio.sleep(0.05)
            worker.stop()
            await task

    asyncio.run(drain())


def registry_with(*providers: FakeProvider) -> ProviderRegistry:
    """A registry of exactly these providers (no built-ins, no plug-ins), each under its own name."""
    from blogimg.providers.registry import ProviderRegistry

    registry = ProviderRegistry({}, plugins=False)
    for provider in providers:
        registry.register(provider.info.name, provider)
    return registry


# --- the command line as a subprocess, against a temporary data directory ---------------------

BLOGIMG = [sys.executable, "-m", "blogimg"]


def cli_environment(data: Path, **extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("BLOGIMG_") and k not in PROVIDER_VARIABLES}
    environment.update(
        BLOGIMG_DATABASE_URL=f"sqlite+aiosqlite:///{data / 'blogimg.db'}",
        BLOGIMG_STORAGE_PATH=str(data / "images"),
        COLUMNS="200",
        # A command that crashes (a segmentation fault in a native library, seen once in CI) prints
        # every thread's Python stack on stderr, which the failing assertion shows; silent otherwise.
        PYTHONFAULTHANDLER="1",
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


# --- text search: a catalogue to search, and what a search should find ---------------------------

WORDS = ("Lighthouse", "harbour", "forest", "kitchen", "tea")


async def populate(catalog: Catalog, images: int, prompts: int = 20) -> None:
    started = utcnow() - timedelta(days=1)
    async with catalog.sessions.begin() as session:
        post = BlogPost(slug="search", title="Search", markdown="", summary="")
        session.add(post)
        await session.flush()
        await session.execute(insert(ImagePromptRow), [
            {"post_id": post.id, "kind": "inline", "position": n, "prompt": f"a {WORDS[n % 5]} at 50% scale, shot_{n}",
             "size": "1024x1024", "fingerprint": f"{n:064d}", "alt_hint": "", "heading": "",
             "created_at": started, "updated_at": started} for n in range(prompts)])
        prompt_ids = list(await session.scalars(select(ImagePromptRow.id).order_by(ImagePromptRow.id)))
        await session.execute(insert(GeneratedImage), [
            {"prompt_id": prompt_ids[n % prompts], "post_id": post.id, "variation": n // prompts,
             "status": "succeeded", "attempts": 1,
             "alt_text": None if n % 7 == 0 else f"{WORDS[(n + 2) % 5].upper()} under snow, frame {n}",
             "tags": [], "created_at": started + timedelta(seconds=n), "updated_at": started}
            for n in range(images)])


async def every_page(catalog: Catalog, phrase: str) -> list[int]:
    found, cursor = [], None
    while True:
        page = await catalog.search(text=phrase, provider=None, status=None, post_id=None, created_from=None,
                                    created_to=None, cursor=cursor, limit=100)
        found += [item.image.id for item in page.items]
        if not page.next_cursor:
            return found
        cursor = page.next_cursor


async def scanned(catalog: Catalog, phrase: str) -> list[int]:
    """What the filter means, computed the slow way in Python: newest first."""
    async with catalog.sessions() as session:
        prompts = dict((await session.execute(select(ImagePromptRow.id, ImagePromptRow.prompt))).all())
        rows = (await session.execute(select(GeneratedImage.id, GeneratedImage.prompt_id, GeneratedImage.alt_text)
                                      .order_by(GeneratedImage.created_at.desc(), GeneratedImage.id.desc()))).all()
    needle = phrase.lower()
    return [image_id for image_id, prompt_id, alt in rows
            if needle in prompts[prompt_id].lower() or needle in (alt or "").lower()]


async def uses_index(catalog: Catalog, phrase: str) -> bool:
    async with catalog.sessions() as session:
        return await catalog.text_index.condition(session, phrase, f"%{phrase}%") is not None


# --- fakes of time and of the SDKs' endpoints ---------------------------------------------------

class RecordingSleep:
    """An injected sleep that returns at once and remembers every wait it was asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def point_openai_at(monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    """The OpenAI SDK's own variables, aimed at a loopback fake."""
    from tests.fakes import openai_api

    monkeypatch.setenv("OPENAI_API_KEY", openai_api.API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)


def point_gemini_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """The Google GenAI SDK's own variables, aimed at a loopback fake (Imagen runs in Vertex mode)."""
    from tests.fakes import google_api

    monkeypatch.setenv("GEMINI_API_KEY", google_api.API_KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", url)
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", url)


def required_tool(name: str, install: str, variable: str) -> str:
    """The path of command ``name``; without it the test skips with the reason, except where
    ``variable`` is 1 (CI sets it), where it fails: CI can never pass by skipping."""
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not installed ({install})"
        if os.environ.get(variable) == "1":
            pytest.fail(f"{name} is required here ({variable}=1), but {reason}")
        pytest.skip(reason)
    return found


def exiftool() -> str:
    return required_tool("exiftool", "apt-get install libimage-exiftool-perl", "BLOGIMG_TEST_REQUIRE_EXIFTOOL")


def read_tags(files: dict[str, bytes], folder: Path) -> dict[str, dict[str, Any]]:
    """exiftool's tags (``-j -G``: group:name) of each stored file, by storage key."""
    paths = {}
    for key, data in files.items():
        path = folder / key.replace("/", "_")
        path.write_bytes(data)
        paths[str(path)] = key
    run = subprocess.run([exiftool(), "-j", "-G", *paths], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return {paths[entry["SourceFile"]]: entry for entry in json.loads(run.stdout)}


def photo_like(width: int, height: int) -> pyvips.Image:
    """A real photograph (scikit-image's astronaut), scaled to cover ``width``×``height``."""
    from skimage import data

    image = pyvips.Image.new_from_array(data.astronaut()).copy(interpretation="srgb")
    image = image.resize(max(width / image.width, height / image.height))
    return image.crop(0, 0, width, height).cast("uchar").copy_memory()
