"""``openai``: the Images API through the official ``openai`` SDK.

The pieces every OpenAI call shares — the SDK client (:func:`make_client`) and the reading of its
errors into outcome classes (:func:`classify_error`) — are module functions, used by the image
provider here and by the vision captioner (:mod:`blogimg.providers.vision`).

The SDK reads its own variables — ``OPENAI_API_KEY``, ``OPENAI_BASE_URL`` (which also points it
at OpenAI-compatible image servers) — and blogimg never overrides them. The SDK's own retries
are off: the chain retries, so every call is one ledger row and one Retry-After decision.
GPT image models answer in base64; compatible servers may answer with a URL, which is fetched
at once under the download policy (public addresses only, capped, timed).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from blogimg.domain import ImageRequest, Outcome, ProviderImage
from blogimg.errors import ConfigurationError, ProviderError
from blogimg.providers.base import ProviderInfo
from blogimg.providers.http_errors import RATE_LIMITED, outcome_for_status, retry_after_seconds
from blogimg.providers.pricing import PriceTable, TokenUsage, default_prices

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from blogimg.config import Settings

NAME = "openai"
STANDARD_SIZES = ("1024x1024", "1536x1024", "1024x1536")
# Error codes of the Images API that mean the safety system said no, and those that mean money.
_REFUSAL_CODES = frozenset({"content_policy_violation", "moderation_blocked", "image_content_policy_violation"})
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"})
ImageQuality = Literal["low", "medium", "high", "auto"]
_QUALITIES: dict[str, ImageQuality] = {"low": "low", "medium": "medium", "high": "high", "auto": "auto"}

INFO = ProviderInfo(
    name=NAME,
    description="OpenAI GPT image models (Images API, official SDK).",
    # Every image model of the SDK's ImageModel (openai 3.57), current ones first; not its dated snapshots,
    # gpt-image-1 (shut down 2026-10-23) or dall-e-2/3 (retired 2026-05-12).
    models=("gpt-image-2.6-sunburst", "gpt-image-2.6-flare", "gpt-image-2.5-sunburst", "gpt-image-2.5-flare",
            "gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini", "chatgpt-image-latest"),
    key_env_vars=("OPENAI_API_KEY",),
    sizes=STANDARD_SIZES,
    output_formats=("png",),
    requires=("openai", "httpx2"),
    extra="openai",
)


def standard_size(width: int, height: int) -> str:
    """The standard size closest in shape to the request; imaging crops and scales from there."""
    ratio = width / height
    if ratio > 1.2:
        return "1536x1024"
    if ratio < 1 / 1.2:
        return "1024x1536"
    return "1024x1024"


def make_client(settings: Settings) -> AsyncOpenAI:
    """The SDK client for one run, with the SDK's own retries off (the chain retries).

    api_key and base_url are left to the SDK, which reads OPENAI_API_KEY / OPENAI_BASE_URL.
    """
    try:
        import openai
    except ImportError:
        raise ConfigurationError(f"provider {NAME!r} needs its SDK: {INFO.install_hint}") from None
    try:
        return openai.AsyncOpenAI(max_retries=0, timeout=settings.provider_timeout)
    except openai.OpenAIError as error:  # no key in the environment
        raise ConfigurationError(f"provider {NAME!r}: {error}") from None


def sdk_errors() -> tuple[type[Exception], ...]:
    """What a call through the SDK raises that :func:`classify_error` reads (the SDK is installed)."""
    import openai

    return (openai.OpenAIError, ValueError)


def classify_error(error: Exception) -> ProviderError:
    """An SDK error as the outcome class of the call, with the server's Retry-After when it is transient."""
    import openai

    if isinstance(error, openai.APITimeoutError):
        return ProviderError(Outcome.TRANSIENT, "the request timed out")
    if isinstance(error, openai.APIConnectionError):
        return ProviderError(Outcome.TRANSIENT, f"connection failed: {error.__cause__ or error}")
    if isinstance(error, openai.APIStatusError):
        status, code = error.status_code, (error.code or "")
        message = _message_of(error)
        if code in _REFUSAL_CODES or "safety system" in message.lower():
            outcome = Outcome.REFUSED
        elif code in _QUOTA_CODES or error.type in _QUOTA_CODES:
            # A RateLimitError (429) too: out of credit is not cured by waiting.
            outcome = Outcome.QUOTA
        else:
            outcome = outcome_for_status(status)
        retry_after = retry_after_seconds(dict(error.response.headers)) if outcome is Outcome.TRANSIENT else None
        label = f"HTTP {status}" + (f" {code}" if code else "")
        return ProviderError(outcome, f"{label}: {message}", http_status=status, retry_after=retry_after,
                             code=RATE_LIMITED if outcome is Outcome.TRANSIENT and status == 429 else None)
    if isinstance(error, openai.APIResponseValidationError | ValueError):  # a 200 whose body is not the JSON expected
        return ProviderError(Outcome.TRANSIENT, f"malformed response: {error}", http_status=200)
    return ProviderError(Outcome.INVALID, f"{type(error).__name__}: {error}")


