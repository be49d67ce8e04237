"""Configuring webhooks: a private address is refused at startup in one line, and so is a missing or bad secret."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.tables import WebhookDelivery
from blogimg.db.webhooks import record_event
from blogimg.errors import ConfigurationError
from blogimg.pipeline.webhook_endpoints import configure_endpoints, masked_url
from blogimg.pipeline.webhook_signing import new_secret
from blogimg.providers.download import DownloadRefusedError, address_refusal
from tests.support import run_cli

SECRET = new_secret()
PRIVATE_URLS = ["http://10.1.2.3/hooks", "https://192.168.0.10/hooks", "http://169.254.169.254/latest/meta-data",
                "http://[::1]:8080/hooks", "http://localhost/hooks", "http://[::ffff:127.0.0.1]/hooks",
                "http://0x7f000001/hooks", "http://[::127.0.0.1]/hooks", "http://[::10.0.0.1]:8080/hooks"]


@pytest.mark.parametrize("url", PRIVATE_URLS)
async def test_a_private_address_is_refused_when_configured(settings: Settings, database: Database, url: str) -> None:
    configured = settings.model_copy(update={"webhook_urls": [url], "webhook_secret": SECRET})
    with pytest.raises(ConfigurationError, match="BLOGIMG_WEBHOOK_URLS: webhook URL .* is refused: .*not a public address"):
        await configure_endpoints(configured, database.webhooks)
    assert await database.webhooks.endpoints() == []


async def test_loopback_only_with_the_test_flag(settings: Settings, database: Database) -> None:
    configured = settings.model_copy(update={"webhook_urls": ["http://127.0.0.1:9/hooks"], "webhook_secret": SECRET,
                                             "webhook_allow_loopback": True})
    [endpoint] = await configure_endpoints(configured, database.webhooks)
    assert endpoint.enabled and endpoint.source == "settings"
    # Gone from the settings: disabled, its log kept; back in them: enabled again.
    [removed] = await configure_endpoints(configured.model_copy(update={"webhook_urls": []}), database.webhooks)
    assert not removed.enabled
    [back] = await configure_endpoints(configured, database.webhooks)
    assert back.enabled and back.id == endpoint.id
    with pytest.raises(ConfigurationError):  # the private ranges stay refused with the flag
        await configure_endpoints(configured.model_copy(update={"webhook_urls": ["http://10.0.0.1/"]}), database.webhooks)


@pytest.mark.parametrize(("variables", "message"), [
    ({"BLOGIMG_WEBHOOK_URLS": "http://10.0.0.1/hooks/token-123?key=abc", "BLOGIMG_WEBHOOK_SECRET": SECRET},
     "error: setting BLOGIMG_WEBHOOK_URLS: webhook URL http://10.0.0.1/… is refused: '10.0.0.1' resolves to "
     "10.0.0.1 is not a public address"),
    ({"BLOGIMG_WEBHOOK_URLS": "http://localhost:8080/hooks/token-123", "BLOGIMG_WEBHOOK_SECRET": SECRET},
     "error: setting BLOGIMG_WEBHOOK_URLS: webhook URL http://localhost:8080/… is refused"),
    ({"BLOGIMG_WEBHOOK_URLS": "https://hooks.example.com/x"},
     "error: setting BLOGIMG_WEBHOOK_SECRET: BLOGIMG_WEBHOOK_URLS needs this secret"),
    ({"BLOGIMG_WEBHOOK_URLS": "https://hooks.example.com/x", "BLOGIMG_WEBHOOK_SECRET": "whsec_tooshort"},
     "error: setting BLOGIMG_WEBHOOK_SECRET: a webhook secret is 'whsec_' followed by base64"),
])
def test_the_worker_refuses_to_start_in_one_line(tmp_path: Path, variables: dict[str, str], message: str) -> None:
    result = run_cli("worker", "--providers", "card", data=tmp_path / "data", cwd=tmp_path, timeout=60, **variables)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "whsec_tooshort" not in result.stderr and SECRET not in result.stderr
    assert "token-123" not in result.stderr and "key=abc" not in result.stderr  # a URL's path may hold a token


def test_ipv4_compatible_ipv6_addresses_are_refused() -> None:
    assert address_refusal("::127.0.0.1") == "::7f00:1 is not a public address"
    assert address_refusal("::10.0.0.1") is not None and address_refusal("::8.8.8.8") is not None
    assert address_refusal("::1", allow_loopback=True) is None  # the loopback flag still lets ::1 in


async def test_an_endpoint_removed_from_the_settings_fails_its_pending_deliveries(
        settings: Settings, database: Database) -> None:
    configured = settings.model_copy(update={"webhook_urls": ["http://127.0.0.1:9/hooks"], "webhook_secret": SECRET,
                                             "webhook_allow_loopback": True})
    await configure_endpoints(configured, database.webhooks)
    async with database.sessions.begin() as session:
        await record_event(session, "image.failed", {"image_id": 1})
    assert await database.webhooks.pending_count() == 1
    await configure_endpoints(configured.model_copy(update={"webhook_urls": []}), database.webhooks)
    assert await database.webhooks.pending_count() == 0  # nobody would ever send it: failed, as disable() does
    async with database.sessions() as session:
        [row] = await session.scalars(select(WebhookDelivery))
    assert row.status == "failed" and "removed from BLOGIMG_WEBHOOK_URLS" in (row.last_error or "")


async def test_a_host_that_does_not_resolve_at_startup_does_not_stop_the_worker(
        settings: Settings, database: Database, caplog: pytest.LogCaptureFixture) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        if host == "private.example.test":
            return ["10.0.0.7"]
        raise DownloadRefusedError(f"cannot resolve {host!r}: Name or service not known")

    url = "https://hooks.example.test/in/token-123?key=abc"
    configured = settings.model_copy(update={"webhook_urls": [url], "webhook_secret": SECRET})
    with caplog.at_level(logging.WARNING):
        [endpoint] = await configure_endpoints(configured, database.webhooks, resolver=resolver)
    assert endpoint.enabled and endpoint.url == url  # the sender's check at each connection decides
    assert "webhook URL https://hooks.example.test/…: cannot resolve 'hooks.example.test'" in caplog.text
    assert "token-123" not in caplog.text and "key=abc" not in caplog.text and SECRET not in caplog.text
    # An address that resolves, but to a refused one, still stops the start.
    with pytest.raises(ConfigurationError, match=r"webhook URL https://private.example.test/… is refused"):
        await configure_endpoints(configured.model_copy(update={"webhook_urls": ["https://private.example.test/x"]}),
                                  database.webhooks, resolver=resolver)


def test_a_masked_url_keeps_scheme_host_and_port_only() -> None:
    assert masked_url("https://hooks.example.com/in/token-123?key=abc") == "https://hooks.example.com/…"
    assert masked_url("http://127.0.0.1:8080/hooks") == "http://127.0.0.1:8080/…"
    assert masked_url("http://[::1]:9/x") == "http://[::1]:9/…"
    assert masked_url("https://hooks.example.com") == "https://hooks.example.com/"
