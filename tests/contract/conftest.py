"""The storage contract runs against every backend: ``storage`` is each one in turn, empty.

Each cloud backend runs through its own SDK against a loopback server started once a session:
moto's S3 server, and the fakes of Cloudinary's and Vercel Blob's HTTP APIs in tests/fakes/.
A backend's fixture gives a fresh bucket, folder or store for every test, so tests see only
their own objects. ``broken_storage`` is the same backend with its uploads cut off half-way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from blogimg.storage import LocalStorage, MemoryStorage, Storage

# Each cloud backend's fixtures, imported so pytest finds them here: <name>_storage and
# broken_<name>_storage (see tests/fakes/).
# (added by each backend's module)
from tests.fakes.cloudinary_api import (  # noqa: F401
    broken_cloudinary_storage,
    cloudinary_server,
    cloudinary_storage,
)
from tests.fakes.moto_s3 import broken_s3_storage, moto_s3_endpoint, s3_storage  # noqa: F401
from tests.fakes.vercel_blob_api import (  # noqa: F401
    broken_vercel_blob_storage,
    vercel_blob_api,
    vercel_blob_storage,
)

CLOUD_BACKENDS: list[str] = ["s3", "vercel-blob", "cloudinary"]  #: each backend's module adds its name
BACKENDS = ["local", "memory", *CLOUD_BACKENDS]
BASE_URL = "https://cdn.example.test/img/"


@pytest.fixture
def local_storage(tmp_path: Path) -> Storage:
    return LocalStorage(tmp_path / "store", BASE_URL)


@pytest.fixture
def memory_storage() -> Storage:
    return MemoryStorage(BASE_URL)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage(backend: str, request: pytest.FixtureRequest) -> Storage:
    fixture: Storage = request.getfixturevalue(f"{backend.replace('-', '_')}_storage")
    return fixture
