"""Which webhook endpoints may be configured: the public-address policy of image downloads, applied to URLs we post to.

An endpoint is checked when it is configured (BLOGIMG_WEBHOOK_URLS at startup, POST /api/webhooks)
and again on every connection the sender makes (pipeline/webhook_sender.py), since a name's DNS
answer may change after it was checked. Every address the host resolves to must be public:
10.x, 192.168.x, 169.254.169.254, ::1, localhost … are refused, loopback only with
BLOGIMG_WEBHOOK_ALLOW_LOOPBACK (tests against local receivers).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from blogimg.config import Settings
from blogimg.db.webhook_deliveries import Endpoint, Webhooks
from blogimg.errors import ConfigurationError, ProviderError
from blogimg.providers.download import Resolver, address_refusal, system_resolver

LONGEST_URL = 2000


def url_problem(url: str) -> str | None:
    """What is wrong with ``url``'s form (not its address), or None."""
    if len(url) > LONGEST_URL:
        return f"a webhook URL has at most {LONGEST_URL} characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"{url!r} is not a URL: {error}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL with a host"
    if parts.username is not None or parts.password is not None:
        return f"{url!r} holds a user name: put no credentials in a webhook URL"
    if port == 0:
        return f"{url!r} names port 0"
    return None


async def endpoint_refusal(url: str, *, allow_loopback: bool = False,
                           resolver: Resolver = system_resolver) -> str | None:
    """Why blogimg will not post to ``url``, or None when its host resolves to public addresses only."""
    problem = url_problem(url)
    if problem:
        return problem
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await resolver(host, port)
    except ProviderError as error:  # the resolver's own "cannot resolve"
        return f"webhook URL {url}: {error}"
    if not addresses:
        return f"webhook URL {url}: {host!r} resolves to no address"
    for address in addresses:
        reason = address_refusal(address, allow_loopback=allow_loopback)
        if reason:  # one private answer is enough: DNS rebinding mixes them
            return f"webhook URL {url} is refused: {host!r} resolves to {reason}"
    return None


async def configure_endpoints(settings: Settings, webhooks: Webhooks, *,
                              resolver: Resolver = system_resolver) -> list[Endpoint]:
    """Make the catalogue's settings endpoints BLOGIMG_WEBHOOK_URLS; ConfigurationError for a refused one."""
    for url in settings.webhook_urls:
        reason = await endpoint_refusal(url, allow_loopback=settings.webhook_allow_loopback, resolver=resolver)
        if reason:
            raise ConfigurationError(f"setting BLOGIMG_WEBHOOK_URLS: {reason}")
    return await webhooks.sync_configured(settings.webhook_urls, settings.webhook_secret)
