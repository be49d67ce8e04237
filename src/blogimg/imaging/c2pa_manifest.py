"""C2PA manifests: reading a provider original's, and signing derivatives as edits of it.

Providers sign some originals (OpenAI's images carry C2PA manifests). Every re-encode drops that
manifest, so blogimg keeps the original's bytes (pipeline/provenance.py) and, with a signing
certificate configured, signs the files it makes from it as edits: the original is their parent
ingredient, so a reader follows the chain back to the provider's claim. Without a certificate
nothing is signed, and nothing pretends to be.

c2pa-python is optional (the ``provenance`` extra): without it no manifest can be read, the
catalogue says so in the detail, and an original that looks signed is still kept.

Everything here is synchronous CPU work; callers run it in a thread.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any, Literal

from blogimg.errors import ConfigurationError
from blogimg.imaging.encoder_memory import DEFAULT_BUDGET_BYTES, shared_budget
from blogimg.imaging.encoder_pool import run_in_encoder_pool
from blogimg.imaging.process import EncodedFile

__all__ = ["MIME_TYPES", "DerivativeSigner", "ManifestCheck", "ManifestState", "available",
           "failure_codes", "looks_signed", "read_manifest"]

log = logging.getLogger(__name__)
ManifestState = Literal["none", "valid", "invalid"]
MIME_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif"}
#: validation states the C2PA SDK gives a manifest whose claim, signature and hashes check out;
#: "Trusted" adds that the signer chains to a configured trust anchor
_SOUND_STATES = frozenset({"Valid", "Trusted"})
#: the label of C2PA's JUMBF boxes: bytes without it carry no embedded manifest
_JUMBF_LABEL = b"c2pa"
_GENERATOR = {"name": "blogimg", "version": "0.1.0"}
#: copies of the file and the original the SDK holds while signing: input, output, hashing buffers
_SIGNING_COPIES = 3


@dataclass(frozen=True, slots=True)
class ManifestCheck:
    """What an image's embedded C2PA manifest store says about itself."""

    state: ManifestState
    #: the SDK's validation state and its failure codes ("Valid; signingCredential.untrusted"),
    #: or why nothing could be read
    detail: str | None = None
    label: str | None = None  #: the active manifest's label (urn:c2pa:...)

    @property
    def present(self) -> bool:
        return self.state != "none" or self.detail is not None


def available() -> bool:
    """Whether c2pa-python (the ``provenance`` extra) is installed."""
    return importlib.util.find_spec("c2pa") is not None


def read_manifest(data: bytes, image_format: str) -> ManifestCheck:
    """The manifest embedded in ``data`` (a ``jpeg``, ``png``, ``webp`` or ``avif`` image), checked.

    "invalid" covers a manifest the SDK reads but rejects (a tampered hash, a broken signature)
    and one it cannot read at all; the detail says which.
    """
    if not available():
        if looks_signed(data):
            return ManifestCheck("none", "not checked: c2pa-python (the provenance extra) is not installed")
        return ManifestCheck("none")
    import c2pa

    try:
        reader = c2pa.Reader.try_create(MIME_TYPES[image_format], io.BytesIO(data))
    except c2pa.C2paError as error:
        return ManifestCheck("invalid", _one_line(f"unreadable manifest: {error}"))
    if reader is None:
        return ManifestCheck("none")
    with reader:
        state = reader.get_validation_state() or "Unknown"
        results = reader.get_validation_results() or {}
        manifest = reader.get_active_manifest() or {}
    failures = failure_codes(results)
    verdict: ManifestState = "valid" if state in _SOUND_STATES else "invalid"
    return ManifestCheck(verdict, "; ".join([state, *failures]), manifest.get("label"))


def failure_codes(results: dict[str, Any]) -> list[str]:
    """The failure codes of a store's validation results: its active manifest's and its
    ingredients'. The results are the SDK's JSON of a manifest from outside: any part missing or of
    another shape than documented is skipped, never an error."""
    codes = _codes(_field(results, "activeManifest", dict), "failure")
    for delta in _field(results, "ingredientDeltas", list):
        codes += _codes(_field(delta, "validationDeltas", dict), "failure")
    return list(dict.fromkeys(codes))


def _field(container: object, name: str, kind: type) -> Any:
    value = container.get(name) if isinstance(container, dict) else None
    return value if isinstance(value, kind) else kind()


def _codes(status: dict[str, Any], name: str) -> list[str]:
    return [entry["code"] for entry in _field(status, name, list)
            if isinstance(entry, dict) and isinstance(entry.get("code"), str)]


def looks_signed(data: bytes) -> bool:
    """Whether ``data`` holds C2PA's JUMBF label: without it no manifest is embedded."""
    return _JUMBF_LABEL in data


