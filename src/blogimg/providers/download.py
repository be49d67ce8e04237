"""Fetching images that providers return as URLs — only from public addresses, once, capped.

A provider's URL is untrusted input: it could point at 127.0.0.1, the cloud metadata service at
169.254.169.254, or a host whose DNS answer changes between the check and the connection. So the
check lives in the network backend itself: every connection (redirect hops included) resolves
the host, refuses unless *every* address is public, and connects to the address it checked. No
proxy from the environment is used, since a proxy would make the checked address meaningless.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpcore2
import httpx2

from blogimg.domain import Outcome
from blogimg.errors import ProviderError

Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Spelled out, rather than trusting is_global alone, so the refused ranges are reviewable here.
_REFUSED_NETWORKS = tuple(ipaddress.ip_network(network) for network in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    "::/96", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "64:ff9b::/96", "2002::/16",
))
_LOOPBACK_NETWORKS = tuple(ipaddress.ip_network(network) for network in ("127.0.0.0/8", "::1/128"))
MAX_REDIRECTS = 3


class DownloadRefusedError(ProviderError):
    """A URL we will not fetch: a private address, a bad scheme, too big, or too slow."""

    def __init__(self, message: str) -> None:
        super().__init__(Outcome.INVALID, message, code="download_refused")


@dataclass(frozen=True, slots=True)
class DownloadPolicy:
    max_bytes: int = 50 * 1024 * 1024
    timeout: float = 60.0
    allow_loopback: bool = False  #: for tests against loopback fakes only


def address_refusal(address: str, *, allow_loopback: bool = False) -> str | None:
    """Why ``address`` (an IP literal) may not be connected to, or None when it is public."""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if allow_loopback and any(ip in network for network in _LOOPBACK_NETWORKS):
        return None
    if any(ip in network for network in _REFUSED_NETWORKS) or not ip.is_global:
        return f"{ip} is not a public address"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (IP literals, decimal forms included)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise DownloadRefusedError(f"cannot resolve {host!r}: {error.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class PublicOnlyBackend(httpcore2.AsyncNetworkBackend):
    """A network backend that connects only to public addresses, and to the one it checked."""

    def __init__(self, *, allow_loopback: bool = False, resolver: Resolver = system_resolver,
                 inner: httpcore2.AsyncNetworkBackend | None = None) -> None:
        self.allow_loopback = allow_loopback
        self._resolve = resolver
        self._inner = inner or httpcore2.AnyIOBackend()
        self.connected: list[str] = []  #: addresses actually connected to, for audits and tests

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
                          ) -> httpcore2.AsyncNetworkStream:
        addresses = await self._resolve(host, port)
        if not addresses:
            raise DownloadRefusedError(f"{host!r} resolves to no address")
        for address in addresses:
            reason = address_refusal(address, allow_loopback=self.allow_loopback)
            if reason:  # one private answer is enough to refuse: DNS rebinding mixes them
                raise DownloadRefusedError(f"refusing to fetch from {host!r}: {reason}")
        # TLS still verifies the certificate against the URL's host name: httpcore takes the
        # server name from the request, not from the address we connect to.
        stream = await self._inner.connect_tcp(addresses[0], port, timeout=timeout,
                                               local_address=local_address,
                                               socket_options=socket_options)
        self.connected.append(addresses[0])
        return stream

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
                                  ) -> httpcore2.AsyncNetworkStream:
        raise DownloadRefusedError("unix sockets are never fetched from")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class ImageDownloader:
    """Downloads provider image URLs under a :class:`DownloadPolicy`; one per provider."""

    def __init__(self, policy: DownloadPolicy = DownloadPolicy(), *, resolver: Resolver = system_resolver) -> None:
        self.policy = policy
        self.backend = PublicOnlyBackend(allow_loopback=policy.allow_loopback, resolver=resolver)
        transport = httpx2.AsyncHTTPTransport(retries=0)
        # httpx2 takes no network backend argument; swap the pool for one that uses ours.
        transport._pool = httpcore2.AsyncConnectionPool(network_backend=self.backend, retries=0)
        self._client = httpx2.AsyncClient(transport=transport, follow_redirects=False,
                                          trust_env=False, timeout=policy.timeout)

    async def fetch(self, url: str) -> bytes:
        """The body at ``url``; DownloadRefusedError for anything we refuse, ProviderError(transient) for failures."""
        try:
            async with asyncio.timeout(self.policy.timeout):
                return await self._fetch(url)
        except TimeoutError:
            raise ProviderError(Outcome.TRANSIENT, f"image download took longer than {self.policy.timeout:g} s") from None
        except httpx2.HTTPError as error:
            if isinstance(error.__context__, DownloadRefusedError):
                raise error.__context__ from None
            raise ProviderError(Outcome.TRANSIENT, f"image download failed: {error}") from None

    async def _fetch(self, url: str) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise DownloadRefusedError(f"refusing to fetch {parts.scheme or 'a relative'} URL: only http(s)")
            try:
                async with self._client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        outcome = Outcome.TRANSIENT if response.status_code >= 500 or response.status_code == 429 else Outcome.EMPTY
                        raise ProviderError(outcome, f"image download answered HTTP {response.status_code}",
                                            http_status=response.status_code)
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > self.policy.max_bytes:
                        raise DownloadRefusedError(f"image is {declared} bytes; the cap is {self.policy.max_bytes}")
                    return await self._read_capped(response)
            except DownloadRefusedError:
                raise
        raise DownloadRefusedError(f"more than {MAX_REDIRECTS} redirects")

    async def _read_capped(self, response: httpx2.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.policy.max_bytes:
                raise DownloadRefusedError(f"image is larger than the cap of {self.policy.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        await self._client.aclose()
