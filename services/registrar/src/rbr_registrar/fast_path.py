"""Registrations served without FastAPI's per-request machinery; anything unusual goes through it.

A registration through FastAPI passes six middlewares, the routes' matching, the solving of
its dependencies and a validation of the JSON decoded in Python: most of the registrar's
CPU per registration, and the registrar is bound to one core's worth of it (the GIL). The
common request (a declared Content-Length within the limit, `application/json`, a body the
model accepts) is served here instead: the body is validated by pydantic straight from its
bytes and handed to the same function the route calls (`api.register`), and an error it
raises is answered by the app's own exception handlers. Everything else (no or another
Content-Type, a chunked or too large body, a body the model refuses) is passed to the
FastAPI app untouched, the body read so far replayed, so its answers stay FastAPI's: the
same 413, the same 422 naming each field. FastAPI's native telemetry (OpenTelemetry, not
used by the registry) does not see the requests served here.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from rbr_registrar.models import RegistrationRequest

REGISTRATION_PATHS = (
    "/api/v1/register_bucket/",
    "/api/v1/register_bucket",
    "/register_bucket",
    "/register_bucket/",
)
"""Where buckets post their registrations (the first is the documented one)."""

Register = Callable[
    [RegistrationRequest, Request, HTTPAuthorizationCredentials | None], Awaitable[Response]
]
Handler = Callable[[Request, Exception], Any]

_PATHS = frozenset(REGISTRATION_PATHS)
_JSON = "application/json"


class RegistrarApp(FastAPI):
    """The registrar's FastAPI app: registrations take `fast_registrations` when it is set."""

    fast_registrations: FastRegistrations | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serves a request: a registration on the fast path, anything else as FastAPI does."""
        fast = self.fast_registrations
        if fast is not None and fast.takes(scope):
            await fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serves a request the way FastAPI does (for what the fast path passes on)."""
        await super().__call__(scope, receive, send)


class FastRegistrations:
    """Serves the common registration request directly (see the module's docstring)."""

    def __init__(
        self, app: RegistrarApp, register: Register, bearer: HTTPBearer, max_bytes: int
    ) -> None:
        self._app = app
        self._register = register
        self._bearer = bearer
        self._max_bytes = max_bytes

    def takes(self, scope: Scope) -> bool:
        """Tells whether a request is a registration (served here, or passed on from here)."""
        return (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in _PATHS
            and not scope.get("root_path")
            and not self._app.root_path
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serves one registration, or passes it on to FastAPI."""
        if not self._plain(scope):
            await self._app.serve(scope, receive, send)
            return
        received: list[Message] = []
        body = await _read_body(receive, received)
        payload = None
        if body is not None:
            try:
                payload = RegistrationRequest.model_validate_json(body)
            except ValidationError:
                payload = None
        if payload is None:
            await self._app.serve(scope, _replaying(received, receive), send)
            return
        scope["app"] = self._app
        request = Request(scope, receive)
        try:
            response = await self._register(payload, request, await self._bearer(request))
        except Exception as error:  # noqa: BLE001 - answered by the app's handlers, as in FastAPI
            await self._answer_error(request, error, send)
            return
        await response(scope, receive, send)

    def _plain(self, scope: Scope) -> bool:
        """Tells whether the request declares a JSON body within the limit."""
        length: bytes | None = None
        content_type: bytes | None = None
        for name, value in scope["headers"]:
            lowered = name.lower()
            if lowered == b"content-length":
                if length is not None:
                    return False  # two lengths: FastAPI's (and the server's) business
                length = value
            elif lowered == b"content-type":
                if content_type is not None:
                    return False
                content_type = value
        if length is None or not length.isdigit() or int(length) > self._max_bytes:
            return False
        if content_type is None:
            return False
        media_type = content_type.decode("latin-1").partition(";")[0].strip().lower()
        return media_type == _JSON

    async def _answer_error(self, request: Request, error: Exception, send: Send) -> None:
        """Answers an error as FastAPI's ExceptionMiddleware and ServerErrorMiddleware would."""
        handlers = self._app.exception_handlers
        handler = _handler_for(handlers, error)
        unexpected = handler is None
        if handler is None:
            handler = handlers.get(500) or handlers.get(Exception)
        if handler is None:
            raise error
        if inspect.iscoroutinefunction(handler):
            response = await handler(request, error)
        else:
            response = await run_in_threadpool(handler, request, error)
        await response(request.scope, request.receive, send)
        if unexpected:
            raise error  # as ServerErrorMiddleware: the server logs it


def _handler_for(handlers: dict[Any, Handler], error: Exception) -> Handler | None:
    """Returns the handler ExceptionMiddleware would pick (by status, then by class)."""
    if isinstance(error, HTTPException) and error.status_code in handlers:
        return handlers[error.status_code]
    for cls in type(error).__mro__:
        if cls is Exception:
            return None  # ServerErrorMiddleware's, not ExceptionMiddleware's
        if cls in handlers:
            return handlers[cls]
    return None


async def _read_body(receive: Receive, received: list[Message]) -> bytes | None:
    """Reads the whole body; None when the client left first (FastAPI then answers that)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(received: list[Message], receive: Receive) -> Receive:
    """Returns a `receive` giving the messages already read again, then the server's."""
    waiting = list(received)

    async def replay() -> Message:
        if waiting:
            return waiting.pop(0)
        return await receive()

    return replay
