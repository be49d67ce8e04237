"""Settings: environment variables ``BLOGIMG_*`` and an optional ``blogimg.toml``.

Built by the CLI or the app (``Settings()``), never at import time, so tests and embedding
programs can pass their own. Provider SDKs keep their own variables (``OPENAI_API_KEY``,
``GEMINI_API_KEY`` …); blogimg reads them only to know which providers are configured.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from blogimg.domain import Size
from blogimg.errors import ConfigurationError, InputError

TOML_FILE = Path("blogimg.toml")  #: read from the working directory
ENV_PREFIX = "BLOGIMG_"

VariantFormat = Literal["avif", "webp", "jpeg"]
#: ``whsec_`` and the base64 of at least 24 bytes (Standard Webhooks secrets).
_WEBHOOK_SECRET = re.compile(r"whsec_(?:[A-Za-z0-9+/]{4}){8,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def _default_variant_formats() -> list[VariantFormat]:
    return ["avif", "webp"]


class Settings(BaseSettings):
    """Everything blogimg can be told; the defaults serve one machine with no keys."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        toml_file=TOML_FILE,
        extra="forbid",
        validate_default=True,
    )

    # Where things live.
    database_url: str = Field(
        "sqlite+aiosqlite:///./blogimg-data/blogimg.db",
        description="SQLAlchemy URL of the catalogue (sqlite+aiosqlite or postgresql+psycopg).",
    )
    storage: Literal["local", "memory", "s3", "cloudinary", "vercel-blob"] = Field(
        "local", description="Where image files are stored."
    )
    storage_path: Path = Field(
        Path("./blogimg-data/images"), description="Root directory of local storage."
    )
    public_base_url: str = Field(
        "/files/", description="Prefix of public URLs of stored files (local storage)."
    )
    storage_bucket: str | None = Field(
        None, description="S3 bucket (s3); Cloudinary and Vercel Blob take theirs from their own variables."
    )
    storage_prefix: str = Field(
        "", description="Folder every key is stored under in a cloud backend (e.g. 'blog/'); empty for none."
    )
    storage_url_expiry: int | None = Field(
        None, ge=1, le=604_800,
        description="S3: give presigned URLs valid this many seconds instead of public ones (at most 7 days).",
    )
    cdn_base_url: str | None = Field(
        None, description="Base URL of a CDN in front of the storage: every file's URL is this + its key.",
    )

    # Generation.
    providers: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="Ordered fallback list; default: every provider with a key, then 'card'.",
    )
    max_concurrent: int = Field(3, ge=1, le=64, description="Images generated at once.")
    retry_attempts: int = Field(2, ge=0, le=10, description="Retries per provider after a failure.")
    retry_delay: float = Field(1.0, ge=0, le=300, description="Base of exponential backoff, seconds.")
    retry_max_delay: float = Field(60.0, ge=0, description="Longest single backoff wait, seconds.")
    fallback_on_refusal: bool = Field(
        False, description="After a safety refusal, try the next provider."
    )
    provider_timeout: float = Field(180.0, gt=0, description="Longest one provider call may take.")
    quality: Literal["low", "medium", "high", "auto"] = Field("high")
    lease_seconds: float = Field(60.0, ge=1, description="How long a claim holds without heartbeat.")
    max_job_attempts: int = Field(5, ge=1, description="Claims of one job before it fails for good.")
    shutdown_grace: float = Field(
        30.0, ge=0, description="On SIGTERM, seconds jobs in flight get to finish before they are given back.")
    budget_daily_usd: float | None = Field(
        None, ge=0, description="Cap on provider spending per UTC day; a call that would not fit is not made.")
    budget_monthly_usd: float | None = Field(
        None, ge=0, description="Cap on provider spending per UTC calendar month.")
    rate_limits: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict,
        description="Images per minute per provider, e.g. 'openai=5,google=10'; absent = unlimited.")
    breaker_threshold: int = Field(
        5, ge=0, description="Consecutive failures that open a provider's circuit; 0 disables it.")
    breaker_cooldown: float = Field(30.0, ge=0, description="Seconds an open circuit waits before one probe.")
    # HTTP 429 means "slow down", not "broken" (pipeline/pacing.py, pipeline/retries.py): its own allowance.
    rate_limit_retries: int = Field(
        6, ge=0, le=50, description="Retries per provider after a 429, counted apart from retry_attempts.")
    rate_limit_delay: float = Field(
        5.0, ge=0, le=300, description="Base of the exponential backoff after a 429 without Retry-After, seconds.")
    rate_limit_max_delay: float = Field(
        120.0, ge=0, description="Longest wait for one 429 (backoff cap, longest Retry-After honoured), seconds.")
    rate_limit_recovery: int = Field(
        10, ge=1, le=1000,
        description="After 429s, each success gives back this fraction (1/N) of a provider's request rate.")

    # Alerts (pipeline/alerting.py): rules every worker evaluates over a sliding window.
    alert_evaluation_seconds: float = Field(
        30.0, ge=0, le=3600, description="Seconds between alert evaluations in each worker; 0 turns alerts off.")
    alert_window_minutes: float = Field(
        15.0, gt=0, le=1440, description="The sliding window of the failure-rate and p95 rules, minutes.")
    alert_failure_rate: float = Field(
        0.2, gt=0, le=1, description="Fire when more than this share of a provider's calls in the window failed.")
    alert_min_calls: int = Field(
        10, ge=1, description="Calls (or images) a window needs before its failure rate or p95 can fire.")
    alert_budget_warning: float = Field(
        0.8, gt=0, le=1, description="Fire when this share of the daily or monthly budget is spent.")
    alert_budget_exhausted: float = Field(
        1.0, gt=0, le=1, description="Fire again when this share of the daily or monthly budget is spent.")
    storage_limit_bytes: int | None = Field(
        None, ge=1, description="Bytes the stored images may take; with it set, an alert fires near the limit.")
    alert_storage_fraction: float = Field(
        0.9, gt=0, le=1, description="Fire when stored bytes reach this share of BLOGIMG_STORAGE_LIMIT_BYTES.")
    alert_processing_p95_ms: float | None = Field(
        None, gt=0, description="Fire when the p95 imaging time of images finished in the window passes this; unset: off.")
    alert_provider_latency_p95_ms: float | None = Field(
        None, gt=0, description="Fire when a provider's p95 call latency in the window passes this; unset: off.")
    alert_queued_minutes: float = Field(
        30.0, gt=0, description="Fire when a job has waited in the queue longer than this, minutes.")

    # Providers (their SDKs read their own key and base-URL variables).
    # The newest model of each whose price per image is known, so a budget can admit its calls.
    openai_model: str = Field("gpt-image-2", description="OpenAI image model.")
    google_model: str = Field(
        "gemini-3-pro-image",
        description="Google image model: a Gemini image model, or imagen-* (Vertex mode only).")
    download_max_bytes: int = Field(50 * 1024 * 1024, ge=1024, description="Largest image fetched from a URL.")
    download_timeout: float = Field(60.0, gt=0, description="Longest an image download may take, seconds.")
    download_allow_loopback: bool = Field(
        False, description="Let image URLs point at 127.0.0.1/::1 (tests against local fakes only).")
    alt_text_vision: Literal["off", "openai", "google"] = Field(
        "off", description="Caption stored images with a vision model; off derives alt text from the prompt.")
    alt_text_model: str | None = Field(None, description="Vision model for captions (default per provider).")
    alt_text_max_chars: int = Field(125, ge=20, le=1000, description="Longest alt text.")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Full keys: with any key set, the API and the page need one (Bearer or signed in); none = open.")
    api_read_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Read-only keys: see everything, change nothing (403 on mutating routes).")
    session_hours: float = Field(
        12.0, gt=0, le=24 * 366, description="How long a page sign-in lasts, hours.")
    max_request_bytes: int = Field(1_048_576, ge=1024, description="Largest API request body.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins whose browser pages may call the API, e.g. 'https://blog.example.com'; '*' any; none = no CORS.")
    post_read_timeout: float = Field(
        10.0, gt=0, le=600, description="Longest POST /api/posts may spend reading one post's markdown; then 422.")

    # Webhooks (pipeline/webhook_sender.py): Standard Webhooks, sent by the worker from an outbox.
    webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Endpoints sent every event, comma-separated; each must be a public address.")
    webhook_secret: str | None = Field(
        None, description="Signing secret of the BLOGIMG_WEBHOOK_URLS endpoints: 'whsec_' and base64.")
    webhook_allow_loopback: bool = Field(
        False, description="Let webhook endpoints be 127.0.0.1/::1 (tests against local receivers only).")
    webhook_timeout: float = Field(
        10.0, gt=0, le=60, description="Longest one webhook delivery may take, seconds (no redirect is followed).")
    webhook_retry_delays: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0],
        description="Seconds before each retry of a failed delivery; after the last, it is failed.")

    # Logs (logs.py): text for people, or one JSON object a line for a log collector.
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines on stderr: text (warnings and errors), or json (one object a line, INFO too).")

    # The API server (blogimg serve): what slow or idle clients may hold (api/server.py).
    server_header_timeout: float = Field(
        10.0, gt=0, le=3600,
        description="Seconds a client has to send a request's headers, from connecting or its first byte; then 408.")
    server_body_timeout: float = Field(
        30.0, gt=0, le=3600, description="Seconds a client may pause while sending a request body; then closed.")
    server_keep_alive_timeout: int = Field(
        5, ge=1, le=3600, description="Seconds an idle connection stays open between requests.")
    server_max_connections: int = Field(
        1000, ge=1, le=1_000_000, description="Open connections at most; the next one is answered 503 and closed.")

    # Housekeeping (pipeline/bulk_actions.py): `blogimg prune-events` keeps this many days.
    event_retention_days: float = Field(
        30.0, gt=0, le=36_500, description="Days of image status events `blogimg prune-events` keeps.")

    # Prompt extraction.
    cover_size: str = Field("1536x1024", description="Size of cover images.")
    inline_size: str = Field("1024x1024", description="Default size of inline and section images.")
    section_images: bool = Field(False, description="Give every H2 section an image.")
    max_section_images: int = Field(3, ge=0, le=50, description="Cap on section images per post.")

    # Imaging.
    max_pixels: int = Field(50_000_000, ge=1, description="Largest image decoded, in pixels.")
    max_aspect_ratio: float = Field(
        8.0, ge=1.0, le=16_383.0,
        description="Most elongated image decoded, longest side over shortest (21:9 is 2.33).")
    max_icc_profile_bytes: int = Field(
        4096, ge=0,
        description="Largest sRGB ICC profile copied into the files; other profiles are applied, then dropped.")
    variant_widths: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [480, 768, 1024, 1536])
    max_variant_pixels: int = Field(
        4096 * 4096, ge=1,
        description="Largest variant, in pixels; a bigger original's widest variant is scaled to it (the master is not).")
    variant_formats: Annotated[list[VariantFormat], NoDecode] = Field(
        default_factory=_default_variant_formats
    )
    jpeg_quality: int = Field(83, ge=1, le=100)
    webp_quality: int = Field(78, ge=1, le=100)
    avif_quality: int = Field(51, ge=1, le=100)
    avif_effort: int = Field(3, ge=0, le=9, description="AVIF encoder effort; higher is slower.")
    avif_chroma_subsampling: Literal["4:4:4", "4:2:0"] = Field(
        "4:4:4", description="AVIF chroma: 4:4:4 was smaller at equal SSIMULACRA2 on the benchmark corpus.")
    webp_effort: int = Field(6, ge=0, le=6, description="Lossy WebP encoder effort; higher is slower.")
    # Quality search (imaging/quality_balance.py, quality_search.py), judged by SSIMULACRA2 against the source.
    quality_search: Literal["slope", "floor", "target", "off"] = Field(
        "slope", description="slope: each file where a score point costs *_POINT_BYTES, none below "
                             "*_LOWEST_SCORE; floor: fixed qualities kept between FLOOR_SCORE and "
                             "CEILING_SCORE; target: every file at its *_TARGET_SCORE; off: the fixed *_QUALITY.")
    jpeg_point_bytes: float = Field(
        6500.0, ge=0, description="slope mode: bytes per megapixel a JPEG point is worth; 0: floor mode for it.")
    webp_point_bytes: float = Field(
        4200.0, ge=0, description="slope mode: bytes per megapixel a WebP point is worth; 0: floor mode for it.")
    avif_point_bytes: float = Field(
        0.0, ge=0, description="slope mode: bytes per megapixel an AVIF point is worth; 0: floor mode for it.")
    jpeg_lowest_score: float = Field(68.0, ge=30, le=100, description="slope mode: lowest JPEG score at the check size.")
    webp_lowest_score: float = Field(65.0, ge=30, le=100, description="slope mode: lowest WebP score at the check size.")
    avif_lowest_score: float = Field(
        60.0, ge=30, le=100, description="slope mode, with AVIF_POINT_BYTES > 0: lowest AVIF score at the check size.")
    floor_score: float = Field(
        60.0, ge=30, le=100, description="floor mode: a file that would score below this is raised to it.")
    jpeg_target_score: float = Field(
        70.0, ge=30, le=100, description="target mode: the SSIMULACRA2 score of every JPEG file.")
    webp_target_score: float = Field(
        70.0, ge=30, le=100, description="target mode: the SSIMULACRA2 score of every lossy WebP file.")
    avif_target_score: float = Field(
        70.0, ge=30, le=100, description="target mode: the SSIMULACRA2 score of every AVIF file.")
    ceiling_score: float = Field(
        90.0, ge=30, le=100, description="floor mode: a file scoring above this (visually lossless) is made "
                                         "at the lowest quality that still reaches it.")
    jpeg_encoder: Literal["jpegli", "mozjpeg"] = Field(
        "mozjpeg", description="JPEG encoder: libvips' mozjpeg (smaller at equal quality on the benchmark "
                               "corpus) or jpegli (an order of magnitude faster).")
    thumbnail_size: int = Field(300, ge=16, le=2048)
    imaging_threads: int = Field(
        0, ge=0, le=64,
        description="Files of one image encoded at once; 0 means one per core, at most 4.")
    imaging_encoder_memory_mb: int = Field(
        768, ge=64,
        description="Memory all image encoders of the process may hold at once, MB; a larger one runs alone.")
    provenance_labels: bool = Field(
        True,
        description="Label every file in XMP as AI-generated (IPTC DigitalSourceType) with its provider and model.")
    # C2PA (pipeline/provenance.py): with both set, files made from a signed original are signed as its edits.
    c2pa_sign_cert: Path | None = Field(
        None, description="PEM certificate chain (signer first, then its issuers) to sign C2PA manifests with.")
    c2pa_sign_key: Path | None = Field(
        None, description="PEM private key of BLOGIMG_C2PA_SIGN_CERT (unencrypted; keep it readable by blogimg only).")
    c2pa_sign_min_width: int = Field(
        640, ge=1,
        description="Only the master and variants at least this wide are signed (a manifest embeds the "
                    "provider's, ~35 KB); narrower ones stay unsigned and keep their XMP label.")

    @field_validator("cover_size", "inline_size")
    @classmethod
    def _check_size(cls, value: str) -> str:
        try:
            Size.parse(value)
        except InputError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _parse_rate_limits(cls, value: object) -> object:
        # "openai=5,google=10" or a JSON object.
        if not isinstance(value, str):
            return value
        if value.strip().startswith("{"):
            try:
                return json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"not a JSON object: {error}") from None
        limits: dict[str, str] = {}
        for part in filter(None, (piece.strip() for piece in value.split(","))):
            name, equals, number = part.partition("=")
            if not equals or not name.strip():
                raise ValueError(f"{part!r} is not provider=images_per_minute")
            limits[name.strip()] = number.strip()
        return limits

    @field_validator("rate_limits")
    @classmethod
    def _positive_rates(cls, value: dict[str, float]) -> dict[str, float]:
        for name, rate in value.items():
            if rate <= 0:
                raise ValueError(f"rate limit of {name!r} must be positive images per minute")
        return value

    @field_validator("providers", "api_keys", "api_read_keys", "variant_widths", "variant_formats", "cors_origins",
                     "webhook_urls", "webhook_retry_delays", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        # Environment variables arrive as "a,b" or as a JSON list; accept both.
        if isinstance(value, str):
            if value.strip().startswith("["):
                try:
                    return json.loads(value)
                except json.JSONDecodeError as error:
                    raise ValueError(f"not a JSON list: {error}") from None
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_read_keys")
    @classmethod
    def _one_role_per_key(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # Never name the key: this line reaches terminals and logs.
        if set(value) & set(info.data.get("api_keys") or ()):
            raise ValueError("a key is in both BLOGIMG_API_KEYS and BLOGIMG_API_READ_KEYS; give each key one role")
        return value

    @field_validator("ceiling_score")
    @classmethod
    def _ceiling_above_floor(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("floor_score", 0) > value:  # the floor mode would aim below its own floor
            raise ValueError("BLOGIMG_CEILING_SCORE is below BLOGIMG_FLOOR_SCORE")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        # A browser sends "https://host[:port]" with no path: "https://host/" would never match.
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"{origin!r} is not an origin like https://blog.example.com (no path, no slash)")
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _check_webhook_urls(cls, value: list[str]) -> list[str]:
        # The address itself is checked when the endpoints are configured (resolving the host).
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
                # Only the scheme and host are repeated: a path or query may hold the receiver's token.
                shown = f"{parts.scheme}://{parts.hostname or ''}/…" if parts.scheme else "a webhook URL"
                raise ValueError(f"{shown} is not an http(s) URL with a host (and no user name)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Never echo the value: it is a secret.
        if value is not None and not _WEBHOOK_SECRET.fullmatch(value):
            raise ValueError("a webhook secret is 'whsec_' followed by base64 of at least 24 bytes")
        if value is None and info.data.get("webhook_urls"):
            raise ValueError("BLOGIMG_WEBHOOK_URLS needs this secret ('whsec_' and base64) to sign with")
        return value

    @field_validator("webhook_retry_delays")
    @classmethod
    def _check_retry_delays(cls, value: list[float]) -> list[float]:
        if any(delay < 0 for delay in value):
            raise ValueError("retry delays are seconds, none negative")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments win, then the environment, then blogimg.toml in the working directory.
        return (init_settings, env_settings, _TomlFile(settings_cls))


class _TomlFile(TomlConfigSettingsSource):
    """blogimg.toml, whose syntax errors name the file (tomllib's message names the line)."""

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        try:
            return super()._read_file(file_path)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            where = file_path.resolve() if isinstance(file_path, Path) else file_path
            raise ConfigurationError(f"{where}: not valid TOML: {error}") from None


def setting_origin(name: str) -> str:
    """Where setting ``name`` (a field, or a key blogimg.toml spells its own way) was given.

    Its environment variable wins over blogimg.toml, as in ``Settings``; a key found in the file
    is named as written there, so a misspelt key is not mistaken for a variable nobody set.
    """
    variable = ENV_PREFIX + name.upper()
    if any(key.upper() == variable for key in os.environ):
        return f"setting {variable}"
    written = next((key for key in _toml_keys() if key.lower() == name.lower()), None)
    if written is not None:
        return f"{TOML_FILE.resolve()}, key {written}"
    return f"setting {variable}"


def _toml_keys() -> list[str]:
    try:
        with TOML_FILE.open("rb") as file:
            return list(tomllib.load(file))
    except (OSError, ValueError):  # no file (or one Settings has already refused)
        return []
