"""Alerts end to end: a provider failing 30% of its calls drives a real worker, whose alert loop opens one
alert and whose webhook sender delivers exactly one ``alert.firing``; once the provider recovers,
exactly one ``alert.resolved``, though the receiver refuses (503) the first three attempts of every
event. Both are verified with the ``standardwebhooks`` package.
The CLI, the API and the status page then show the episode.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pyvips
import standardwebhooks
from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.config import Settings
from blogimg.db.alerts import open_alert, resolve_alert
from blogimg.db.database import Database
from blogimg.db.jobs import PostsToEnqueue
from blogimg.domain import ImageRequest, Outcome, ProviderImage
from blogimg.errors import ProviderError
from blogimg.pipeline.generate import read_posts
from blogimg.pipeline.runtime import open_runtime
from blogimg.pipeline.webhook_signing import new_secret
from blogimg.storage import MemoryStorage
from blogimg.testing import FakeProvider
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.support import on_both_engines, registry_with, run_cli, write_posts

SECRET = new_secret()
PNG = pyvips.Image.black(96, 64, bands=3).pngsave_buffer()


async def until(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


def alert_events(receiver: WebhookReceiver) -> list[dict]:
    """The accepted ``alert.*`` webhooks, each signature checked by the reference library."""
    webhook = standardwebhooks.Webhook(SECRET)
    payloads = [webhook.verify(body, headers) for headers, body in receiver.accepted]
    return [payload for payload in payloads if payload["type"].startswith("alert.")]


class FlakyProvider:
    """Fails calls 3, 6 and 9 of every ten (30%, never two in a row) until ``recover()``."""

    def __init__(self) -> None:
        self.failing = True
        self.fake = FakeProvider("flaky", handler=self.answer)

    def answer(self, request: ImageRequest, number: int) -> ProviderImage:
        if self.failing and number % 10 in (3, 6, 9):
            raise ProviderError(Outcome.TRANSIENT, "upstream busy", http_status=503)
        return ProviderImage(data=PNG, model="flaky-1", cost_usd=0.01)

    def recover(self) -> None:
        self.failing = False


@on_both_engines
async def test_a_failing_provider_fires_one_alert_and_resolves_it_once(tmp_path: Path, settings: Settings) -> None:
    provider = FlakyProvider()
    with WebhookReceiver(refuse_first=3) as receiver:  # down for each event's first three attempts
        configured = settings.model_copy(update={
            "webhook_urls": [receiver.url], "webhook_secret": SECRET, "webhook_allow_loopback": True,
            "webhook_retry_delays": [0.05] * 6,  # retried at once, often enough to outlast the refusals
            # A nine-second window evaluated five times a second: the test sees minutes pass in seconds,
            # and a loaded machine's pauses (a CI run) are still short beside the window.
            "alert_evaluation_seconds": 0.2, "alert_window_minutes": 0.15, "alert_min_calls": 10})
        async with open_runtime(configured, providers=["flaky"], registry=registry_with(provider.fake),
                                storage=MemoryStorage()) as runtime:
            posts = read_posts([write_posts(tmp_path / "posts", 150, markers=1)], configured)
            await runtime.database.queue.enqueue(PostsToEnqueue(posts))  # 300 images: work for the whole test
            worker = runtime.worker()
            worker.poll_interval = 0.05
            task = asyncio.create_task(worker.run())
            try:
                await until(lambda: len(alert_events(receiver)) >= 1)
                calls_when_fired = len(provider.fake.calls)
                provider.recover()
                await until(lambda: len(alert_events(receiver)) >= 2)
                await asyncio.sleep(1.0)  # evaluations go on: nothing more may come
            finally:
                worker.stop(immediately=True)
                await task
        assert len(provider.fake.calls) > calls_when_fired  # the recovery was seen in real calls
        events = alert_events(receiver)
        assert [event["type"] for event in events] == ["alert.firing", "alert.resolved"]
        firing, resolved = (event["data"] for event in events)
        assert (firing["rule"], firing["subject"], firing["state"]) == ("failure_rate", "flaky", "firing")
        assert 0.2 < firing["value"] <= 0.4 and firing["threshold"] == 0.2
        assert (resolved["id"], resolved["state"]) == (firing["id"], "resolved")
        assert resolved["value"] is None or resolved["value"] < 0.18
        ids = [headers["webhook-id"] for headers, body in receiver.accepted if '"alert.' in body]
        assert ids == [f"alert:{firing['id']}:firing", f"alert:{firing['id']}:resolved"]
        assert [receiver.attempts[message_id] for message_id in ids] == [4, 4]  # three refused, the fourth taken

        # The episode is kept: the API's history, and nothing firing now.
        answer, page = await asyncio.to_thread(read_api, configured)
        assert answer["firing"] == [] and [item["id"] for item in answer["items"]] == [firing["id"]]
        assert answer["items"][0]["state"] == "resolved" and answer["next_cursor"] is None
        assert "None firing" in page


def read_api(settings: Settings) -> tuple[dict, str]:
    with TestClient(create_app(settings, storage=MemoryStorage())) as client:
        return client.get("/api/alerts").json(), client.get("/").text


async def two_episodes(settings: Settings) -> None:
    database = await Database.open(settings.database_url)
    try:
        async with database.engine.begin() as connection:
            old = await open_alert(connection, "storage", "", value=95.0, threshold=90.0, message="storage nearly full")
            assert old is not None
            await resolve_alert(connection, old.id, value=10.0, message="storage fine again")
            await open_alert(connection, "failure_rate", "openai", value=0.5, threshold=0.2,
                             message="openai: 50% of 12 calls failed <b>now</b>")
    finally:
        await database.close()


def test_the_page_the_api_and_the_cli_show_a_firing_alert(tmp_path: Path, settings: Settings) -> None:
    asyncio.run(two_episodes(settings))
    with TestClient(create_app(settings, storage=MemoryStorage())) as client:
        first = client.get("/api/alerts", params={"limit": 1}).json()
        second = client.get("/api/alerts", params={"limit": 1, "cursor": first["next_cursor"]}).json()
        refused = client.get("/api/alerts", params={"cursor": "x"})
        too_far = client.get("/api/alerts", params={"cursor": "2200000000"})  # past any id (32-bit on PostgreSQL)
        panel = client.get("/overview/alerts").text
    assert [item["rule"] for item in first["firing"]] == ["failure_rate"]
    assert [item["rule"] for item in first["items"] + second["items"]] == ["failure_rate", "storage"]
    assert second["next_cursor"] is None and refused.status_code == 422 and too_far.status_code == 422
    assert "1 firing" in panel and "&lt;b&gt;now&lt;/b&gt;" in panel and "<b>now" not in panel

    data = Path(settings.database_url.removeprefix("sqlite+aiosqlite:///")).parent
    table = run_cli("alerts", data=data, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "1 alert firing" in table.stdout and "openai" in table.stdout and "storage fine again" in table.stdout
    listed = run_cli("alerts", "--all", "--json", data=data, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert [item["state"] for item in document["items"]] == ["firing", "resolved"]
    assert [item["subject"] for item in document["firing"]] == ["openai"]
