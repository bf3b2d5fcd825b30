"""Error answers: one JSON shape, clear messages, never the submitted values.

A registration carries the bucket's token; FastAPI's default validation answer repeats the
input, so every validation error is reshaped here into `{"detail", "errors": [{field,
message}]}` with a message per field that says what is expected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from rbr_registrar.committer import CommitterStopped
from rbr_registrar.models import PATTERN_RULES
from rbr_runtime.db.engine import is_transient_db_error

log = logging.getLogger(__name__)

DATABASE_DOWN = "the registry's database is unavailable; nothing was stored, retry later"


class FieldErrors(Exception):
    """Raised by an endpoint for input that is well-formed but not acceptable (422)."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors))
        self.errors = list(errors)


def field_of(location: Sequence[Any], error_type: str) -> str:
    """Returns the dotted field name of a validation error ('body' for the whole body)."""
    parts = [str(part) for part in location[1:]] if len(location) > 1 else []
    if error_type == "json_invalid" or not parts:
        return "body" if not location or location[0] == "body" else str(location[0])
    return ".".join(parts)


def describe(error: dict[str, Any]) -> str:  # noqa: PLR0911 - one answer per error type
    """Says what is wrong with a value, without repeating it."""
    kind = error.get("type", "")
    context = error.get("ctx") or {}
    simple = {
        "missing": "is required",
        "json_invalid": "is not valid JSON",
        "model_attributes_type": "must be a JSON object",
        "dict_type": "must be a JSON object",
        "model_type": "must be a JSON object",
        "string_type": "must be a string",
        "int_type": "must be an integer",
        "int_parsing": "must be an integer",
        "int_from_float": "must be an integer",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "string_unicode": "must be valid text",
    }
    if kind in simple:
        return simple[kind]
    if kind == "string_too_long":
        return f"must be at most {context.get('max_length')} characters"
    if kind == "string_too_short":
        return f"must be at least {context.get('min_length')} characters"
    if kind == "string_pattern_mismatch":
        return PATTERN_RULES.get(str(context.get("pattern")), "has an invalid format")
    if kind == "greater_than_equal":
        return f"must be at least {context.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {context.get('le')}"
    if kind in ("enum", "literal_error"):
        return f"must be one of {context.get('expected')}"
    if kind in ("value_error", "assertion_error"):
        return str(context.get("error", error.get("msg", "is invalid")))
    return str(error.get("msg", "is invalid"))


def field_error_response(errors: Sequence[tuple[str, str]]) -> JSONResponse:
    """Returns a 422 naming each field at fault."""
    summary = "; ".join(f"{field}: {message}" for field, message in errors)
    return JSONResponse(
        status_code=422,
        content={
            "detail": f"invalid request: {summary}"[:2000],
            "errors": [{"field": field, "message": message} for field, message in errors],
        },
    )


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    details = [
        (field_of(detail.get("loc", ()), detail.get("type", "")), describe(detail))
        for detail in error.errors()
    ]
    return field_error_response(details[:50])


async def _field_errors(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, FieldErrors)
    return field_error_response(error.errors)


# FastAPI's answer to a JSON body it could not decode for a reason other than its syntax
# (raised from the decoding error): a 400 the OpenAPI document does not list, saying nothing.
_FASTAPI_BODY_ERROR = "There was an error parsing the body"


def unreadable_body(error: StarletteHTTPException) -> str | None:
    """Says what is wrong with a request body FastAPI could not decode, or None.

    Such bodies are answered like JSON with a syntax error: a 422 naming the body.
    """
    if error.status_code != 400 or error.detail != _FASTAPI_BODY_ERROR:
        return None
    cause = error.__cause__
    if isinstance(cause, UnicodeError):
        return "is not valid UTF-8 JSON"
    if isinstance(cause, RecursionError):
        return "is not valid JSON: nested too deeply"
    return "could not be read as JSON"


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    unreadable = unreadable_body(error)
    if unreadable is not None:
        return field_error_response([("body", unreadable)])
    return JSONResponse(
        status_code=error.status_code, content={"detail": error.detail}, headers=error.headers
    )


async def _database_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DBAPIError)
    if not is_transient_db_error(error):
        log.error("database error on %s: %s", request.url.path, error)
        return JSONResponse(status_code=500, content={"detail": "internal error"})
    log.warning("database unavailable on %s: %s", request.url.path, str(error)[:300])
    return JSONResponse(
        status_code=503, content={"detail": DATABASE_DOWN}, headers={"Retry-After": "5"}
    )


async def _stopping(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"detail": "the registrar is shutting down; retry later"},
        headers={"Retry-After": "5"},
    )


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path)
    return JSONResponse(status_code=500, content={"detail": "internal error"})


def install(app: FastAPI) -> None:
    """Registers the error handlers on the app."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(FieldErrors, _field_errors)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(CommitterStopped, _stopping)
    app.add_exception_handler(Exception, _unexpected)
