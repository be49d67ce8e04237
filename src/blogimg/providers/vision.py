"""Captioning stored images with a vision model, for alt text (``BLOGIMG_ALT_TEXT_VISION``).

The model sees the optimized image (a small WebP/JPEG variant, not the provider's original) and
the post's title, summary and language, and is asked for one plain sentence. Any failure is
quietly replaced by alt text derived from the prompt: a caption is a nicety, never a reason to
fail an image. Each caption call is one more provider call, so it goes into the ledger too.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from blogimg.domain import Outcome
from blogimg.errors import ConfigurationError, ProviderError
from blogimg.providers.pricing import TokenUsage, default_prices

if TYPE_CHECKING:
    from blogimg.config import Settings

DEFAULT_MODELS = {"google": "gemini-2.5-flash", "openai": "gpt-4.1-mini"}


@dataclass(frozen=True, slots=True)
class CaptionContext:
    title: str
    summary: str
    language: str
    max_chars: int


@dataclass(frozen=True, slots=True)
class Caption:
    text: str
    model: str
    cost_usd: float | None


class Captioner(Protocol):
    provider: str
    model: str

    async def caption(self, image: bytes, mime_type: str, context: CaptionContext) -> Caption: ...

    async def aclose(self) -> None: ...


def instruction(context: CaptionContext) -> str:
    return (
        f"Write alt text for this image, which illustrates a blog post titled “{context.title}”"
        + (f" ({context.summary})" if context.summary else "")
        + f". One plain sentence of at most {context.max_chars} characters, in the language with "
        f"code '{context.language}'. Describe what is visible; do not start with 'Image of'. "
        "Answer with the alt text only."
    )


class GeminiCaptioner:
    provider = "google"

    def __init__(self, settings: Settings) -> None:
        from google import genai
        from google.genai import types

        self._types = types
        self.model = settings.alt_text_model or DEFAULT_MODELS["google"]
        self._client = genai.Client(http_options=types.HttpOptions(
            timeout=round(settings.provider_timeout * 1000), retry_options=types.HttpRetryOptions(attempts=1)))

    async def caption(self, image: bytes, mime_type: str, context: CaptionContext) -> Caption:
        types = self._types
        try:
            response = await self._client.aio.models.generate_content(
                model=self.model,
                contents=[types.Part.from_bytes(data=image, mime_type=mime_type), instruction(context)],
                config=types.GenerateContentConfig(response_modalities=["TEXT"]))
        except Exception as error:  # any SDK or transport failure: the caller falls back
            raise ProviderError(Outcome.TRANSIENT, f"caption failed: {type(error).__name__}: {error}") from None
        usage = response.usage_metadata
        cost = None
        if usage is not None:
            cost = default_prices().token_cost("google", self.model, TokenUsage(
                input_text=usage.prompt_token_count or 0, output_text=usage.candidates_token_count or 0))
        text = (response.text or "").strip()
        if not text:
            raise ProviderError(Outcome.EMPTY, "the caption came back empty", cost_usd=cost)
        return Caption(text, self.model, cost)

    async def aclose(self) -> None:
        await self._client.aio.aclose()


class OpenAICaptioner:
    provider = "openai"

    def __init__(self, settings: Settings) -> None:
        import openai

        self.model = settings.alt_text_model or DEFAULT_MODELS["openai"]
        self._client = openai.AsyncOpenAI(max_retries=0, timeout=settings.provider_timeout)

    async def caption(self, image: bytes, mime_type: str, context: CaptionContext) -> Caption:
        url = f"data:{mime_type};base64,{base64.b64encode(image).decode()}"
        try:
            response: Any = await self._client.chat.completions.create(
                model=self.model, max_completion_tokens=120,
                messages=[{"role": "user", "content": [
                    {"type": "text", "text": instruction(context)},
                    {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}])
        except Exception as error:  # any SDK or transport failure: the caller falls back
            raise ProviderError(Outcome.TRANSIENT, f"caption failed: {type(error).__name__}: {error}") from None
        usage = response.usage
        cost = None if usage is None else default_prices().token_cost("openai", self.model, TokenUsage(
            input_text=usage.prompt_tokens or 0, output_text=usage.completion_tokens or 0))
        text = ((response.choices or [None])[0] and response.choices[0].message.content or "").strip()
        if not text:
            raise ProviderError(Outcome.EMPTY, "the caption came back empty", cost_usd=cost)
        return Caption(text, self.model, cost)

    async def aclose(self) -> None:
        await self._client.close()


def build_captioner(settings: Settings) -> Captioner | None:
    """The configured captioner, or None when alt text is derived from prompts."""
    if settings.alt_text_vision == "off":
        return None
    variables = {"google": ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "openai": ("OPENAI_API_KEY",)}[settings.alt_text_vision]
    if not any(os.environ.get(name) for name in variables):
        raise ConfigurationError(
            f"BLOGIMG_ALT_TEXT_VISION={settings.alt_text_vision} needs a key: set {' or '.join(variables)}")
    try:
        return GeminiCaptioner(settings) if settings.alt_text_vision == "google" else OpenAICaptioner(settings)
    except ImportError:
        raise ConfigurationError(
            f"alt text by {settings.alt_text_vision} needs its SDK: pip install 'blogimg[{settings.alt_text_vision}]'"
        ) from None
    except ValueError as error:  # e.g. no API key in the environment
        raise ConfigurationError(f"alt text by {settings.alt_text_vision}: {error}") from None
