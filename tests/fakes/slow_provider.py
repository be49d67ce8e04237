"""A FakeProvider that worker *processes* can load by name: ``tests.fakes.slow_provider:SlowProvider``.

Its latency comes from ``BLOGIMG_TEST_FAKE_LATENCY`` (seconds, default 0.1).
"""

from __future__ import annotations

import os

from blogimg.providers.base import ProviderInfo
from blogimg.testing import FakeProvider


class SlowProvider(FakeProvider):
    info = ProviderInfo(name="slow", description="Slow scripted fake for multi-process tests",
                        models=("slow-1",), offline=True)

    def __init__(self, settings: object | None = None) -> None:
        super().__init__("slow", model="slow-1", cost_usd=0.001,
                         latency=float(os.environ.get("BLOGIMG_TEST_FAKE_LATENCY", "0.1")))
