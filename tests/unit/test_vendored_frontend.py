"""The status page's vendored files are exactly what tools/vendor_frontend.py recorded, with licences."""

from __future__ import annotations

import pytest
from tools.vendor_frontend import PACKAGES, Package, check


@pytest.mark.parametrize("package", PACKAGES, ids=lambda package: package.name)
def test_vendored_files_match_their_recorded_sha256_and_carry_a_licence(package: Package) -> None:
    assert check(package) == []
    assert (package.target / "LICENSE").stat().st_size > 0
    source = (package.target / "SOURCE.txt").read_text()
    assert f"{package.name} {package.version}" in source and package.integrity in source
