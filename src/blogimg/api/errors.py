"""The API's error shape, ``{"error": {"code", "message"}}``, and the handlers that give it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from blogimg.api.schemas import ErrorBody
from blogimg.errors import BlogimgError, ConflictError, InputError, NotFoundError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP error with our body shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.http_status, self.code, self.message, self.headers = status, code, message, headers or {}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for our error body at each status (422 replaces FastAPI's own shape)."""
    text = {401: "No valid API key", 404: "Unknown id", 409: "Not possible in the current state",
            413: "Request body too large", 422: "Invalid request", 503: "A backing service failed"}
    return {status: {"model": ErrorBody, "description": text.get(status, "Error")} for status in statuses}


MUTATING = errors(401, 413, 422)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.http_status, error.code, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation", validation_message(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        return error_response(error.status_code, codes.get(error.status_code, "http_error"), str(error.detail),
                              getattr(error, "headers", None))

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, error: NotFoundError) -> JSONResponse:
        return error_response(404, "not_found", str(error))

    @app.exception_handler(ConflictError)
    async def conflict(request: Request, error: ConflictError) -> JSONResponse:
        return error_response(422, "conflict", str(error))

    @app.exception_handler(InputError)
    async def bad_input(request: Request, error: InputError) -> JSONResponse:
        return error_response(422, "validation", str(error))

    @app.exception_handler(BlogimgError)
    async def blogimg_error(request: Request, error: BlogimgError) -> JSONResponse:
        log.warning("request failed: %s", error)
        return error_response(503, "unavailable", str(error))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
        return error_response(500, "internal", "internal error; see the server log")


def validation_message(error: RequestValidationError) -> str:
    """One line for the first problem: ``where: what`` (``options.variations: …``)."""
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return _json_message(first, error.body)
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "request"
    return f"{where}: {first.get('msg', 'invalid')}"


def _json_message(problem: dict[str, Any], document: object) -> str:
    # FastAPI reports a syntax error as loc ("body", <character offset>) and msg "JSON decode
    # error", which reads as "0: JSON decode error"; say what json.loads said, where, in lines.
    reason = str(problem.get("ctx", {}).get("error") or "syntax error")
    offset = next((part for part in problem.get("loc", ()) if isinstance(part, int)), None)
    if offset is None or not isinstance(document, str | bytes):
        return f"request body is not valid JSON: {reason}"
    text = document if isinstance(document, str) else document.decode("utf-8", "replace")
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    return f"request body is not valid JSON: {reason} at line {line} column {column}"
