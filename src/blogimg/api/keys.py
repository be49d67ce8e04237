"""API keys in two roles: full keys change things, read-only keys only look.

Keys are held only as SHA-256 digests and an offered key is compared with every one of them in
constant time, so neither memory nor timing says which key nearly matched. A session opened with
a key remembers the key's fingerprint (a digest of its digest, never the key): once the key
leaves the settings, or changes role, its sessions end.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

from blogimg.config import Settings
from blogimg.errors import ConfigurationError


class Role(StrEnum):
    """What a key (or the session it opened) may do."""

    FULL = "full"  #: read and change everything
    READ = "read"  #: read everything, change nothing


@dataclass(frozen=True, slots=True)
class Identity:
    """The role of a key that matched, and the fingerprint its sessions keep."""

    role: Role
    fingerprint: str


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def fingerprint(key_digest: bytes) -> str:
    # Separated from the digest by a label, so the stored value is not the digest keys are checked by.
    return hashlib.sha256(b"blogimg session key\x00" + key_digest).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The configured keys' digests by role; empty means the API and the page are open."""

    full: tuple[bytes, ...] = ()
    read: tuple[bytes, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        full = tuple(digest(key) for key in settings.api_keys)
        read = tuple(digest(key) for key in settings.api_read_keys)
        # Settings refuses this too; a copy made with model_copy(update=...) skips validation.
        if set(full) & set(read):
            raise ConfigurationError("a key is in both BLOGIMG_API_KEYS and BLOGIMG_API_READ_KEYS; "
                                     "give each key one role")
        return cls(full, read)

    @property
    def configured(self) -> bool:
        return bool(self.full or self.read)

    def identify(self, key: str) -> Identity | None:
        """The role of ``key``, or None when it is none of ours (every key is compared, always)."""
        offered = digest(key)
        found: Identity | None = None
        for role, digests in ((Role.FULL, self.full), (Role.READ, self.read)):
            for known in digests:
                if hmac.compare_digest(offered, known):
                    found = Identity(role, fingerprint(known))
        return found

    def role_of(self, key_fingerprint: str) -> Role | None:
        """The current role of the key with this fingerprint, or None when it is gone."""
        found: Role | None = None
        for role, digests in ((Role.FULL, self.full), (Role.READ, self.read)):
            for known in digests:
                if hmac.compare_digest(fingerprint(known), key_fingerprint):
                    found = role
        return found
