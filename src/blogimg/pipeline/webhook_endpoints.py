"""Which webhook endpoints may be configured: the public-address policy of image downloads, applied to URLs we post to.

An endpoint is checked when it is configured (BLOGIMG_WEBHOOK_URLS at startup, POST /api/webhooks)
and again on every connection the sender makes (pipeline/webhook_sender.py), since a name's DNS
answer may change after it was checked. Every address the host resolves to must be public:
10.x, 192.168.x, 169.254.169.254, ::1, localhost … are refused, loopback only with
BLOGIMG_WEBHOOK_ALLOW_LOOPBACK (tests against local receivers).

A host that cannot be resolved at startup is not a reason to stop the worker (a receiver's DNS
outage would take image generation down with it): it is said in a warning, and the sender's
check at each connection decides. Only an address that is refused stops the start.

Receivers' URLs often carry a token in their path or query, so errors and logs name an endpoint
by :func:`masked_url` (scheme, host and port) only; the API shows the whole URL to full keys.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from blogimg.config import Settings
from blogimg.db.webhook_deliveries import Endpoint, Webhooks
from blogimg.errors import ConfigurationError, ProviderError
from blogimg.providers.download import Resolver, address_refusal, system_resolver

log = logging.getLogger(__name__)
LONGEST_URL = 2000


def masked_url(url: str) -> str:
    """``scheme://host[:port]/…``: ``url`` without its path and query, which may hold a token."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "(a URL that does not parse)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    shown = f"{parts.scheme}://{host}{f':{port}' if port is not None else ''}/"
    return shown + ("…" if parts.path.strip("/") or parts.query or parts.fragment else "")


def url_problem(url: str) -> str | None:
    """What is wrong with ``url``'s form (not its address), or None."""
    if len(url) > LONGEST_URL:
        return f"a webhook URL has at most {LONGEST_URL} characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"a webhook URL is not a URL: {error}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{masked_url(url)} is not an http(s) URL with a host"
    if parts.username is not None or parts.password is not None:
        return "a webhook URL holds a user name: put no credentials in a webhook URL"
    if port == 0:
        return f"{masked_url(url)} names port 0"
    return None


async def endpoint_refusal(url: str, *, allow_loopback: bool = False, resolver: Resolver = system_resolver,
                           refuse_unresolved: bool = True) -> str | None:
    """Why blogimg will not post to ``url``, or None when its host resolves to public addresses only.

    With ``refuse_unresolved=False`` a host that resolves to nothing now is let through with a
    warning: the sender checks every connection's addresses anyway.
    """
    problem = url_problem(url)
    if problem:
        return problem
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    shown = masked_url(url)
    try:
        addresses = await resolver(host, port)
        unresolved = None if addresses else f"{host!r} resolves to no address"
    except ProviderError as error:  # the resolver's own "cannot resolve"
        addresses, unresolved = [], str(error)
    if unresolved is not None:
        if refuse_unresolved:
            return f"webhook URL {shown}: {unresolved}"
        log.warning("webhook URL %s: %s; its address is checked again at each delivery", shown, unresolved)
        return None
    for address in addresses:
        reason = address_refusal(address, allow_loopback=allow_loopback)
        if reason:  # one private answer is enough: DNS rebinding mixes them
            return f"webhook URL {shown} is refused: {host!r} resolves to {reason}"
    return None


async def configure_endpoints(settings: Settings, webhooks: Webhooks, *,
                              resolver: Resolver = system_resolver) -> list[Endpoint]:
    """Make the catalogue's settings endpoints BLOGIMG_WEBHOOK_URLS; ConfigurationError for a refused one.

    A host that does not resolve now is configured all the same (see the module's doc).
    """
    for url in settings.webhook_urls:
        reason = await endpoint_refusal(url, allow_loopback=settings.webhook_allow_loopback, resolver=resolver,
                                        refuse_unresolved=False)
        if reason:
            raise ConfigurationError(f"setting BLOGIMG_WEBHOOK_URLS: {reason}")
    return await webhooks.sync_configured(settings.webhook_urls, settings.webhook_secret)
