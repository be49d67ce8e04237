"""``/docs``: Swagger UI from files inside the package, so the docs work with no network.

FastAPI's own page loads Swagger UI from a CDN (and its favicon from fastapi.tiangolo.com), and
Swagger UI then sends the schema to validator.swagger.io: none of that reaches a server kept
offline. The files under ``static/swagger-ui`` are swagger-ui-dist, unmodified (SOURCE.txt).
ReDoc has no vendored copy, so ``/redoc`` is not served (create_app passes ``redoc_url=None``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
ASSETS = Path(__file__).parent / "static" / "swagger-ui"


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets; the app must be built with ``docs_url=None``."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        # Behind a proxy that strips a prefix, root_path puts it back, as FastAPI's page does.
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"), title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None})  # no badge fetched from validator.swagger.io
