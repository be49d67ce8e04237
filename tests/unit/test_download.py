"""Image URLs are fetched only from public addresses, and the address checked is the one connected to."""

from __future__ import annotations

import ipaddress
import socket
import threading

import httpcore2
import pytest

from blogimg.providers.download import (
    DownloadPolicy,
    DownloadRefusedError,
    ImageDownloader,
    PublicOnlyBackend,
    address_refusal,
)
from tests.fakes.server import LoopbackServer, Reply


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.255.0.9", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fc00::1", "fd12:3456::1", "::ffff:127.0.0.1",
    "::ffff:10.0.0.1", "fe80::1", "::",
])
def test_private_addresses_are_refused(address: str) -> None:
    assert address_refusal(address) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "172.32.0.1", "100.128.0.1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(address) is None


def test_loopback_is_allowed_only_when_asked() -> None:
    assert address_refusal("127.0.0.1", allow_loopback=True) is None
    assert address_refusal("10.0.0.1", allow_loopback=True) is not None


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f000001", "017700000001", "[::ffff:127.0.0.1]",
                                  "localhost", "0"])
async def test_every_spelling_of_loopback_is_refused_before_connecting(host: str) -> None:
    with LoopbackServer(lambda request: Reply(200, b"x")) as server:
        port = server.url.rsplit(":", 1)[1]
        downloader = ImageDownloader(DownloadPolicy())
        with pytest.raises(DownloadRefusedError):
            await downloader.fetch(f"http://{host}:{port}/image.png")
        await downloader.aclose()
        assert server.connections == 0 and downloader.backend.connected == []


class RebindingDNS:
    """DNS for one name that rebinds: a public address on the first lookup, loopback on every later one.

    Installed as ``socket.getaddrinfo``, it answers every lookup in the process: the backend's
    resolver's (``system_resolver``) and the real network backend's, were it handed the name.
    """

    def __init__(self, name: str, first: str, later: str) -> None:
        self.name, self.first, self.later = name, first, later
        self.lookups: list[str] = []
        self._real = socket.getaddrinfo
        self._lock = threading.Lock()  # lookups run in the event loop's executor threads

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):  # type: ignore[no-untyped-def]
        name = host.decode() if isinstance(host, bytes) else host
        if name != self.name:
            return self._real(host, port, family, type, proto, flags)
        with self._lock:
            self.lookups.append(name)
            address = self.first if len(self.lookups) == 1 else self.later
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port or 0)))]


class OnThisMachineOnly(httpcore2.AsyncNetworkBackend):
    """The real network backend, except that an address off this machine fails at once, unsent."""

    def __init__(self) -> None:
        self.asked: list[str] = []  #: every host it was asked to connect to, as given
        self._real = httpcore2.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # type: ignore[no-untyped-def]
        self.asked.append(host)
        try:
            off_machine = not ipaddress.ip_address(host).is_loopback
        except ValueError:
            off_machine = False  # a name: the real backend looks it up, as it would in production
        if off_machine:
            raise httpcore2.ConnectError(f"{host} is off this machine, and tests never leave it")
        return await self._real.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                            socket_options=socket_options)

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):  # type: ignore[no-untyped-def]
        raise httpcore2.ConnectError("no unix sockets here")

    async def sleep(self, seconds: float) -> None:
        await self._real.sleep(seconds)


async def test_a_rebinding_name_is_looked_up_once_and_the_checked_address_is_the_one_connected_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # DNS rebinding: the name passes the check as a public address, then points at loopback. An
    # implementation that looks the name up again to connect (itself, or by handing the name to
    # the network backend) reaches the loopback server; the pinned one connects to the address
    # it checked, which here fails at once without leaving the machine.
    dns = RebindingDNS("images.example", first="93.184.216.34", later="127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", dns.getaddrinfo)
    network = OnThisMachineOnly()
    backend = PublicOnlyBackend(inner=network)  # the default resolver, system_resolver, asks `dns`
    with LoopbackServer(lambda request: Reply(200, b"internal secret")) as internal:
        port = internal.url.rsplit(":", 1)[1]
        # Wired as ImageDownloader wires it: one pool over the checking backend, no retries.
        async with httpcore2.AsyncConnectionPool(network_backend=backend, retries=0) as pool:
            with pytest.raises(httpcore2.ConnectError, match="tests never leave it"):
                await pool.request("GET", f"http://images.example:{port}/a.png")
    assert internal.connections == 0 and internal.requests == []
    assert dns.lookups == ["images.example"]  # one lookup per connection: its answer is checked and used
    assert network.asked == ["93.184.216.34"]  # connected to by address, never by name
    assert backend.connected == []


async def test_a_mixed_answer_is_refused() -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.5"]

    downloader = ImageDownloader(DownloadPolicy(), resolver=mixed)
    with pytest.raises(DownloadRefusedError, match="10.0.0.5"):
        await downloader.fetch("http://images.example/a.png")
    assert downloader.backend.connected == []
    await downloader.aclose()


async def test_redirects_to_private_addresses_are_refused() -> None:
    with LoopbackServer(lambda request: Reply(200, b"secret")) as internal:
        with LoopbackServer(lambda request: Reply(302, b"", {"Location": f"{internal.url.replace('127.0.0.1', '10.0.0.1')}/x"})) as public:
            downloader = ImageDownloader(DownloadPolicy(allow_loopback=True))
            with pytest.raises(DownloadRefusedError, match="10.0.0.1"):
                await downloader.fetch(f"{public.url}/image.png")
            await downloader.aclose()
        assert internal.connections == 0


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/", "/relative.png"])
async def test_only_http_urls(url: str) -> None:
    downloader = ImageDownloader(DownloadPolicy())
    with pytest.raises(DownloadRefusedError, match="only http"):
        await downloader.fetch(url)
    await downloader.aclose()


async def test_byte_cap_holds_with_and_without_content_length() -> None:
    big = b"x" * 5000

    def answer(request):  # type: ignore[no-untyped-def]
        return Reply(200, big, unsized=request.path == "/unsized.png")

    with LoopbackServer(answer) as server:
        downloader = ImageDownloader(DownloadPolicy(max_bytes=4096, allow_loopback=True))
        with pytest.raises(DownloadRefusedError, match="the cap is 4096"):
            await downloader.fetch(f"{server.url}/big.png")
        with pytest.raises(DownloadRefusedError, match="larger than the cap"):
            await downloader.fetch(f"{server.url}/unsized.png")
        small = ImageDownloader(DownloadPolicy(max_bytes=8192, allow_loopback=True))
        assert await small.fetch(f"{server.url}/big.png") == big
        assert await small.fetch(f"{server.url}/unsized.png") == big
        await downloader.aclose()
        await small.aclose()


async def test_a_slow_server_times_out() -> None:
    with LoopbackServer(lambda request: Reply(200, b"late", delay=1.0)) as server:
        downloader = ImageDownloader(DownloadPolicy(timeout=0.2, allow_loopback=True))
        with pytest.raises(Exception, match="longer than 0.2 s|timed out|ReadTimeout"):
            await downloader.fetch(f"{server.url}/slow.png")
        await downloader.aclose()
