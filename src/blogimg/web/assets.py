"""The page's static files at ``/static``: its CSS and scripts and the pinned vendored libraries.

Open without a key (they are mounted, not routed, so the app's key check never sees them): they
hold no data. Browsers revalidate them by ETag; the vendored files carry their version in their
names, so an update is a new URL.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

STATIC_DIRECTORY = Path(__file__).parent / "static"
STATIC_PATH = "/static"


def mount_static(app: FastAPI) -> None:
    """Mount the page's static files; before the stored files, which must not cover them."""
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIRECTORY), name="static")
