"""Keeping a provider's C2PA-signed original beside the files blogimg makes from it.

A provider's manifest covers the exact bytes it sent; every re-encode drops it. So when an
original carries one, its bytes are stored untouched under a content-addressed key of their own
(before the row names it, as every file is), its manifest's validity goes into the catalogue,
and — with a signing certificate configured — the master and variants are signed as edits of
it. An original without a manifest costs nothing extra: it is not stored.

The thumbnail is left unsigned: a manifest holding the parent's would be larger than it. So are
variants (and a master) narrower than ``c2pa_sign_min_width``: each signed file embeds the
provider's manifest store as its parent ingredient, about 35 KB, more than a small variant itself.
Unsigned files still carry their XMP label (imaging/labels.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from blogimg.imaging.c2pa_manifest import (
    MIME_TYPES,
    DerivativeSigner,
    ManifestCheck,
    looks_signed,
    read_manifest,
)
from blogimg.imaging.decode import sniff_format
from blogimg.imaging.process import EncodedFile, ProcessedImage

if TYPE_CHECKING:
    from blogimg.config import Settings

__all__ = ["KeptOriginal", "MadeImage", "Provenance"]

log = logging.getLogger(__name__)
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

    def __init__(self, signer: DerivativeSigner | None = None, sign_min_width: int = 640) -> None:
        self.signer = signer
        self.sign_min_width = sign_min_width  #: narrower files stay unsigned (see the module)

    @classmethod
    def from_settings(cls, settings: Settings) -> Provenance:
        """Signing needs both the certificate and the key; neither set means no signing."""
        certificate, key = settings.c2pa_sign_cert, settings.c2pa_sign_key
        if certificate is None and key is None:
            return cls()
        if certificate is None or key is None:
            from blogimg.errors import ConfigurationError

            raise ConfigurationError("C2PA signing needs both BLOGIMG_C2PA_SIGN_CERT and BLOGIMG_C2PA_SIGN_KEY")
        signer = DerivativeSigner.from_files(certificate, key,
                                             memory_bytes=settings.imaging_encoder_memory_mb * 1024 * 1024)
        return cls(signer, settings.c2pa_sign_min_width)

    def keep(self, data: bytes, processed: ProcessedImage) -> MadeImage:
        """The original's manifest checked, the original kept if it has one, and ``processed``'s
        master and variants signed when a signer is configured: synchronous, run in a thread,
        after process_image has accepted ``data`` as an image."""
        image_format = sniff_format(data)
        try:
            check = read_manifest(data, image_format)
        except Exception as error:  # noqa: BLE001 - the SDK parses hostile bytes; the image is paid for
            # Whatever the manifest reader trips on, the image itself is fine: its manifest is
            # recorded as unreadable, and the original kept if it looked signed.
            log.warning("the C2PA manifest of an original could not be read: %s", type(error).__name__)
            check = ManifestCheck("invalid", f"unreadable: {type(error).__name__}")
            if not looks_signed(data):
                return MadeImage(processed, check)
        if check.state == "none" and check.detail is None:
            return MadeImage(processed, check)
        original = KeptOriginal(image_format, data)
        if self.signer is not None and check.state == "valid":
            # An invalid original is kept and reported, but blogimg does not vouch for edits of it.
            processed = self._signed(processed, data, image_format)
        return MadeImage(processed, check, original)

    def _signed(self, processed: ProcessedImage, original: bytes, original_format: str) -> ProcessedImage:
        """``processed`` with its master and variants at least ``sign_min_width`` wide signed."""
        assert self.signer is not None
        files = (processed.master, *processed.variants)
        wide = [index for index, file in enumerate(files) if file.width >= self.sign_min_width]
        signed = dict(zip(wide, self.signer.sign_all([files[index] for index in wide], original, original_format),
                          strict=True))
        result = [signed.get(index, file) for index, file in enumerate(files)]
        return dataclasses.replace(processed, master=result[0], variants=tuple(result[1:]))
