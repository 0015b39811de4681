"""One JSON shape for every error the API returns, from a 401 to a 500.

    {"error": {"status": 404, "code": "not_found", "message": "...", "details": [...]}}

``code`` is a stable machine-readable name; ``message`` is for people; ``details`` lists the
offending fields of a validation error (``loc``, ``msg``, ``type``) and is otherwise empty.
Every route documents these responses in the OpenAPI schema (:data:`ERROR_RESPONSES`).
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from carrier.store.database import DatabaseError, explain

log = logging.getLogger("carrier.http")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorInfo(BaseModel):
    status: int
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx response."""

    error: ErrorInfo


def _documented(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _documented("Malformed request"),
    401: _documented("No API key, or an unknown, expired or revoked one"),
    403: _documented("The key lacks the scope this route needs"),
    404: _documented("Unknown agent, user, item or route"),
    405: _documented("Method not allowed"),
    413: _documented("Body larger than api.max_body_bytes"),
    422: _documented("The body or a parameter failed validation"),
    500: _documented("Unexpected server error"),
    503: _documented("The database (or memory) is unavailable right now"),
}
"""``responses=`` for every router: the error shape is part of the contract."""


class ApiError(Exception):
    """Raise from a route to answer with the error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.headers = headers


def error_body(
    status: int, message: str, code: str | None = None, details: list[Any] | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "status": status,
            "code": code or _CODES.get(status, "error"),
            "message": message,
            "details": details or [],
        }
    }


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(status, message, code, details), status_code=status, headers=headers
    )


def error_bytes(status: int, message: str) -> bytes:
    """The body for responses sent below FastAPI (the body-size guard)."""
    return json.dumps(error_body(status, message)).encode()


def _details(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for error in exc.errors():
        out.append(
            {
                "loc": [p if isinstance(p, int) else str(p) for p in error.get("loc", ())],
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
        )
    return jsonable_encoder(out)  # type: ignore[no-any-return]


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through the one shape."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, code=exc.code, headers=exc.headers)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
        if status == 404 and message == "Not Found":
            message = "no such route"
        return error_response(status, message, headers=getattr(exc, "headers", None))

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = _details(exc)
        if any(d["type"] == "json_invalid" for d in details):
            return error_response(
                400, "the body is not valid JSON", code="malformed_json", details=details
            )
        first = details[0] if details else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"]) or "request"
        return error_response(422, f"{where}: {first['msg']}", details=details)

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, DatabaseError):
            # A driver error raised outside the engine (a key check, an admin read): the same
            # one line for the operator (explain() hides a URL's password), the same 503.
            exc = explain(exc, request.app.state.carrier.store.engine.url.render_as_string())
        log.error("database unavailable: %s", exc)
        return error_response(503, "the database is unavailable right now; try again shortly")

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "unexpected server error; it has been logged")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DatabaseError, database_error)
    # Cannot connect, locked past the busy timeout, connection lost: try again later.
    app.add_exception_handler(OperationalError, database_error)
    app.add_exception_handler(InterfaceError, database_error)
    app.add_exception_handler(Exception, unexpected)
