"""Serving local storage's files from the API process, at the path of ``public_base_url``.

The API gives out ``public_base_url`` + key. When that base is a path (``/files/``) or an
absolute URL that leads back to this server (``http://127.0.0.1:8000/files``, or a CDN whose
origin is this server), the files are served at the base's path, here ``/files``.

A base with no path (``/`` or ``https://cdn.example.com/``), or one whose path holds an API
route (``/api``), would put the files over the API, so they are served under ``/files``
instead and a warning says so: a CDN in front then needs ``/files`` as its origin path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

from blogimg.config import Settings

log = logging.getLogger(__name__)

FALLBACK_PATH = "/files"
#: Keys are content hashes: the bytes under a URL never change, so caches may keep them for good.
IMMUTABLE = "public, max-age=31536000, immutable"


class ImmutableFiles(StaticFiles):
    """Static files that tell browsers and CDNs to cache them for a year without revalidating."""

    def file_response(self, full_path: PathLike, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = IMMUTABLE
        return response


def mount_local_files(app: FastAPI, settings: Settings, api_paths: Iterable[str]) -> None:
    """Serve local storage at the base URL's path, unless that would cover one of ``api_paths``."""
    if settings.storage != "local":
        return
    path = files_path(settings.public_base_url, api_paths)
    settings.storage_path.mkdir(parents=True, exist_ok=True)
    app.mount(path, ImmutableFiles(directory=settings.storage_path), name="files")


def files_path(public_base_url: str, api_paths: Iterable[str]) -> str:
    """Where the files go: the base's path, unless that would cover the API (then ``/files``)."""
    path = "/" + urlsplit(public_base_url).path.strip("/")
    if path == "/" or any(api_path == path or api_path.startswith(path + "/") for api_path in api_paths):
        log.warning("public_base_url %r: serving stored files under %s/ instead of %s, which would cover "
                    "the API; URLs the API gives start with the base, so a proxy or CDN in front must map "
                    "them to %s/", public_base_url, FALLBACK_PATH, path, FALLBACK_PATH)
        return FALLBACK_PATH
    return path