class DerivativeSigner:
    """Signs files made from an original as edits of it, with one certificate chain and key."""

    def __init__(self, certificate_chain: bytes, private_key: bytes, *,
                 memory_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        if not available():
            raise ConfigurationError("signing C2PA manifests needs c2pa-python: "
                                     "pip install 'blogimg[provenance]'")
        self._chain = certificate_chain
        self._key = private_key
        self._algorithm = _algorithm(private_key)
        self._memory_bytes = memory_bytes  #: the encoders' budget (encoder_memory.py), held while signing

    @classmethod
    def from_files(cls, certificate_path: Path, key_path: Path, *,
                   memory_bytes: int = DEFAULT_BUDGET_BYTES) -> DerivativeSigner:
        """A signer from PEM files (the leaf certificate first, then its issuers), tried once on a
        tiny image so a certificate C2PA refuses is one error at start, not one per image."""
        try:
            chain, key = certificate_path.read_bytes(), key_path.read_bytes()
        except OSError as error:
            raise ConfigurationError(f"C2PA signing certificate or key unreadable: {error.strerror}: "
                                     f"{error.filename}") from None
        signer = cls(chain, key, memory_bytes=memory_bytes)
        try:
            signer._sign_one(_probe_image(), "png", "edited", _probe_image(), "png")
        except Exception as error:  # the SDK's errors name the problem, never the key
            raise ConfigurationError(_one_line(f"C2PA signing certificate refused: {error}")) from None
        return signer

    def sign_all(self, files: Sequence[EncodedFile], original: bytes, original_format: str) -> list[EncodedFile]:
        """``files`` signed as edits of ``original``, side by side in the encoders' thread pool.

        A file the SDK fails to sign stays as it was, unsigned, with a warning: an image is never
        lost to its manifest, and an unsigned file claims nothing.
        """
        work: list[Callable[[], object]] = [
            partial(self._signed_or_same, file, original, original_format) for file in files]
        return run_in_encoder_pool(work, 0)

    def _signed_or_same(self, file: EncodedFile, original: bytes, original_format: str) -> EncodedFile:
        # The SDK holds the file, the original (its ingredient) and the signed copy in memory at
        # once; signing runs on the encoders' pool, so it takes its share of their budget.
        needed = _SIGNING_COPIES * (len(file.data) + len(original))
        try:
            with shared_budget(self._memory_bytes).reserve(needed):
                data = self._sign_one(file.data, file.format, "resized" if file.role == "variant" else "edited",
                                      original, original_format)
        except Exception as error:
            log.warning("a %s %s stays unsigned: %s", file.format, file.role, _one_line(str(error)))
            return file
        return EncodedFile(role=file.role, format=file.format, width=file.width, height=file.height, data=data)

    def _sign_one(self, data: bytes, image_format: str, action: str, original: bytes, original_format: str) -> bytes:
        import c2pa

        # C2PA wants an edit's first action to open its parent; resizing and re-encoding follow.
        actions: list[dict[str, Any]] = [
            {"action": "c2pa.opened", "parameters": {"ingredientIds": ["original"]}},
            {"action": "c2pa.edited" if action == "edited" else "c2pa.resized"}, {"action": "c2pa.transcoded"}]
        manifest = {"claim_generator_info": [_GENERATOR],
                    "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}]}
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(self._algorithm, self._chain, self._key, None))
        out = io.BytesIO()
        with signer, c2pa.Builder.from_json(manifest, _context()) as builder:
            builder.add_ingredient({"title": f"original.{original_format}", "relationship": "parentOf",
                                    "instance_id": "original", "label": "original"},
                                   MIME_TYPES[original_format], io.BytesIO(original))
            builder.sign(signer, MIME_TYPES[image_format], io.BytesIO(data), out)
        return out.getvalue()


@cache
def _context() -> Any:
    import c2pa

    # No preview thumbnails in the claim or its ingredient: a variant's manifest would otherwise
    # carry two more JPEGs, more bytes than a small variant itself.
    return c2pa.Context.from_json(json.dumps({"builder": {"thumbnail": {"enabled": False}}}))


def _algorithm(private_key: bytes) -> str:
    """The C2PA signing algorithm a PEM private key signs with."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(private_key, password=None)
    except (ValueError, TypeError):
        raise ConfigurationError("the C2PA signing key is not an unencrypted PEM private key") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        names = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in names:
            return names[key.curve.name]
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    elif isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise ConfigurationError("the C2PA signing key is none of P-256, P-384, P-521, Ed25519 or RSA")


@cache
def _probe_image() -> bytes:
    import pyvips

    return bytes(pyvips.Image.black(8, 8, bands=3).cast("uchar").pngsave_buffer())


def _one_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else "no detail"
