"""Captioners: vision models that write alt text for stored images (``BLOGIMG_ALT_TEXT_VISION``).

A captioner is registered like an image provider (:class:`~blogimg.providers.registry.CaptionerRegistry`)
and called through the same chain (:class:`~blogimg.pipeline.chain.CaptionChain`), so its calls
get the same retries, Retry-After, breaker, pauses, ledger rows and budget checks. The built-ins
reuse their image provider's pieces: the same key variables, SDK and extra (their ``info`` is the
provider's, with caption models), the same SDK client and the same reading of errors — a 429 is
``transient`` with its Retry-After, a bad key ``quota``, a safety verdict ``refused``.

The model sees the optimized image (a small WebP/JPEG variant, not the provider's original) and
the post's title, summary and language, and is asked for one plain sentence. A failed caption is
the worker's to replace with alt text derived from the prompt: a caption is a nicety, never a
reason to fail an image.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import TYPE_CHECKING

from blogimg.domain import Outcome
from blogimg.errors import ProviderError
from blogimg.providers import google as google_provider
from blogimg.providers import openai as openai_provider
from blogimg.providers.base import Caption, Captioner, CaptionRequest, ProviderInfo
from blogimg.providers.pricing import PriceTable, TokenUsage, default_prices

if TYPE_CHECKING:
    from blogimg.config import Settings

OPENAI_INFO: ProviderInfo = replace(
    openai_provider.INFO, description="OpenAI vision models write alt text (Chat Completions, official SDK).",
    models=("gpt-4.1-mini",), sizes=(), output_formats=())
GOOGLE_INFO: ProviderInfo = replace(
    google_provider.INFO, description="Gemini models write alt text (generate_content, official google-genai SDK).",
    models=("gemini-2.5-flash",), sizes=(), output_formats=())
_MAX_TOKENS = 120  #: one sentence; more is a runaway answer, billed


def instruction(request: CaptionRequest) -> str:
    return (
        f"Write alt text for this image, which illustrates a blog post titled “{request.title}”"
        + (f" ({request.summary})" if request.summary else "")
        + f". One plain sentence of at most {request.max_chars} characters, in the language with "
        f"code '{request.language}'. Describe what is visible; do not start with 'Image of'. "
        "Answer with the alt text only."
    )


class OpenAICaptioner:
    """Chat Completions with the image as a data URL; one SDK client per run."""

    info = OPENAI_INFO

    def __init__(self, settings: Settings, *, prices: PriceTable | None = None) -> None:
        self._client = openai_provider.make_client(settings)
        self._errors = openai_provider.sdk_errors()
        self.model = settings.alt_text_model or OPENAI_INFO.models[0]
        self.info = replace(OPENAI_INFO, models=(self.model,))
        self.prices = prices or default_prices()

    async def caption(self, request: CaptionRequest) -> Caption:
        url = f"data:{request.mime_type};base64,{base64.b64encode(request.image).decode()}"
        try:
            response = await self._client.chat.completions.create(
                model=self.model, max_completion_tokens=_MAX_TOKENS,
                messages=[{"role": "user", "content": [
                    {"type": "text", "text": instruction(request)},
                    {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}])
        except self._errors as error:
            raise openai_provider.classify_error(error) from None
        usage = response.usage
        cost = None if usage is None else self.prices.token_cost(openai_provider.NAME, self.model, TokenUsage(
            input_text=usage.prompt_tokens or 0, output_text=usage.completion_tokens or 0))
        choice = response.choices[0] if response.choices else None
        if choice is not None and (choice.message.refusal or choice.finish_reason == "content_filter"):
            reason = choice.message.refusal or "finish_reason content_filter"
            raise ProviderError(Outcome.REFUSED, f"caption refused: {reason}"[:500], http_status=200, cost_usd=cost)
        text = (choice.message.content if choice is not None else None) or ""
        return Caption(text.strip(), self.model, cost)  # blank text is the chain's ``empty``

    async def aclose(self) -> None:
        await self._client.close()


class GeminiCaptioner:
    """generate_content with the image as an inline part; one SDK client per run."""

    info = GOOGLE_INFO

    def __init__(self, settings: Settings, *, prices: PriceTable | None = None) -> None:
        from google.genai import types

        self._client = google_provider.make_client(settings)
        self._types, self._errors = types, google_provider.sdk_errors()
        self.model = settings.alt_text_model or GOOGLE_INFO.models[0]
        self.info = replace(GOOGLE_INFO, models=(self.model,))
        self.prices = prices or default_prices()

    async def caption(self, request: CaptionRequest) -> Caption:
        types = self._types
        try:
            response = await self._client.aio.models.generate_content(
                model=self.model,
                contents=[types.Part.from_bytes(data=request.image, mime_type=request.mime_type),
                          instruction(request)],
                config=types.GenerateContentConfig(response_modalities=["TEXT"]))
        except self._errors as error:
            raise google_provider.classify_error(error) from None
        usage = response.usage_metadata
        cost = None if usage is None else self.prices.token_cost(google_provider.NAME, self.model, TokenUsage(
            input_text=usage.prompt_token_count or 0, output_text=usage.candidates_token_count or 0))
        refusal = google_provider.safety_refusal(response)
        if refusal:
            raise ProviderError(Outcome.REFUSED, refusal, http_status=200, cost_usd=cost)
        return Caption((response.text or "").strip(), self.model, cost)  # blank text is the chain's ``empty``

    async def aclose(self) -> None:
        await self._client.aio.aclose()


__all__ = ["GOOGLE_INFO", "OPENAI_INFO", "Caption", "CaptionRequest", "Captioner", "GeminiCaptioner",
           "OpenAICaptioner", "instruction"]
