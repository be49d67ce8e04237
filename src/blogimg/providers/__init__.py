"""Image providers: the Protocol, the built-ins and the registry that finds plug-ins."""

from blogimg.providers.base import ImageProvider, ProviderInfo
from blogimg.providers.registry import ProviderRegistry

__all__ = ["ImageProvider", "ProviderInfo", "ProviderRegistry"]
