"""Keeping a provider's C2PA-signed original beside the files blogimg makes from it.

A provider's manifest covers the exact bytes it sent; every re-encode drops it. So when an
original carries one, its bytes are stored untouched under a content-addressed key of their own
(before the row names it, as every file is), its manifest's validity goes into the catalogue,
and — with a signing certificate configured — the master and variants are signed as edits of
it. An original without a manifest costs nothing extra: it is not stored.

The thumbnail is left unsigned: a manifest holding the parent's would be larger than it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from blogimg.imaging.c2pa_manifest import MIME_TYPES, DerivativeSigner, ManifestCheck, read_manifest
from blogimg.imaging.decode import sniff_format
from blogimg.imaging.process import EncodedFile, ProcessedImage

if TYPE_CHECKING:
    from blogimg.config import Settings

__all__ = ["KeptOriginal", "MadeImage", "Provenance"]

_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif"}


@dataclass(frozen=True)
class KeptOriginal:
    """The provider's bytes, kept as they came because they carry a manifest."""

    format: str
    data: bytes = dataclasses.field(repr=False)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def content_type(self) -> str:
        return MIME_TYPES[self.format]

    @property
    def storage_key(self) -> str:
        """Content-addressed, as every file is; under originals/ so a listing tells them apart."""
        digest = self.sha256
        return f"originals/{digest[:2]}/{digest[2:4]}/{digest}.{_EXTENSIONS[self.format]}"


@dataclass(frozen=True)
class MadeImage:
    """What one provider image became: the processed files and, when signed, its original."""

    processed: ProcessedImage
    manifest: ManifestCheck
    original: KeptOriginal | None = None

    @property
    def files(self) -> list[tuple[str, bytes, str]]:
        """(key, bytes, content type) of every file to store: the original's too when kept."""
        files: list[KeptOriginal | EncodedFile] = [*self.processed.files, *([self.original] if self.original else [])]
        return [(file.storage_key, file.data, file.content_type) for file in files]


class Provenance:
    """Reads an original's manifest, keeps the original, signs derivatives when it can."""

    def __init__(self, signer: DerivativeSigner | None = None) -> None:
        self.signer = signer

    @classmethod
    def from_settings(cls, settings: Settings) -> Provenance:
        """Signing needs both the certificate and the key; neither set means no signing."""
        certificate, key = settings.c2pa_sign_cert, settings.c2pa_sign_key
        if certificate is None and key is None:
            return cls()
        if certificate is None or key is None:
            from blogimg.errors import ConfigurationError

            raise ConfigurationError("C2PA signing needs both BLOGIMG_C2PA_SIGN_CERT and BLOGIMG_C2PA_SIGN_KEY")
        return cls(DerivativeSigner.from_files(certificate, key))

    def keep(self, data: bytes, processed: ProcessedImage) -> MadeImage:
        """The original's manifest checked, the original kept if it has one, and ``processed``'s
        master and variants signed when a signer is configured: synchronous, run in a thread,
        after process_image has accepted ``data`` as an image."""
        image_format = sniff_format(data)
        check = read_manifest(data, image_format)
        if check.state == "none" and check.detail is None:
            return MadeImage(processed, check)
        original = KeptOriginal(image_format, data)
        if self.signer is not None and check.state == "valid":
            # An invalid original is kept and reported, but blogimg does not vouch for edits of it.
            signed = self.signer.sign_all((processed.master, *processed.variants), data, image_format)
            processed = dataclasses.replace(processed, master=signed[0], variants=tuple(signed[1:]))
        return MadeImage(processed, check, original)
