"""Whole batches against the SDK fakes: outcomes, a ledger that matches the servers, budgets, private URLs."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from blogimg.config import Settings
from blogimg.db.tables import GeneratedImage, GenerationAttempt
from blogimg.pipeline.generate import generate
from blogimg.providers.openai import NAME as OPENAI
from blogimg.providers.pricing import default_prices
from blogimg.storage import MemoryStorage
from tests.fakes.google_api import FakeGemini
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import LoopbackServer, Reply
from tests.support import on_both_engines, write_posts

TRANSIENT = {"rate_limited", "server_error", "overloaded"}


async def ledger(database, *columns, where=()) -> list:
    async with database.sessions() as session:
        return list((await session.execute(select(*columns).where(*where))).all())


@on_both_engines
async def test_fifty_with_transient_errors_and_one_refusal(
        tmp_path: Path, provider_settings: Settings, database, fake_openai: FakeOpenAI,
        fake_gemini: FakeGemini) -> None:
    kinds = sorted(TRANSIENT)
    served = Counter()
    lock = threading.Lock()

    def openai_script(prompt: str, number: int) -> str:
        # Requests arrive in whatever order the concurrent images make them, so the transient
        # share is kept by count, not by request number: whenever fewer than one in five answers
        # so far were transient, this one is. Over the batch that is 20-25% of what the server sees.
        with lock:
            served["all"] += 1
            if "picture 0 of post 3" in prompt:
                behaviour = "overloaded"  # this image exhausts its retries on openai and falls back to google
            elif served["transient"] * 5 < served["all"]:
                behaviour = kinds[served["transient"] % 3]
            elif "picture 0 of post 7" in prompt:
                behaviour = "refused"
            else:
                behaviour = "ok"
            served["transient"] += behaviour in TRANSIENT
            return behaviour

    fake_openai.script = openai_script
    fake_gemini.script = lambda prompt, number: "overloaded" if number % 5 == 0 else "ok"
    posts = write_posts(tmp_path / "posts", 25, markers=1)  # 25 covers + 25 inline = 50 images
    settings = provider_settings.model_copy(update={"max_concurrent": 6})
    summary = await generate([posts], settings, providers=["openai", "google"], storage=MemoryStorage())

    assert (summary.succeeded, summary.failed) == (49, 1)
    assert [code for _, code, _ in summary.failures] == ["refused"]
    # The ledger and the servers agree call for call, outcome class by outcome class.
    rows = await ledger(database, GenerationAttempt.provider, GenerationAttempt.outcome)
    by_provider = Counter(provider for provider, _ in rows)
    assert by_provider["openai"] == fake_openai.generations
    assert by_provider["google"] == fake_gemini.generations
    assert sum(by_provider.values()) == summary.provider_calls
    answered = Counter("transient" if b in TRANSIENT else b for b in fake_openai.behaviours)
    recorded = Counter(outcome for provider, outcome in rows if provider == "openai")
    assert recorded == answered
    assert 0.2 <= answered["transient"] / fake_openai.generations <= 0.3  # the failures really happened
    assert fake_gemini.generations >= 1 and Counter(fake_gemini.behaviours)["ok"] >= 1
    # The batch's cost is the ledger's sum, and every image's cost is its own calls' sum.
    costs = [cost for (cost,) in await ledger(database, GenerationAttempt.cost_usd)]
    assert None not in costs
    assert summary.cost_usd == pytest.approx(sum(costs), abs=1e-9) and summary.cost_usd > 0
    images = await ledger(database, GeneratedImage.id, GeneratedImage.cost_usd, GeneratedImage.status)
    for image_id, cost, status in images:
        if status == "succeeded":
            (own,) = (await ledger(database, func.sum(GenerationAttempt.cost_usd),
                                   where=[GenerationAttempt.image_id == image_id]))[0]
            assert cost == pytest.approx(own)


@on_both_engines
async def test_a_budget_that_fits_ten_images_pays_for_exactly_ten(
        tmp_path: Path, provider_settings: Settings, database, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAI(usage=False) as fake:  # no usage: each image costs its list price
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-blogimg-fake")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        price = default_prices().image_price(OPENAI, provider_settings.openai_model, "1024x1024", "low")
        assert price
        settings = provider_settings.model_copy(update={
            "quality": "low", "cover_size": "1024x1024", "inline_size": "1024x1024",
            "budget_daily_usd": round(10 * price, 6), "max_concurrent": 4})
        posts = write_posts(tmp_path / "posts", 8, markers=1)  # 16 images wanted
        summary = await generate([posts], settings, providers=["openai"], storage=MemoryStorage())

    assert fake.generations == 10
    assert (summary.succeeded, summary.failed) == (10, 6)
    assert {code for _, code, _ in summary.failures} == {"budget"}
    assert all("daily budget" in message for _, _, message in summary.failures)
    assert summary.provider_calls == 10 and summary.cost_usd == pytest.approx(10 * price)
    pending = await ledger(database, GenerationAttempt.id, where=[GenerationAttempt.outcome == "pending"])
    assert pending == []


async def test_a_url_at_a_private_address_is_refused_without_connecting(
        tmp_path: Path, provider_settings: Settings, database, fake_openai: FakeOpenAI) -> None:
    with LoopbackServer(lambda request: Reply(200, b"secret")) as internal:
        fake_openai.private_url = f"{internal.url}/latest/meta-data"
        fake_openai.script = lambda prompt, number: "url_private"
        # The default policy: loopback is as private as 10/8.
        settings = provider_settings.model_copy(update={"download_allow_loopback": False})
        posts = write_posts(tmp_path / "posts", 1, markers=0)
        summary = await generate([posts], settings, providers=["openai"], storage=MemoryStorage())
        assert internal.connections == 0 and internal.requests == []
    assert summary.failed == 1 and summary.failures[0][1] == "download_refused"
    assert "not a public address" in summary.failures[0][2]
    # The provider made (and billed) the image, so the call's cost stays in the ledger.
    (cost,) = (await ledger(database, GenerationAttempt.cost_usd))[0]
    assert cost == default_prices().image_price(OPENAI, provider_settings.openai_model, "1536x1024", "high")


async def test_a_truncated_image_fails_as_rejected_with_its_cost_kept(
        tmp_path: Path, provider_settings: Settings, database, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = lambda prompt, number: "truncated"
    posts = write_posts(tmp_path / "posts", 1, markers=0)
    summary = await generate([posts], provider_settings, providers=["openai"], storage=MemoryStorage())
    assert summary.failed == 1 and summary.failures[0][1] == "image_rejected"
    assert summary.cost_usd > 0 and summary.provider_calls == 1


async def test_quota_pauses_openai_and_google_serves_the_rest(
        tmp_path: Path, provider_settings: Settings, fake_openai: FakeOpenAI, fake_gemini: FakeGemini) -> None:
    fake_openai.script = lambda prompt, number: "quota"
    posts = write_posts(tmp_path / "posts", 3, markers=1)
    summary = await generate([posts], provider_settings.model_copy(update={"max_concurrent": 1}),
                             providers=["openai", "google"], storage=MemoryStorage())
    assert (summary.succeeded, summary.failed) == (6, 0)
    assert fake_openai.generations == 1 and fake_gemini.generations == 6


async def test_vision_alt_text_captions_the_stored_image_and_is_in_the_ledger(
        tmp_path: Path, provider_settings: Settings, database, fake_openai: FakeOpenAI,
        fake_gemini: FakeGemini) -> None:
    settings = provider_settings.model_copy(update={"alt_text_vision": "google", "alt_text_max_chars": 40})
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "light.md").write_text("---\ntitle: Lighthouses\nlang: fr\n---\n<!-- image: a lighthouse | alt: "
                                    "Mon phare -->\n")
    summary = await generate([posts], settings, providers=["openai"], storage=MemoryStorage())
    assert summary.succeeded == 2
    alts = {alt for (alt,) in await ledger(database, GeneratedImage.alt_text)}
    # The author's own alt text is kept; the cover gets the model's caption, cut to 40 characters.
    assert "Mon phare" in alts
    caption = next(alt for alt in alts if alt != "Mon phare")
    assert caption.startswith("A red lighthouse") and len(caption) <= 40 and caption.endswith("…")
    assert len(fake_gemini.captions) == 1
    parts = fake_gemini.captions[0]
    blob = parts[0]["inlineData"]  # protobuf JSON: the SDK spells the field mime_type, the docs mimeType
    assert blob.get("mimeType", blob.get("mime_type")) in ("image/webp", "image/jpeg")
    assert "Lighthouses" in parts[1]["text"] and "'fr'" in parts[1]["text"]
    rows = await ledger(database, GenerationAttempt.provider, GenerationAttempt.model, GenerationAttempt.cost_usd)
    assert ("google", "gemini-2.5-flash") in {(p, m) for p, m, _ in rows}
    assert summary.provider_calls == fake_openai.generations + fake_gemini.generations == 3


async def test_vision_alt_text_without_a_key_is_one_clear_error(tmp_path: Path, provider_settings: Settings) -> None:
    from blogimg.errors import ConfigurationError

    posts = write_posts(tmp_path / "posts", 1, markers=0)
    with pytest.raises(ConfigurationError, match="GEMINI_API_KEY"):
        await generate([posts], provider_settings.model_copy(update={"alt_text_vision": "google"}),
                       providers=["card"], storage=MemoryStorage())


def test_the_cli_uses_the_sdk_variables_and_reports_cost_and_failures(tmp_path: Path) -> None:
    from tests.fakes.openai_api import API_KEY
    from tests.support import run_cli

    with FakeOpenAI(lambda prompt, number: "refused" if "post 1" in prompt.lower() else "ok") as fake:
        posts = write_posts(tmp_path / "posts", 2, markers=0)
        result = run_cli("generate", str(posts), data=tmp_path / "data", cwd=tmp_path,
                         OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=fake.base_url, BLOGIMG_AVIF_EFFORT="0",
                         BLOGIMG_OPENAI_MODEL="gpt-image-1.5",  # the model whose token prices give $0.1334
                         BLOGIMG_VARIANT_WIDTHS="64")
    assert result.returncode == 1, result.stderr  # one image failed: the run says so
    assert fake.generations == 2
    assert "refused" in result.stderr and "Traceback" not in result.stderr
    assert "$0.1334" in result.stdout  # one paid image: the tokens the fake reported, priced
    assert API_KEY not in result.stdout + result.stderr
