"""Vendor the status page's front-end files: pinned npm packages, unmodified, with their licences.

The page has no build step and loads nothing from a CDN, so the few built files it needs live in
the repository. This fetches each pinned package with ``npm pack NAME@VERSION`` (the npm client's
configured registry) into a temporary directory, checks the tarball against the pinned integrity,
and copies the listed files (version in the file name, so browsers may cache them for good), the
package's licence and a SOURCE.txt (package, version, integrity, file sha256s) into the target.

    python -m tools.vendor_frontend          # fetch and copy every package
    python -m tools.vendor_frontend --check  # only check the vendored files against SOURCE.txt

To update one: change its version here, set ``integrity`` to None, run, review, pin what it prints.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATIC_VENDOR = ROOT / "src" / "blogimg" / "web" / "static" / "vendor"
TEST_VENDOR = ROOT / "tests" / "browser" / "vendor"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str | None  #: npm's sha512 of the tarball; None only while updating
    files: dict[str, str]  #: path inside the package → file name in the target
    target: Path
    licence_file: str = "LICENSE"
    purpose: str = ""


PACKAGES = [
    Package(
        "htmx.org", "2.0.11",
        "sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==",
        {"dist/htmx.min.js": "htmx-2.0.11.min.js"},
        STATIC_VENDOR / "htmx.org",
        purpose="htmx: the page's regions fetch their server-rendered fragments again on live events.",
    ),
    Package(
        "uplot", "1.6.32",
        "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
        {"dist/uPlot.iife.min.js": "uPlot-1.6.32.iife.min.js", "dist/uPlot.min.css": "uPlot-1.6.32.min.css"},
        STATIC_VENDOR / "uplot",
        purpose="uPlot: the overview's charts (images and cost per day, latency over time).",
    ),
    Package(
        "axe-core", "4.14.1",
        "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==",
        {"axe.min.js": "axe-4.14.1.min.js"},
        TEST_VENDOR / "axe-core",
        licence_file="LICENSE",
        purpose="axe-core: the browser tests' accessibility check (tests only; never served).",
    ),
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pack(package: Package, workdir: Path) -> tuple[Path, str]:
    """The unpacked package directory and the tarball's integrity, as npm reports it."""
    result = subprocess.run(["npm", "pack", f"{package.name}@{package.version}", "--json", "--silent"],
                            cwd=workdir, check=True, capture_output=True, text=True)
    report = json.loads(result.stdout)[0]
    tarball = workdir / report["filename"]
    unpacked = workdir / package.name.replace("/", "_")
    with tarfile.open(tarball) as archive:
        archive.extractall(unpacked, filter="data")
    return unpacked / "package", report["integrity"]


def vendor(package: Package, workdir: Path) -> None:
    source, integrity = pack(package, workdir)
    if package.integrity is not None and package.integrity != integrity:
        sys.exit(f"{package.name}@{package.version}: integrity {integrity} is not the pinned {package.integrity}")
    if package.target.exists():
        shutil.rmtree(package.target)
    package.target.mkdir(parents=True)
    lines = [f"{package.name} {package.version}, unmodified files from the npm package",
             f"(`npm pack {package.name}@{package.version}`, integrity {integrity}):"]
    for inside, name in package.files.items():
        shutil.copyfile(source / inside, package.target / name)
        lines.append(f"{name}  sha256 {sha256(package.target / name)}  (from {inside})")
    shutil.copyfile(source / package.licence_file, package.target / "LICENSE")
    lines += ["LICENSE (the package's licence)", package.purpose,
              "Vendored by tools/vendor_frontend.py; to update, change the version there and run it."]
    (package.target / "SOURCE.txt").write_text("\n".join(lines) + "\n")
    print(f"{package.name} {package.version} → {package.target.relative_to(ROOT)}  integrity {integrity}")


def check(package: Package) -> list[str]:
    """What differs between the vendored files and the sha256s their SOURCE.txt records."""
    problems = []
    source = package.target / "SOURCE.txt"
    if not source.exists():
        return [f"{source.relative_to(ROOT)} is missing"]
    recorded = {}
    for line in source.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "sha256":
            recorded[parts[0]] = parts[2]
    for name in package.files.values():
        path = package.target / name
        if not path.exists():
            problems.append(f"{path.relative_to(ROOT)} is missing")
        elif recorded.get(name) != sha256(path):
            problems.append(f"{path.relative_to(ROOT)} does not match its sha256 in SOURCE.txt")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="check the vendored files; fetch nothing")
    arguments = parser.parse_args()
    if arguments.check:
        problems = [problem for package in PACKAGES for problem in check(package)]
        for problem in problems:
            print(problem, file=sys.stderr)
        sys.exit(1 if problems else 0)
    with tempfile.TemporaryDirectory(prefix="blogimg-vendor-") as workdir:
        for package in PACKAGES:
            vendor(package, Path(workdir))


if __name__ == "__main__":
    main()
