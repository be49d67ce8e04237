"""A provider's C2PA-signed original is kept byte for byte, and derivatives are signed as its edits.

The test makes its own certificate chain (a CA and a leaf with what C2PA asks of a signer:
digitalSignature key usage, the emailProtection extended key usage, key identifiers, not a CA),
signs a PNG with c2pa-python as a provider would, and serves it from a FakeProvider through the
real pipeline. c2pa-python's Reader then checks what blogimg stored. The throwaway CA is in no
trust list, so a sound manifest reads as validation state "Valid" with exactly one failure code,
``signingCredential.untrusted``; anything else fails the test. Without c2pa-python these tests
skip with the reason, unless BLOGIMG_TEST_REQUIRE_C2PA=1 (CI), where they fail.
"""

from __future__ import annotations

import datetime
import importlib.util
import io
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from blogimg.api.routes.common import image_out
from blogimg.config import Settings
from blogimg.db.catalog import Catalog
from blogimg.db.database import Database
from blogimg.db.tables import GeneratedImage, ImageVariant
from blogimg.domain import ImageRequest, ProviderImage
from blogimg.errors import ConfigurationError
from blogimg.imaging.c2pa_manifest import failure_codes
from blogimg.pipeline.cleanup import find_orphans
from blogimg.pipeline.generate import generate
from blogimg.providers.registry import ProviderRegistry
from blogimg.storage import MemoryStorage
from blogimg.storage.base import Storage
from blogimg.storage.factory import build_storage
from blogimg.testing import FakeProvider
from tests.support import read_tags, run_cli, write_posts

if importlib.util.find_spec("c2pa") is None and os.environ.get("BLOGIMG_TEST_REQUIRE_C2PA") == "1":
    pytest.fail("c2pa-python is required here (BLOGIMG_TEST_REQUIRE_C2PA=1), but it is not installed "
                "(pip install -e '.[dev]')", pytrace=False)
c2pa = pytest.importorskip("c2pa", reason="c2pa-python (the provenance extra) is not installed")
pyvips = pytest.importorskip("pyvips")
x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

#: the only failure a sound manifest signed by the throwaway CA may show: its root is trusted by no one
UNTRUSTED = "signingCredential.untrusted"
TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def _name(common_name: str) -> Any:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "blogimg tests")])


def _key_usage(*, sign: bool, certificates: bool) -> Any:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=certificates,
                         crl_sign=certificates, encipher_only=False, decipher_only=False)


