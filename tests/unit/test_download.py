"""Image URLs are fetched only from public addresses, and the address checked is the one connected to."""

from __future__ import annotations

import pytest

from blogimg.providers.download import (
    DownloadPolicy,
    DownloadRefusedError,
    ImageDownloader,
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


async def test_the_checked_address_is_the_one_connected_to() -> None:
    # A resolver that answers differently on each lookup (DNS rebinding) cannot slip through:
    # the check and the connection use one lookup's answer.
    answers = iter([["8.8.8.8"], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    downloader = ImageDownloader(DownloadPolicy(timeout=0.5), resolver=rebinding)
    with pytest.raises(Exception):  # noqa: B017 (8.8.8.8 is unreachable here; any failure will do)
        await downloader.fetch("http://images.example/a.png")
    assert downloader.backend.connected in ([], ["8.8.8.8"])
    await downloader.aclose()


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
