"""Errors as answers: a store's typed error becomes a status and one line, as
JSON under /api/ and as a page elsewhere. Another agent's session is "not
found", exactly like a missing one, so a scoped server reveals nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aisopod_session._errors import (
    AccessDenied,
    AisopodError,
    ConflictError,
    InvalidInput,
    SessionNotFound,
)

__all__ = ["ERROR_HANDLERS", "error_response"]


def _status(err: AisopodError) -> tuple[int, str]:
    if isinstance(err, SessionNotFound | AccessDenied):
        return 404, "not found"
    if isinstance(err, ConflictError):
        return 409, str(err)
    if isinstance(err, InvalidInput):
        return 400, str(err)
    return 500, f"the store failed: {type(err).__name__}"


def error_response(request: Request, status: int, message: str) -> Response:
    """The error answer for this request: JSON for the API, a page otherwise."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    response: Response = request.app.state.templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )
    return response


async def _store_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AisopodError)
    status, message = _status(exc)
    return error_response(request, status, message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(request, exc.status_code, str(exc.detail))


ERROR_HANDLERS: Mapping[Any, Callable[[Request, Exception], Any]] = {
    AisopodError: _store_error,
    HTTPException: _http_error,
}