def certificate_chain() -> tuple[bytes, bytes]:
    """(PEM chain: leaf then CA, PEM key of the leaf): ES256 on P-256."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def builder(subject: str, issuer: Any, public_key: Any) -> Any:
        return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))

    ca = (builder("blogimg test CA", _name("blogimg test CA"), ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(_key_usage(sign=False, certificates=True), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (builder("blogimg test signer", ca.subject, leaf_key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(sign=True, certificates=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    key = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return chain, key


def provider_original(chain: bytes, key: bytes, width: int = 160, height: int = 120) -> bytes:
    """A PNG signed as a provider signs what its model made."""
    png = _gradient(width, height).pngsave_buffer()
    manifest = {"claim_generator_info": [{"name": "fake-provider", "version": "1.0"}], "title": "generated.png",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "digitalSourceType": TRAINED}]}}]}
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
    out = io.BytesIO()
    with signer, c2pa.Builder(manifest) as builder:
        builder.sign(signer, "image/png", io.BytesIO(png), out)
    return out.getvalue()


def tampered(signed: bytes) -> bytes:
    """The signed PNG with one pixel row changed and the PNG still well-formed: the manifest's
    data hash no longer matches."""
    image = pyvips.Image.new_from_buffer(signed, "")
    changed = image.draw_rect([255, 0, 0], 0, 0, 40, 4, fill=True).pngsave_buffer()
    # Keep the signed file's manifest chunk (caBX) but the new pixels: splice the chunks.
    return _with_chunks_of(signed, changed)


def _chunks(png: bytes) -> list[bytes]:
    chunks, offset = [], 8
    while offset < len(png):
        length = int.from_bytes(png[offset:offset + 4], "big")
        chunks.append(png[offset:offset + 12 + length])
        offset += 12 + length
    return chunks


def _with_chunks_of(signed: bytes, changed: bytes) -> bytes:
    manifest = [chunk for chunk in _chunks(signed) if chunk[4:8] == b"caBX"]
    assert manifest, "the signed PNG has no caBX chunk"
    others = _chunks(changed)
    return changed[:8] + others[0] + b"".join(manifest) + b"".join(others[1:])


async def generate_from(tmp_path: Path, settings: Settings, data: bytes) -> MemoryStorage:
    storage = MemoryStorage()
    await generate_into(tmp_path, settings, data, storage)
    return storage


async def generate_into(tmp_path: Path, settings: Settings, data: bytes, storage: Storage | None) -> None:
    """One image generated from ``data`` into ``storage`` (None: the settings' own, a folder)."""
    def handler(request: ImageRequest, number: int) -> ProviderImage:
        return ProviderImage(data=data, model="signed-1", cost_usd=0.0)

    registry = ProviderRegistry({}, plugins=False)
    registry.register("signed", FakeProvider("signed", handler=handler, model="signed-1"))
    posts = write_posts(tmp_path / "posts", 1, markers=0)
    summary = await generate([posts], settings.model_copy(update={"variant_formats": ["avif", "webp"]}),
                             providers=["signed"], registry=registry, storage=storage)
    assert (summary.succeeded, summary.failed) == (1, 0)


async def the_image(database: Database) -> tuple[GeneratedImage, list[ImageVariant]]:
    async with database.sessions() as session:
        image = await session.scalar(select(GeneratedImage))
        variants = list(await session.scalars(select(ImageVariant)))
    assert image is not None
    return image, variants


def read(data: bytes, mime_type: str) -> tuple[str | None, list[str], dict[str, Any]]:
    with c2pa.Reader(mime_type, io.BytesIO(data)) as reader:
        return (reader.get_validation_state(), failure_codes(reader.get_validation_results() or {}),
                reader.get_active_manifest() or {})


@pytest.fixture(scope="module")
def credentials() -> tuple[bytes, bytes]:
    return certificate_chain()


async def test_a_signed_original_is_kept_and_the_webp_variants_validate_back_to_it(
        tmp_path: Path, settings: Settings, database: Database, credentials: tuple[bytes, bytes]) -> None:
    chain, key = credentials
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    original = provider_original(chain, key, 800, 600)
    state, failures, provider_manifest = read(original, "image/png")
    assert (state, failures) == ("Valid", [UNTRUSTED])

    # Variants of 320, 640 and 800 px (the original's own width): only those at least
    # c2pa_sign_min_width (640, the default) wide are signed, and the master (800 px).
    signing = settings.model_copy(update={"c2pa_sign_cert": tmp_path / "chain.pem",
                                          "c2pa_sign_key": tmp_path / "key.pem", "variant_widths": [320, 640]})
    assert signing.c2pa_sign_min_width == 640
    storage = await generate_from(tmp_path, signing, original)
    image, variants = await the_image(database)

    assert image.original_key and storage.files[image.original_key] == original  # byte for byte
    assert image.original_sha256 and image.original_key.endswith(f"{image.original_sha256}.png")
    assert (image.c2pa_manifest, image.c2pa_detail) == ("valid", f"Valid; {UNTRUSTED}")
    item = await Catalog(database.engine, database.sessions).image(image.id)
    assert item is not None
    shown = image_out(item, storage)
    assert (shown.c2pa_manifest, shown.c2pa_detail) == ("valid", f"Valid; {UNTRUSTED}")
    assert "original_url" not in shown.model_dump()  # the provider's unstripped file is not published

    webps = [variant for variant in variants if variant.format == "webp" and variant.width >= 640]
    assert sorted(variant.width for variant in webps) == [640, 800]
    for variant in webps:
        state, failures, manifest = read(storage.files[variant.storage_key], "image/webp")
        # Exactly this: the signature, hashes and the parent's manifest check out; only the
        # throwaway root is trusted by no one.
        assert (state, failures) == ("Valid", [UNTRUSTED]), variant.width
        parents = [ingredient for ingredient in manifest["ingredients"] if ingredient["relationship"] == "parentOf"]
        assert len(parents) == 1
        assert parents[0]["active_manifest"] == provider_manifest["label"]
        actions = [action["action"] for assertion in manifest["assertions"]
                   if assertion["label"].startswith("c2pa.actions") for action in assertion["data"]["actions"]]
        assert actions == ["c2pa.opened", "c2pa.resized", "c2pa.transcoded"]
    # The master is signed too, as an edit; the thumbnail and the narrow variants are not.
    assert read(storage.files[image.storage_key], "image/jpeg")[:2] == ("Valid", [UNTRUSTED])
    with pytest.raises(c2pa.C2paError):
        c2pa.Reader("image/webp", io.BytesIO(storage.files[image.thumbnail_key]))
    narrow = [variant for variant in variants if variant.width < 640]
    assert sorted(variant.width for variant in narrow) == [320, 320]
    for variant in narrow:
        assert c2pa.Reader.try_create(_mime(variant.storage_key), io.BytesIO(storage.files[variant.storage_key])) is None
    # Signed or not, every file still carries its XMP label (read by exiftool, not libvips).
    files = {key: storage.files[key] for key in (image.storage_key, image.thumbnail_key,
                                                 *(variant.storage_key for variant in variants))}
    for key, tags in read_tags(files, tmp_path).items():
        assert tags.get("XMP:DigitalSourceType") == TRAINED and tags.get("XMP:Provider") == "signed", key

    # Cleanup counts the original as the image's; deleting the image removes it.
    report = await find_orphans(database.catalog, storage, grace_seconds=0)
    assert report.files_without_rows == [] and report.rows_missing_files == []
    removed = await database.catalog.delete_image(image.id)
    assert removed is not None and image.original_key in removed


async def test_without_a_certificate_the_original_is_kept_and_nothing_is_signed(
        tmp_path: Path, settings: Settings, database: Database, credentials: tuple[bytes, bytes]) -> None:
    original = provider_original(*credentials)
    storage = await generate_from(tmp_path, settings, original)
    image, variants = await the_image(database)
    assert image.original_key and storage.files[image.original_key] == original
    assert image.c2pa_manifest == "valid"
    for key in (image.storage_key, *(variant.storage_key for variant in variants)):
        assert key is not None and c2pa.Reader.try_create(_mime(key), io.BytesIO(storage.files[key])) is None


async def test_a_tampered_original_is_recorded_invalid(
        tmp_path: Path, settings: Settings, database: Database, credentials: tuple[bytes, bytes]) -> None:
    chain, key = credentials
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    broken = tampered(provider_original(chain, key))
    signing = settings.model_copy(update={"c2pa_sign_cert": tmp_path / "chain.pem",  # every width could be signed
                                          "c2pa_sign_key": tmp_path / "key.pem", "c2pa_sign_min_width": 1})
    storage = await generate_from(tmp_path, signing, broken)
    image, variants = await the_image(database)
    assert image.c2pa_manifest == "invalid"
    assert image.c2pa_detail and image.c2pa_detail.startswith("Invalid") and "assertion.dataHash.mismatch" in image.c2pa_detail
    assert image.original_key and storage.files[image.original_key] == broken
    # blogimg does not vouch for edits of an original whose manifest fails.
    webp = next(variant for variant in variants if variant.format == "webp")
    assert c2pa.Reader.try_create("image/webp", io.BytesIO(storage.files[webp.storage_key])) is None


async def test_an_original_without_a_manifest_stores_nothing_more(
        tmp_path: Path, settings: Settings, database: Database) -> None:
    plain = _gradient(96, 64).pngsave_buffer()
    storage = await generate_from(tmp_path, settings, plain)
    image, variants = await the_image(database)
    assert (image.c2pa_manifest, image.c2pa_detail, image.original_key, image.original_sha256) == ("none", None, None, None)
    assert not any(key.startswith("originals/") for key in storage.files)
    assert len(storage.files) == 2 + len(variants)  # master, thumbnail, variants


async def test_a_manifest_reader_that_fails_unexpectedly_never_fails_the_paid_image(
        tmp_path: Path, settings: Settings, database: Database, credentials: tuple[bytes, bytes],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK parses hostile bytes: whatever it raises, the image succeeds and the manifest is
    recorded as unreadable (the thing under test is the guard, so the reader is made to raise)."""
    import blogimg.pipeline.provenance

    def reader_that_breaks(data: bytes, image_format: str) -> Any:
        raise RuntimeError("a panic deep in the SDK")

    monkeypatch.setattr(blogimg.pipeline.provenance, "read_manifest", reader_that_breaks)
    original = provider_original(*credentials)
    storage = await generate_from(tmp_path, settings, original)  # asserts it succeeded
    image, _ = await the_image(database)
    assert (image.c2pa_manifest, image.c2pa_detail) == ("invalid", "unreadable: RuntimeError")
    assert image.original_key and storage.files[image.original_key] == original  # it looked signed: kept


def test_failure_codes_skip_what_is_not_shaped_as_documented() -> None:
    results: dict[str, Any] = {
        "activeManifest": {"failure": [{"code": "a"}, {"explanation": "no code"}, "text", {"code": 7}]},
        "ingredientDeltas": [None, {"validationDeltas": []}, {"validationDeltas": {"failure": [{"code": "b"}]}}],
    }
    assert failure_codes(results) == ["a", "b"]
    assert failure_codes({"activeManifest": None, "ingredientDeltas": "x"}) == []


async def test_a_lost_original_is_reported_as_lost_and_never_as_repaired(
        tmp_path: Path, settings: Settings, database: Database, credentials: tuple[bytes, bytes]) -> None:
    """Nothing can make a provider's signed original again: cleanup says so, and repair does not
    claim to have made it (it used to report the image repaired on every run)."""
    await generate_into(tmp_path, settings, provider_original(*credentials), None)  # the settings' folder
    image, _ = await the_image(database)
    assert image.original_key
    (settings.storage_path / image.original_key).unlink()
    report = await find_orphans(database.catalog, build_storage(settings), repair=True)
    assert (report.originals_missing, report.repairable, report.masters_missing) == ([image.id], [], [])
    assert report.repair is None  # nothing to make: no repair ran

    data = tmp_path / "data"
    environment = {"BLOGIMG_VARIANT_WIDTHS": "48,80", "BLOGIMG_AVIF_EFFORT": "0", "BLOGIMG_THUMBNAIL_SIZE": "300"}
    for _ in range(2):  # the same answer every run
        run = run_cli("cleanup", "--repair", data=data, cwd=tmp_path, **environment)
        assert run.returncode == 0, run.stderr + run.stdout
        assert f"images whose provider original (C2PA) is gone: 1 (ids {image.id}); it cannot be made again" \
            in run.stdout, run.stdout
        assert "repaired" not in run.stdout and "can be made again from their stored master" not in run.stdout


def test_a_certificate_c2pa_refuses_is_one_error_at_start(tmp_path: Path, settings: Settings) -> None:
    from blogimg.pipeline.provenance import Provenance

    (tmp_path / "key.pem").write_bytes(certificate_chain()[1])
    (tmp_path / "chain.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigurationError, match="C2PA signing certificate refused"):
        Provenance.from_settings(settings.model_copy(update={"c2pa_sign_cert": tmp_path / "chain.pem",
                                                              "c2pa_sign_key": tmp_path / "key.pem"}))
    with pytest.raises(ConfigurationError, match="both"):
        Provenance.from_settings(settings.model_copy(update={"c2pa_sign_key": tmp_path / "key.pem"}))


def _gradient(width: int, height: int) -> Any:
    ramp = (pyvips.Image.xyz(width, height)[0] % 256).cast("uchar")
    return ramp.bandjoin([ramp.flip("horizontal"), ramp.flip("vertical")]).copy(interpretation="srgb")


def _mime(key: str) -> str:
    return {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif"}[key.rsplit(".", 1)[1]]


async def test_the_runtime_builds_provenance_once_and_every_worker_shares_it(
        tmp_path: Path, settings: Settings, credentials: tuple[bytes, bytes]) -> None:
    """Reading the certificate and signing a probe happen once, when the runtime opens (off the
    event loop), never each time a worker is built."""
    from blogimg.pipeline.runtime import open_runtime

    chain, key = credentials
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    signing = settings.model_copy(update={"c2pa_sign_cert": tmp_path / "chain.pem", "c2pa_sign_key": tmp_path / "key.pem"})
    registry = ProviderRegistry({}, plugins=False)
    registry.register("signed", FakeProvider("signed"))
    async with open_runtime(signing, providers=["signed"], registry=registry, storage=MemoryStorage()) as runtime:
        assert runtime.provenance.signer is not None and runtime.provenance.sign_min_width == 640
        assert runtime.worker().provenance is runtime.provenance is runtime.worker().provenance
    (tmp_path / "chain.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigurationError, match="C2PA signing certificate refused"):  # before anything opens
        async with open_runtime(signing, providers=["signed"], registry=registry, storage=MemoryStorage()):
            pass
