"""The interfaces every provider implements: image providers and captioners.

An image provider turns an :class:`~blogimg.domain.ImageRequest` into untrusted image bytes; a
captioner turns a :class:`CaptionRequest` (a stored image and its post) into one sentence of alt
text. Both raise :class:`~blogimg.errors.ProviderError` carrying an
:class:`~blogimg.domain.Outcome` when a call fails. Neither retries, sleeps, falls back or writes
to the database: the chain (:mod:`blogimg.pipeline.chain`) and the worker own all of that, so
every call gets the same, tested behaviour.

Optional capability, for both: ``estimate_cost(request) -> float | None``, the price of a call
before it is made (budgets need it). Without it the price is unknown, so with a budget set the
call is not made at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from blogimg.domain import ImageRequest, ProviderImage


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What a provider (or captioner) is, needs and can do; shown by ``blogimg providers``."""

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

    @property
    def install_hint(self) -> str:
        """How to install what ``requires`` names."""
        return f"pip install 'blogimg[{self.extra or self.name}]'"


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


@dataclass(frozen=True, slots=True)
class CaptionRequest:
    """A stored image to describe, and the post it illustrates."""

    image: bytes = field(repr=False)  #: a small web variant, not the provider's original
    mime_type: str
    title: str
    summary: str = ""
    language: str = "en"
    max_chars: int = 125


@dataclass(frozen=True, slots=True)
class Caption:
    """A successful caption call: the text (possibly empty: the chain calls that ``empty``) and its cost."""

    text: str
    model: str
    cost_usd: float | None  #: None means the price is unknown, never free


@runtime_checkable
class Captioner(Protocol):
    """Something that writes alt text for one stored image (``BLOGIMG_ALT_TEXT_VISION``)."""

    info: ProviderInfo

    async def caption(self, request: CaptionRequest) -> Caption:
        """Describe the image, or raise ProviderError with the outcome class of the failure."""
        ...

    async def aclose(self) -> None:
        """Release connections; called once when a run ends."""
        ...