class OpenAIProvider:
    """One SDK client per run, shared by every job."""

    info = INFO

    def __init__(self, settings: Settings, *, prices: PriceTable | None = None) -> None:
        from blogimg.providers.download import DownloadPolicy, ImageDownloader

        self._client = make_client(settings)
        self._errors = sdk_errors()
        self.model = settings.openai_model
        self.quality = settings.quality
        self.info = replace(INFO, models=(self.model, *(m for m in INFO.models if m != self.model)))
        self.prices = prices or default_prices()
        self._downloader = ImageDownloader(DownloadPolicy(
            max_bytes=settings.download_max_bytes, timeout=settings.download_timeout,
            allow_loopback=settings.download_allow_loopback))

    def estimate_cost(self, request: ImageRequest) -> float | None:
        size = standard_size(request.size.width, request.size.height)
        if request.quality == "auto":  # the model picks: budget for the dearest it could pick
            known = [p.usd for p in self.prices.image_prices(NAME, self.model) if p.size in (size, "*")]
            return max(known) if known else None
        return self.prices.image_price(NAME, self.model, size, request.quality)

    async def generate(self, request: ImageRequest) -> ProviderImage:
        size = standard_size(request.size.width, request.size.height)
        quality = _QUALITIES.get(request.quality)
        if quality is None:
            raise ProviderError(Outcome.INVALID, f"quality {request.quality!r} is not one of {', '.join(_QUALITIES)}",
                                cost_usd=0.0)
        try:
            response = await self._client.images.generate(
                model=self.model, prompt=request.prompt, size=size, quality=quality, n=1)
        except self._errors as error:
            raise classify_error(error) from None
        cost = self._cost(response.usage, size, request.quality)
        items = response.data or []
        if not items:
            raise ProviderError(Outcome.EMPTY, "the response held no image", http_status=200, cost_usd=cost)
        item = items[0]
        data = await self._image_bytes(item, cost)
        return ProviderImage(data=data, model=self.model, cost_usd=cost, revised_prompt=item.revised_prompt)

    async def _image_bytes(self, item: Any, cost: float | None) -> bytes:
        if item.b64_json:
            try:
                return base64.b64decode(item.b64_json, validate=True)
            except (binascii.Error, ValueError):
                raise ProviderError(Outcome.EMPTY, "b64_json is not valid base64", http_status=200,
                                    cost_usd=cost) from None
        if item.url:
            try:
                return await self._downloader.fetch(item.url)
            except ProviderError as failure:
                failure.cost_usd = cost  # the image was made and billed even if we cannot fetch it
                raise
        raise ProviderError(Outcome.EMPTY, "the response held neither b64_json nor url", http_status=200,
                            cost_usd=cost)

    def _cost(self, usage: Any, size: str, quality: str) -> float | None:
        if usage is not None:
            input_details = getattr(usage, "input_tokens_details", None)
            output_details = getattr(usage, "output_tokens_details", None)
            tokens = TokenUsage(
                input_text=getattr(input_details, "text_tokens", None) or (0 if input_details else usage.input_tokens),
                input_image=getattr(input_details, "image_tokens", 0) or 0,
                output_image=getattr(output_details, "image_tokens", None) or (0 if output_details else usage.output_tokens),
                output_text=getattr(output_details, "text_tokens", 0) or 0,
            )
            cost = self.prices.token_cost(NAME, self.model, tokens)
            if cost is not None:
                return cost
        return self.prices.image_price(NAME, self.model, size, quality)

    async def aclose(self) -> None:
        await self._client.close()
        await self._downloader.aclose()


def _message_of(error: Any) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:500]
    return str(getattr(error, "message", error))[:500]
