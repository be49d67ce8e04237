"""``google``: Gemini image models and Imagen through the official ``google-genai`` SDK.

Gemini image models (the default) answer ``generate_content`` with an inline image part; Imagen
models (``imagen-*``) use ``generate_images``, which the SDK serves only in Vertex mode
(``GOOGLE_GENAI_USE_VERTEXAI=true``). The SDK reads its own variables — ``GEMINI_API_KEY`` /
``GOOGLE_API_KEY``, ``GOOGLE_GEMINI_BASE_URL`` / ``GOOGLE_VERTEX_BASE_URL`` — and blogimg never
overrides them. Its retries are off (one attempt): the chain owns retrying.

The pieces every Gemini call shares — the SDK client (:func:`make_client`), the reading of its
errors into outcome classes (:func:`classify_error`) and of safety verdicts (:func:`safety_refusal`)
— are module functions, used by the image provider here and by the vision captioner
(:mod:`blogimg.providers.vision`).

Safety has three shapes here: a blocked prompt (``promptFeedback.blockReason``, no candidates),
a withheld image (``finishReason`` IMAGE_SAFETY and friends, no image part), and Imagen's RAI
filter (no generated image, or ``raiFilteredReason``). All are ``refused``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from blogimg.domain import ImageRequest, Outcome, ProviderImage
from blogimg.errors import ConfigurationError, ProviderError
from blogimg.providers.base import ProviderInfo
from blogimg.providers.http_errors import RATE_LIMITED, outcome_for_status, retry_after_seconds
from blogimg.providers.pricing import PriceTable, TokenUsage, default_prices

if TYPE_CHECKING:
    from google import genai

    from blogimg.config import Settings

NAME = "google"
ASPECT_RATIOS = {"1:1": 1.0, "3:2": 1.5, "2:3": 2 / 3, "4:3": 4 / 3, "3:4": 0.75, "16:9": 16 / 9,
                 "9:16": 9 / 16, "21:9": 21 / 9}
_REFUSAL_FINISHES = frozenset({"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT",
                               "BLOCKLIST", "SPII", "RECITATION", "IMAGE_RECITATION", "MODEL_ARMOR"})
_CREDENTIAL_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED",
                                 "BILLING_DISABLED", "SERVICE_DISABLED", "CONSUMER_SUSPENDED"})
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
_ZERO_LIMIT = re.compile(r"\blimit: 0(?![\d.])")

INFO = ProviderInfo(
    name=NAME,
    description="Google Gemini image models (and Imagen in Vertex mode), official google-genai SDK.",
    # The image models of google-genai 3.6 (its Model list), current ones first, then Imagen (Vertex mode
    # only, deprecated in the SDK).
    models=("gemini-3-pro-image", "gemini-nano-banana-2.1", "gemini-3.1-flash-image", "gemini-3.1-flash-lite-image",
            "nano-banana-pro-preview", "gemini-2.5-flash-image", "imagen-4.0-generate-001",
            "imagen-4.0-fast-generate-001", "imagen-4.0-ultra-generate-001"),
    key_env_vars=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    sizes=tuple(ASPECT_RATIOS),
    output_formats=("png", "jpeg"),
    requires=("google.genai", "httpx2"),
    extra="google",
)


def nearest_aspect_ratio(width: int, height: int) -> str:
    ratio = width / height
    return min(ASPECT_RATIOS, key=lambda name: abs(ASPECT_RATIOS[name] - ratio))


def make_client(settings: Settings) -> genai.Client:
    """The SDK client for one run, with the SDK's own retries off (the chain retries).

    The key and base URL are left to the SDK, which reads GEMINI_API_KEY / GOOGLE_API_KEY and
    GOOGLE_GEMINI_BASE_URL (or the Vertex variables).
    """
    try:
        from google import genai
        from google.genai import types
    except ImportError:
        raise ConfigurationError(f"provider {NAME!r} needs its SDK: {INFO.install_hint}") from None
    options = types.HttpOptions(
        timeout=round(settings.provider_timeout * 1000),
        retry_options=types.HttpRetryOptions(attempts=1),  # the chain retries, not the SDK
    )
    try:
        return genai.Client(http_options=options)
    except ValueError as error:  # no key in the environment
        raise ConfigurationError(f"provider {NAME!r}: {error}") from None


def sdk_errors() -> tuple[type[Exception], ...]:
    """What a call through the SDK raises that :func:`classify_error` reads (the SDK is installed)."""
    import httpx2
    from google.genai import errors

    return (errors.APIError, httpx2.HTTPError, ValueError)


def classify_error(error: Exception) -> ProviderError:
    """An SDK or transport error as the outcome class of the call, with Google's retry delay."""
    import httpx2
    from google.genai import errors

    if isinstance(error, errors.APIError):
        return _classify_api_error(error)
    if isinstance(error, httpx2.HTTPError):  # timeouts, resets, refused connections
        return ProviderError(Outcome.TRANSIENT, f"{type(error).__name__}: {error or 'no answer'}")
    if isinstance(error, ValueError):  # Imagen outside Vertex mode, or a body that is not JSON
        outcome = Outcome.INVALID if "only supported" in str(error) else Outcome.TRANSIENT
        return ProviderError(outcome, f"{type(error).__name__}: {error}")
    return ProviderError(Outcome.INVALID, f"{type(error).__name__}: {error}")


