"""Configuring webhooks: a private address is refused at startup in one line, and so is a missing or bad secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.errors import ConfigurationError
from blogimg.pipeline.webhook_endpoints import configure_endpoints
from blogimg.pipeline.webhook_signing import new_secret
from tests.support import run_cli

SECRET = new_secret()
PRIVATE_URLS = ["http://10.1.2.3/hooks", "https://192.168.0.10/hooks", "http://169.254.169.254/latest/meta-data",
                "http://[::1]:8080/hooks", "http://localhost/hooks", "http://[::ffff:127.0.0.1]/hooks",
                "http://0x7f000001/hooks"]


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
    ({"BLOGIMG_WEBHOOK_URLS": "http://10.0.0.1/hooks", "BLOGIMG_WEBHOOK_SECRET": SECRET},
     "error: setting BLOGIMG_WEBHOOK_URLS: webhook URL http://10.0.0.1/hooks is refused: '10.0.0.1' resolves to "
     "10.0.0.1 is not a public address"),
    ({"BLOGIMG_WEBHOOK_URLS": "http://localhost:8080/hooks", "BLOGIMG_WEBHOOK_SECRET": SECRET},
     "error: setting BLOGIMG_WEBHOOK_URLS: webhook URL http://localhost:8080/hooks is refused"),
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
