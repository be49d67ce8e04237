"""Finding providers and captioners: the built-ins, plug-ins from entry points, ``module:attribute`` names.

A *factory* is anything with an ``info`` attribute (a :class:`ProviderInfo`) that, called with
the :class:`~blogimg.config.Settings`, returns the provider — usually the provider class itself.
Image providers (:class:`~blogimg.providers.base.ImageProvider`) are found by
:class:`ProviderRegistry`, under the entry-point group ``blogimg.providers``; captioners
(:class:`~blogimg.providers.base.Captioner`, for ``BLOGIMG_ALT_TEXT_VISION``) by
:class:`CaptionerRegistry`, under ``blogimg.captioners``. Both check the same things the same
way before building one: its SDK is installed (``info.requires``, else ``pip install
'blogimg[info.extra]'``) and one of its key variables is set (``info.key_env_vars``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from blogimg.errors import ConfigurationError
from blogimg.providers.base import Captioner, ImageProvider, ProviderInfo

if TYPE_CHECKING:
    from blogimg.config import Settings

ENTRY_POINT_GROUP = "blogimg.providers"
CAPTIONER_ENTRY_POINT_GROUP = "blogimg.captioners"
#: The provider every default order ends with: it needs no key, no SDK and no network, so a
#: run with nothing configured still makes images. Named, not inferred from ``info.offline``:
#: installing an offline plug-in must not change what a plain run does.
DEFAULT_FALLBACK = "card"

# Built-ins by name → "module:attribute", imported only when used so a missing optional SDK
# costs nothing until that provider is asked for.
BUILT_INS: dict[str, str] = {
    "openai": "blogimg.providers.openai:OpenAIProvider",
    "google": "blogimg.providers.google:GoogleProvider",
    "card": "blogimg.providers.card:CardProvider",
}
CAPTIONERS: dict[str, str] = {
    "openai": "blogimg.providers.vision:OpenAICaptioner",
    "google": "blogimg.providers.vision:GeminiCaptioner",
}

M = TypeVar("M")


class _Registry(Generic[M]):
    """Names → factories of one kind of provider; knows which are installed and configured."""

    kind: ClassVar[str]  #: how errors name one: "provider", "captioner"
    group: ClassVar[str]  #: the entry-point group plug-ins register under
    built_ins: ClassVar[dict[str, str]]

    def __init__(self, factories: dict[str, str | Any] | None = None, *, plugins: bool = True) -> None:
        self._targets: dict[str, str | Any] = dict(self.built_ins if factories is None else factories)
        if plugins:
            for entry in entry_points(group=self.group):
                self._targets.setdefault(entry.name, entry.value)

    def register(self, name: str, factory: Any) -> None:
        """Add or replace a factory under ``name`` (tests and embedding programs)."""
        self._targets[name] = factory

    def names(self) -> list[str]:
        return sorted(self._targets)

    def factory(self, name: str) -> Any:
        """Load the factory for ``name``; a ``module:attribute`` name is imported directly."""
        target = self._targets.get(name)
        if target is None and ":" in name:
            target = name
        if target is None:
            known = ", ".join(self.names())
            raise ConfigurationError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}")
        if isinstance(target, str):
            target = self._load(name, target)
            self._targets[name] = target
        if not isinstance(getattr(target, "info", None), ProviderInfo):
            raise ConfigurationError(f"{self.kind} {name!r} has no 'info' describing it")
        return target

    def info(self, name: str) -> ProviderInfo:
        info: ProviderInfo = self.factory(name).info
        return info

    def missing_modules(self, name: str) -> list[str]:
        """Modules it needs that are not installed (its SDK, usually)."""
        return [module for module in self.info(name).requires if not _importable(module)]

    def is_configured(self, name: str) -> bool:
        """True when it needs no key or one of its key variables is set."""
        info = self.info(name)
        return not info.needs_key or any(os.environ.get(var) for var in info.key_env_vars)

    def build(self, names: Iterable[str], settings: Settings) -> list[M]:
        """Instantiate them in order; one clear error for an unknown, uninstalled or unconfigured one."""
        built: list[M] = []
        for name in names:
            factory = self.factory(name)
            info: ProviderInfo = factory.info
            missing = self.missing_modules(name)
            if missing:
                raise ConfigurationError(f"{self.kind} {name!r} needs {', '.join(missing)}: {info.install_hint}")
            if not self.is_configured(name):
                variables = " or ".join(info.key_env_vars)
                raise ConfigurationError(
                    f"{self.kind} {name!r} needs an API key: set {variables} (e.g. export {info.key_env_vars[0]}=...)")
            built.append(factory(settings))
        return built

    def _load(self, name: str, target: str) -> Any:
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ConfigurationError(f"{self.kind} {name!r} cannot be loaded: {error}") from None
        try:
            return getattr(module, attribute)
        except AttributeError:
            raise ConfigurationError(f"{self.kind} {name!r}: {module_name} has no {attribute!r}") from None


class ProviderRegistry(_Registry[ImageProvider]):
    """Image providers by name; also the default fallback order."""

    kind = "provider"
    group = ENTRY_POINT_GROUP
    built_ins = BUILT_INS

    def default_order(self) -> list[str]:
        """Every configured keyed provider, in registry order, then :data:`DEFAULT_FALLBACK`."""
        keyed = []
        for name in self._targets:
            try:
                info = self.info(name)
            except ConfigurationError:
                continue  # a plug-in whose SDK is missing is simply not a default
            if info.needs_key and self.is_configured(name) and not self.missing_modules(name):
                keyed.append(name)  # a key without its SDK installed is not a default: `providers` says why
        return [*keyed, DEFAULT_FALLBACK]

    def build(self, names: Iterable[str], settings: Settings) -> list[ImageProvider]:
        providers = super().build(names, settings)
        if not providers:
            raise ConfigurationError(f"no providers selected; name at least one, e.g. --providers {DEFAULT_FALLBACK}")
        return providers


class CaptionerRegistry(_Registry[Captioner]):
    """Captioners (vision models that write alt text) by name, as ``BLOGIMG_ALT_TEXT_VISION`` names them."""

    kind = "captioner"
    group = CAPTIONER_ENTRY_POINT_GROUP
    built_ins = CAPTIONERS


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing ("google" for "google.genai")
        return False