def safety_refusal(response: Any) -> str | None:
    """Why a generate_content answer was refused: a blocked prompt, or a candidate withheld for safety."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason:
        return f"prompt blocked: {_name(feedback.block_reason)}"
    candidates = response.candidates or []
    finish = _name(candidates[0].finish_reason) if candidates and candidates[0].finish_reason else ""
    if finish in _REFUSAL_FINISHES:
        return f"answer withheld: finishReason {finish}"
    return None


class GoogleProvider:
    """One SDK client per run, shared by every job."""

    info = INFO

    def __init__(self, settings: Settings, *, prices: PriceTable | None = None) -> None:
        from google.genai import types

        self._client = make_client(settings)
        self._types, self._errors = types, sdk_errors()
        self.model = settings.google_model
        self.info = replace(INFO, models=(self.model, *(m for m in INFO.models if m != self.model)))
        self.prices = prices or default_prices()

    def estimate_cost(self, request: ImageRequest) -> float | None:
        return self.prices.image_price(NAME, self.model, str(request.size), request.quality)

    async def generate(self, request: ImageRequest) -> ProviderImage:
        try:
            if self.model.startswith("imagen"):
                return await self._imagen(request)
            return await self._gemini(request)
        except ProviderError:
            raise
        except self._errors as error:
            raise classify_error(error) from None

    async def _gemini(self, request: ImageRequest) -> ProviderImage:
        types = self._types
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=nearest_aspect_ratio(request.size.width, request.size.height)),
        )
        response = await self._client.aio.models.generate_content(
            model=self.model, contents=request.prompt, config=config)
        for candidate in response.candidates or []:
            for part in (candidate.content.parts or []) if candidate.content else []:
                blob = part.inline_data
                if blob is not None and blob.data and (blob.mime_type or "").startswith("image/"):
                    return ProviderImage(data=blob.data, model=self.model,
                                         cost_usd=self._gemini_cost(response, request, made_image=True))
        cost = self._gemini_cost(response, request, made_image=False)
        refusal = safety_refusal(response)
        if refusal:
            raise ProviderError(Outcome.REFUSED, refusal, http_status=200, cost_usd=cost)
        candidates = response.candidates or []
        finish = _name(candidates[0].finish_reason) if candidates and candidates[0].finish_reason else ""
        detail = f" (finishReason {finish})" if finish else ""
        raise ProviderError(Outcome.EMPTY, f"no image part in the response{detail}", http_status=200, cost_usd=cost)

    async def _imagen(self, request: ImageRequest) -> ProviderImage:
        config = self._types.GenerateImagesConfig(
            number_of_images=1, include_rai_reason=True,
            aspect_ratio=nearest_aspect_ratio(request.size.width, request.size.height))
        response = await self._client.aio.models.generate_images(
            model=self.model, prompt=request.prompt, config=config)
        cost = self.estimate_cost(request)
        for generated in response.generated_images or []:
            if generated.image is not None and generated.image.image_bytes:
                return ProviderImage(data=generated.image.image_bytes, model=self.model, cost_usd=cost)
            if generated.rai_filtered_reason:
                raise ProviderError(Outcome.REFUSED, f"filtered: {generated.rai_filtered_reason}",
                                    http_status=200, cost_usd=0.0)
        # Imagen drops filtered images from the answer altogether unless asked for reasons.
        raise ProviderError(Outcome.REFUSED, "no image returned: Imagen's responsible-AI filter removed it",
                            http_status=200, cost_usd=0.0)

    def _gemini_cost(self, response: Any, request: ImageRequest, *, made_image: bool) -> float | None:
        """The reported tokens, priced; without usage, the list price if an image came back, else nothing."""
        usage = response.usage_metadata
        if usage is not None and (usage.prompt_token_count or usage.candidates_token_count):
            output_image = output_text = 0
            for detail in usage.candidates_tokens_details or []:
                if _name(detail.modality) == "IMAGE":
                    output_image += detail.token_count or 0
                else:
                    output_text += detail.token_count or 0
            if not (output_image or output_text):
                output_image = usage.candidates_token_count or 0
            tokens = TokenUsage(input_text=usage.prompt_token_count or 0, output_image=output_image,
                                output_text=output_text)
            cost = self.prices.token_cost(NAME, self.model, tokens)
            if cost is not None or not made_image:
                return cost
        return self.estimate_cost(request) if made_image else 0.0

    async def aclose(self) -> None:
        await self._client.aio.aclose()


def _classify_api_error(error: Any) -> ProviderError:
    status = int(error.code or 0)
    state = str(error.status or "")
    message = str(error.message or error)[:500]
    details = _details(error.details)
    reasons = {str(d.get("reason", "")) for d in details}
    outcome = outcome_for_status(status)
    retry_after, code = None, None
    if reasons & _CREDENTIAL_REASONS or state in {"PERMISSION_DENIED", "UNAUTHENTICATED"}:
        outcome = Outcome.QUOTA
    elif state == "FAILED_PRECONDITION" and "billing" in message.lower():
        outcome = Outcome.QUOTA
    elif status == 429 or state == "RESOURCE_EXHAUSTED":
        # Google words every quota 429 alike ("check your plan and billing details"), so only the
        # violated quota tells a per-minute limit, which clears, from one that will not today.
        if _quota_for_good(details, message):
            outcome = Outcome.QUOTA
        else:
            outcome, code = Outcome.TRANSIENT, RATE_LIMITED
    if outcome is Outcome.TRANSIENT:
        retry_after = _retry_delay(details)
        headers = getattr(getattr(error, "response", None), "headers", None)
        if retry_after is None and headers is not None:
            retry_after = retry_after_seconds(dict(headers))
    label = f"HTTP {status} {state}".strip()
    return ProviderError(outcome, f"{label}: {message}", http_status=status or None, retry_after=retry_after,
                         code=code)


def _name(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def _details(body: Any) -> list[dict]:
    if isinstance(body, dict):
        inner = body.get("error", body)
        found = inner.get("details", []) if isinstance(inner, dict) else []
        return [d for d in found if isinstance(d, dict)]
    return []


def _quota_for_good(details: list[dict], message: str) -> bool:
    """A 429 that will not clear in seconds: pause the provider instead of retrying.

    That is a quota per day, or one whose limit is zero — the plan does not include the model
    at all (a free tier without image models says "limit: 0"), so no wait can help.
    """
    if _ZERO_LIMIT.search(message) or "doesn't have a free quota tier" in message:
        return True
    for detail in details:
        for violation in detail.get("violations", []) or []:
            quota = str(violation.get("quotaId", "")) + str(violation.get("quotaMetric", ""))
            if "PerDay" in quota or "per_day" in quota.lower() or str(violation.get("quotaValue")) == "0":
                return True
    return False


def _retry_delay(details: list[dict]) -> float | None:
    """google.rpc.RetryInfo's retryDelay (e.g. "37s"), Google's Retry-After."""
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None
