"""S3 settings: what S3Storage makes of BLOGIMG_STORAGE_* and the AWS variables, without a server.

Nothing here sends a request: building an obstore S3Store and signing a URL are both offline.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from blogimg.config import Settings
from blogimg.errors import ConfigurationError
from blogimg.storage import build_storage
from blogimg.storage.audit import AuditedStorage
from blogimg.storage.base import storage_folder as normalized_prefix
from blogimg.storage.cdn import CdnUrls
from blogimg.storage.s3 import S3Storage, is_loopback

CREDENTIALS = {"access_key_id": "unit-test-key-id", "secret_access_key": "unit-test-secret-value"}


def s3_settings(**values: object) -> Settings:
    return Settings(**{"storage": "s3", "storage_bucket": "blog-images", **values})  # type: ignore[arg-type]


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def test_a_bucket_is_required() -> None:
    with pytest.raises(ConfigurationError) as caught:
        build_storage(Settings(storage="s3"))
    assert one_line(caught) == "storage 's3' needs a bucket: set BLOGIMG_STORAGE_BUCKET"


@pytest.mark.parametrize("bucket", ["ab", "with space", "a/b", "-leading", "x" * 300, "b\u00fccket"])
def test_a_bucket_name_that_could_change_a_url_is_refused(bucket: str) -> None:
    with pytest.raises(ConfigurationError, match="BLOGIMG_STORAGE_BUCKET .* is not a bucket name") as caught:
        S3Storage.from_settings(s3_settings(storage_bucket=bucket), environ={})
    one_line(caught)


@pytest.mark.parametrize(("prefix", "normal"), [
    ("", ""), ("/", ""), ("blog", "blog/"), ("/blog", "blog/"), ("blog/", "blog/"), ("/site/images/", "site/images/"),
    ("日本語/x", "日本語/x/"),
])
def test_the_prefix_is_one_folder_with_one_trailing_slash(prefix: str, normal: str) -> None:
    assert normalized_prefix(prefix) == normal
    storage = S3Storage.from_settings(s3_settings(storage_prefix=prefix), environ={})
    assert storage.url("ab/c.png") == f"https://blog-images.s3.us-east-1.amazonaws.com/{normal}ab/c.png".replace(
        "日本語", "%E6%97%A5%E6%9C%AC%E8%AA%9E")


@pytest.mark.parametrize("prefix", ["../up", "blog/../../etc", "a//b", "./a", ".hidden/", "a/ b", "tab\there"])
def test_a_prefix_that_could_climb_or_hide_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="BLOGIMG_STORAGE_PREFIX .* is not a folder name") as caught:
        S3Storage.from_settings(s3_settings(storage_prefix=prefix), environ={})
    one_line(caught)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "[::1]", "localhost", "LocalHost"])
def test_plain_http_is_allowed_on_loopback(host: str) -> None:
    storage = S3Storage.from_settings(s3_settings(), environ={"AWS_ENDPOINT_URL": f"http://{host}:9000/"})
    assert storage.url("a/b.png") == f"http://{host}:9000/blog-images/a/b.png"


@pytest.mark.parametrize("host", ["10.0.0.5", "minio.internal", "0.0.0.0", "[::]", "127.0.0.1.example.com",
                                  "[::ffff:10.0.0.1]"])
def test_plain_http_elsewhere_is_refused(host: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        S3Storage.from_settings(s3_settings(), environ={"AWS_ENDPOINT_URL": f"http://{host}:9000"})
    assert one_line(caught) == (f"the S3 endpoint http://{host}:9000 is plain http, which is allowed only on a "
                                "loopback host (127.0.0.0/8, ::1, localhost): use https")


def test_an_endpoint_never_shows_a_password_and_must_be_http() -> None:
    with pytest.raises(ConfigurationError) as caught:
        S3Storage.from_settings(s3_settings(), environ={"AWS_ENDPOINT_URL": "https://user:hunter2@s3.example.com"})
    assert "hunter2" not in one_line(caught) and "https://s3.example.com" in str(caught.value)
    for endpoint in ("ftp://s3.example.com", "s3.example.com", "https://", "https://s3.example.com:port"):
        with pytest.raises(ConfigurationError, match="must be an http"):
            S3Storage.from_settings(s3_settings(), environ={"AWS_ENDPOINT_URL": endpoint})


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.255.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("128.0.0.1") and not is_loopback("localhost.example.com") and not is_loopback("::")


def test_public_urls_in_each_addressing_style() -> None:
    aws = S3Storage.from_settings(s3_settings(storage_prefix="blog"), environ={"AWS_DEFAULT_REGION": "eu-west-2"})
    assert aws.url("ab/a picture ü.png") == \
        "https://blog-images.s3.eu-west-2.amazonaws.com/blog/ab/a%20picture%20%C3%BC.png"
    r2 = S3Storage.from_settings(s3_settings(), environ={"AWS_ENDPOINT_URL": "https://account.r2.example.com",
                                                         "AWS_REGION": "auto"})
    assert r2.url("a+b%.png") == "https://account.r2.example.com/blog-images/a%2Bb%25.png"  # path style
    hosted = S3Storage.from_settings(s3_settings(), environ={
        "AWS_ENDPOINT_URL": "https://blog-images.s3.example.com", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "true"})
    assert hosted.url("a.png") == "https://blog-images.s3.example.com/a.png"


def test_which_variables_win() -> None:
    storage = S3Storage.from_settings(s3_settings(), environ={
        "AWS_ENDPOINT_URL_S3": "https://s3-only.example.com", "AWS_ENDPOINT_URL": "https://general.example.com",
        "AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "eu-west-1"})
    assert (storage.endpoint, storage.region) == ("https://s3-only.example.com", "ap-south-1")
    assert S3Storage.from_settings(s3_settings(), environ={"AWS_DEFAULT_REGION": "eu-west-1"}).region == "eu-west-1"
    assert S3Storage.from_settings(s3_settings(), environ={}).region == "us-east-1"


def test_the_factory_builds_it_from_the_environment_and_a_cdn_goes_in_front(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    storage = build_storage(s3_settings(storage_prefix="/blog/"))
    assert isinstance(storage, AuditedStorage) and isinstance(storage.storage, S3Storage)  # every put logged
    assert storage.url("a.png") == "http://127.0.0.1:9000/blog-images/blog/a.png"
    behind = build_storage(s3_settings(cdn_base_url="https://img.example.com/"))
    assert isinstance(behind, AuditedStorage) and isinstance(behind.storage, CdnUrls)
    assert behind.url("a.png") == "https://img.example.com/a.png"


def test_with_an_expiry_urls_are_presigned_gets() -> None:
    storage = S3Storage("blog-images", prefix="blog", endpoint="https://s3.example.com", region="eu-west-1",
                        url_expiry=900, config=CREDENTIALS)
    url = storage.url("ab/a b.png")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "s3.example.com", "/blog-images/blog/ab/a%20b.png")
    parameters = parse_qs(parts.query)
    assert parameters["X-Amz-Expires"] == ["900"]
    assert parameters["X-Amz-Credential"][0].startswith("unit-test-key-id/") and "/eu-west-1/s3/" in parameters[
        "X-Amz-Credential"][0]
    assert "X-Amz-Signature" in parameters and "unit-test-secret-value" not in url


def test_without_its_sdk_the_backend_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "obstore", None)  # as if it were not installed: import fails
    with pytest.raises(ConfigurationError) as caught:
        S3Storage.from_settings(s3_settings(), environ={})
    assert one_line(caught) == "storage 's3' needs its SDK: pip install 'blogimg[s3]'"


def test_the_module_imports_without_its_sdk() -> None:
    code = "import sys; sys.modules['obstore'] = None; import blogimg.storage.s3, blogimg.storage.factory"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_from_settings_bounds_retries_and_every_request() -> None:
    """Not obstore's default of 10 retries within 3 minutes for each operation: at most 3 within
    30 s, each request cut off after 60 s (10 s to connect)."""
    storage = S3Storage.from_settings(s3_settings(), environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})
    retry = storage._store.retry_config
    assert retry is not None and (retry["max_retries"], retry["retry_timeout"]) == (3, timedelta(seconds=30))
    options = storage._store.client_options
    assert options is not None and (options["timeout"], options["connect_timeout"]) == ("1m", "10s")
