"""The one interface every image provider implements.

A provider turns an :class:`~blogimg.domain.ImageRequest` into untrusted image bytes, or raises
:class:`~blogimg.errors.ProviderError` carrying an :class:`~blogimg.domain.Outcome`. It does not
retry, sleep, fall back or write to the database: the chain and the worker own all of that, so
every provider gets the same, tested behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from blogimg.domain import ImageRequest, ProviderImage


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What a provider is, needs and can do; shown by ``blogimg providers``."""

    name: str
    description: str
    models: tuple[str, ...]
    key_env_vars: tuple[str, ...] = ()  #: any one of these configures it; () = needs no key
    sizes: tuple[str, ...] = ()  #: sizes it can make natively; () = any
    output_formats: tuple[str, ...] = ("png",)
    max_images_per_call: int = 1
    offline: bool = False  #: makes images without any network
    requires: tuple[str, ...] = ()  #: importable modules it needs (its SDK), checked before use
    extra: str | None = None  #: the pip extra that installs them: pip install 'blogimg[extra]'

    @property
    def needs_key(self) -> bool:
        return bool(self.key_env_vars)


@runtime_checkable
class ImageProvider(Protocol):
    """Something that makes one image for one request."""

    info: ProviderInfo

    async def generate(self, request: ImageRequest) -> ProviderImage:
        """Make the image, or raise ProviderError with the outcome class of the failure."""
        ...

    async def aclose(self) -> None:
        """Release connections; called once when a run ends."""
        ...


class CostEstimating(Protocol):
    """Optional: providers that can price a request before making it (budgets need this).

    A provider without ``estimate_cost`` has an unknown price, so with a budget set it is not
    called at all.
    """

    def estimate_cost(self, request: ImageRequest) -> float | None: ...
