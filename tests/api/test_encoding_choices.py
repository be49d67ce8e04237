"""How each stored file was encoded (quality chosen, SSIMULACRA2 score, encoder) reaches the catalogue,
the API and the image page; files made before migration 0014 read as unknown, and 0014 undoes cleanly.

The made image goes through the real path after imaging: the worker's ``finished_image`` and the
queue's fenced ``complete``. Its files are built here with chosen values, because what quality
search picks is imaging's concern (and its own tests'); this one is about carrying them.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.engine import alembic_config
from blogimg.db.tables import BlogPost, GeneratedImage, ImagePromptRow, ImageVariant
from blogimg.domain import ProviderImage, Status
from blogimg.imaging.process import EncodedFile, ProcessedImage
from blogimg.pipeline.job_results import finished_image
from blogimg.storage import MemoryStorage
from tests.support import AUTH, on_both_engines

pytestmark = on_both_engines

#: (format, width, quality, score, encoder) of each variant made; one lossless, one never measured
VARIANTS = (("avif", 48, 51, 74.31, "libaom"), ("jpeg", 80, 62, 78.5, "jpegli"),
            ("webp", 48, None, 99.1, "libwebp-lossless"), ("webp", 80, 70, None, "libwebp"))


def encoded(role: str, image_format: str, width: int, quality: int | None, score: float | None,
            encoder: str | None) -> EncodedFile:
    data = f"{role} {image_format} {width}".encode()  # distinct bytes: distinct content-addressed keys
    return EncodedFile(role, image_format, width, width * 2 // 3, data, quality=quality, score=score, encoder=encoder)


def processed() -> ProcessedImage:
    return ProcessedImage(
        master=encoded("master", "png", 120, None, None, "libpng"),
        variants=tuple(encoded("variant", *variant) for variant in VARIANTS),
        thumbnail=encoded("thumbnail", "webp", 30, 80, None, "libwebp"),
        lqip="", dominant_color="#203040", source_format="png", bytes_in=5000)


async def make_one(settings: Settings, storage: MemoryStorage, made: ProcessedImage) -> int:
    """Claim the queued job and complete it with ``made``, as a worker does after imaging."""
    database = await Database.open(settings.database_url)
    try:
        (job,) = await database.queue.claim(owner="test", limit=1, lease_seconds=60)
        context = await database.queue.job_context(job)
        for file in made.files:
            await storage.put(file.storage_key, file.data, file.content_type)
        image = ProviderImage(data=b"", model="fake-model", cost_usd=0.01)
        finished = finished_image(context, "fake", image, [], made, generated_ms=5, processing_ms=7,
                                  caption="A lighthouse", alt_text_max_chars=125)
        assert await database.queue.complete(job, finished)
        return job.image_id
    finally:
        await database.close()


def variants_column(page: str) -> list[str]:
    """The text of the variants table's last cell (quality · score), row by row."""
    table = page[page.index('id="variants-heading"'):]
    table = table[:table.index("</table>")]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[-1] for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
             if "<td" in row]
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in cells]


def test_each_files_encoding_reaches_the_api_and_the_page(api_settings: Settings) -> None:
    storage = MemoryStorage()
    with TestClient(create_app(api_settings, storage=storage), headers=AUTH) as client:
        assert client.post("/api/images/generate", json={"prompts": [{"prompt": "a lighthouse"}]}).status_code == 202
        image_id = asyncio.run(make_one(api_settings, storage, processed()))
        body = client.get(f"/api/images/{image_id}").json()
        page = client.get(f"/images/{image_id}").text

    assert body["status"] == "succeeded" and body["missing_files"] == []
    got = sorted((v["format"], v["width"], v["quality"], v["score"], v["encoder"]) for v in body["variants"])
    assert got == sorted(VARIANTS)
    assert (body["master_quality"], body["master_score"], body["master_encoder"]) == (None, None, "libpng")
    assert variants_column(page) == ["q 51 · 74.3 libaom", "q 62 · 78.5 jpegli", "lossless libwebp-lossless",
                                     "q 70 libwebp"]
    assert re.search(r"<dt>Master quality · score</dt><dd>lossless <span class=\"muted\">libpng</span>", page)


def test_images_made_before_0014_read_as_unknown_and_0014_undoes_cleanly(
        api_settings: Settings, database_url: str) -> None:
    sync_url = database_url.replace("+aiosqlite", "")  # psycopg is sync and async alike
    if sync_url.startswith("sqlite"):
        Path(sync_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(sync_url)
    try:
        migrate(engine, "0013")
        image_id = insert_made_image(engine)
        with TestClient(create_app(api_settings, storage=MemoryStorage()), headers=AUTH) as client:  # upgrades
            body = client.get(f"/api/images/{image_id}").json()
            page = client.get(f"/images/{image_id}").text
        assert [(v["quality"], v["score"], v["encoder"]) for v in body["variants"]] == [(None, None, None)]
        assert (body["master_quality"], body["master_score"], body["master_encoder"]) == (None, None, None)
        assert variants_column(page) == ["–"]

        added = {"quality", "score", "encoder"}
        assert added <= columns(engine, "image_variants")
        migrate(engine, "0013", down=True)
        assert not added & columns(engine, "image_variants")
        assert not {f"master_{name}" for name in added} & columns(engine, "generated_images")
        with engine.connect() as connection:  # the rows outlive the columns
            assert connection.scalar(sa.select(sa.func.count()).select_from(sa.table("image_variants"))) == 1
        migrate(engine, "head")
        assert {f"master_{name}" for name in added} <= columns(engine, "generated_images")
    finally:
        engine.dispose()


def migrate(engine: sa.Engine, revision: str, *, down: bool = False) -> None:
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def columns(engine: sa.Engine, table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns(table)}


def insert_made_image(engine: sa.Engine) -> int:
    """A succeeded image with one variant, written as blogimg wrote them before 0014."""
    with engine.begin() as connection:
        post_id = connection.execute(sa.insert(BlogPost).values(slug="old", title="Old", markdown="")
                                     .returning(BlogPost.id)).scalar_one()
        prompt_id = connection.execute(sa.insert(ImagePromptRow).values(
            post_id=post_id, kind="inline", position=0, prompt="an old harbour", size="1024x1024",
            fingerprint="f" * 64).returning(ImagePromptRow.id)).scalar_one()
        image_id = connection.execute(sa.insert(GeneratedImage).values(
            prompt_id=prompt_id, post_id=post_id, status=Status.SUCCEEDED, width=120, height=80, format="png",
            storage_key="aa/bb/old.png", bytes_original=900, bytes_stored=800).returning(GeneratedImage.id)).scalar_one()
        connection.execute(sa.insert(ImageVariant).values(image_id=image_id, format="webp", width=48, height=32,
                                                          bytes=100, storage_key="aa/bb/old-48.webp"))
    return int(image_id)
