"""blogimg: give blog posts their images.

Read posts, decide which images each needs, generate them with fallback and retries, optimize
them into web-ready variants, store the files and catalogue every attempt and its cost.
"""

from blogimg.config import Settings
from blogimg.domain import (
    EventKind,
    ExtractedPost,
    ImagePrompt,
    ImageRequest,
    Outcome,
    ProgressEvent,
    PromptKind,
    ProviderImage,
    RunSummary,
    Size,
    Status,
)
from blogimg.errors import BlogimgError
from blogimg.pipeline.generate import generate
from blogimg.prompts.extract import PromptExtractor
from blogimg.providers.base import ImageProvider, ProviderInfo
from blogimg.providers.registry import ProviderRegistry

__all__ = [
    "BlogimgError",
    "EventKind",
    "ExtractedPost",
    "ImagePrompt",
    "ImageProvider",
    "ImageRequest",
    "Outcome",
    "ProgressEvent",
    "PromptExtractor",
    "PromptKind",
    "ProviderImage",
    "ProviderInfo",
    "ProviderRegistry",
    "RunSummary",
    "Settings",
    "Size",
    "Status",
    "generate",
]
__version__ = "0.1.0"
