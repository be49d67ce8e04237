"""Finding providers: the built-ins, plug-ins from entry points, and ``module:attribute`` names.

A provider *factory* is anything with an ``info`` attribute (a :class:`ProviderInfo`) that,
called with the :class:`~blogimg.config.Settings`, returns an
:class:`~blogimg.providers.base.ImageProvider` — usually the provider class itself. Third-party
packages register factories under the entry-point group ``blogimg.providers``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from blogimg.errors import ConfigurationError
from blogimg.providers.base import ImageProvider, ProviderInfo

if TYPE_CHECKING:
    from blogimg.config import Settings

ENTRY_POINT_GROUP = "blogimg.providers"
ProviderFactory = Callable[["Settings"], ImageProvider]

# Built-ins by name → "module:attribute", imported only when used so a missing optional SDK
# costs nothing until that provider is asked for.
BUILT_INS: dict[str, str] = {
    "openai": "blogimg.providers.openai:OpenAIProvider",
    "google": "blogimg.providers.google:GoogleProvider",
    "card": "blogimg.providers.card:CardProvider",
}


class ProviderRegistry:
    """Names → provider factories; knows which are configured and the default fallback order."""

    def __init__(self, factories: dict[str, str | Any] | None = None, *, plugins: bool = True) -> None:
        self._targets: dict[str, str | Any] = dict(BUILT_INS if factories is None else factories)
        if plugins:
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                self._targets.setdefault(entry.name, entry.value)

    def register(self, name: str, factory: Any) -> None:
        """Add or replace a provider factory under ``name`` (tests and embedding programs)."""
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
            raise ConfigurationError(f"unknown provider {name!r}; known providers: {known}")
        if isinstance(target, str):
            target = _load(name, target)
            self._targets[name] = target
        if not isinstance(getattr(target, "info", None), ProviderInfo):
            raise ConfigurationError(f"provider {name!r} has no 'info' describing it")
        return target

    def info(self, name: str) -> ProviderInfo:
        return self.factory(name).info

    def missing_modules(self, name: str) -> list[str]:
        """Modules the provider needs that are not installed (its SDK, usually)."""
        return [module for module in self.info(name).requires if not _importable(module)]

    def is_configured(self, name: str) -> bool:
        """True when the provider needs no key or one of its key variables is set."""
        info = self.info(name)
        return not info.needs_key or any(os.environ.get(var) for var in info.key_env_vars)

    def default_order(self) -> list[str]:
        """Every configured keyed provider, in registry order, then the offline ``card``."""
        keyed = []
        for name in self._targets:
            try:
                info = self.info(name)
            except ConfigurationError:
                continue  # a plug-in whose SDK is missing is simply not a default
            if info.needs_key and self.is_configured(name) and not self.missing_modules(name):
                keyed.append(name)  # a key without its SDK installed is not a default: `providers` says why
        return [*keyed, "card"]

    def build(self, names: Iterable[str], settings: Settings) -> list[ImageProvider]:
        """Instantiate providers in order; one clear error for unknown or unconfigured ones."""
        providers: list[ImageProvider] = []
        for name in names:
            factory = self.factory(name)
            missing = self.missing_modules(name)
            if missing:
                extra = factory.info.extra or name
                raise ConfigurationError(
                    f"provider {name!r} needs {', '.join(missing)}: pip install 'blogimg[{extra}]'")
            if not self.is_configured(name):
                variables = " or ".join(factory.info.key_env_vars)
                raise ConfigurationError(
                    f"provider {name!r} needs an API key: set {variables} (e.g. export {factory.info.key_env_vars[0]}=...)"
                )
            providers.append(factory(settings))
        if not providers:
            raise ConfigurationError("no providers selected; name at least one, e.g. --providers card")
        return providers


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing ("google" for "google.genai")
        return False


def _load(name: str, target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        extra = f" (pip install 'blogimg[{name}]')" if name in {"openai", "google"} else ""
        raise ConfigurationError(f"provider {name!r} cannot be loaded: {error}{extra}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(f"provider {name!r}: {module_name} has no {attribute!r}") from None
