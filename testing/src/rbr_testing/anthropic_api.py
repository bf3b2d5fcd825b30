"""A local HTTP server speaking the Anthropic Messages API, for the real SDK to talk to.

The Claude API cannot be reached from tests, so this plays it on 127.0.0.1: `POST /v1/messages`
and `POST /v1/messages/count_tokens` with the API's response and error bodies (status codes,
`request-id` and `retry-after` headers, API key and `anthropic-version` checks). A test
scripts the answers (`enqueue`, or a `responder` function) and inspects every request the SDK
sent (`requests`, `message_requests`).
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

API_KEY = "sk-ant-test-0123456789abcdef"
CHARS_PER_TOKEN = 4
_ids = itertools.count(1)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake API received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def api_key(self) -> str | None:
        """Returns the key presented: `x-api-key`, or `Authorization: Bearer` (newer SDKs)."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        scheme, _, credential = self.headers.get("authorization", "").partition(" ")
        return credential if scheme.lower() == "bearer" else None

    @property
    def system(self) -> str:
        """Returns the system prompt as text."""
        system = self.body.get("system", "")
        if isinstance(system, list):
            return "".join(block.get("text", "") for block in system)
        return str(system)

    @property
    def user_text(self) -> str:
        """Returns the text of every user message, joined."""
        return "\n".join(
            block.get("text", "")
            for message in self.body.get("messages", [])
            if message.get("role") == "user"
            for block in _blocks(message.get("content"))
        )


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content or [])


@dataclass(frozen=True)
class FakeReply:
    """A scripted HTTP answer."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def message_reply(
    text: str,
    *,
    input_tokens: int = 1000,
    output_tokens: int = 200,
    stop_reason: str = "end_turn",
    model: str = "claude-sonnet-5-5",
) -> FakeReply:
    """Returns a successful Messages API answer whose content is one text block."""
    return FakeReply(
        200,
        {
            "id": f"msg_fake{next(_ids):08d}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        },
    )


ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error_reply(
    status: int, message: str | None = None, *, retry_after: float | None = None
) -> FakeReply:
    """Returns an API error answer (`{"type": "error", "error": {...}}`) for the status."""
    kind = ERROR_TYPES.get(status, "api_error")
    headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
    return FakeReply(
        status,
        {
            "type": "error",
            "error": {"type": kind, "message": message or kind.replace("_", " ").capitalize()},
            "request_id": f"req_fake{next(_ids):08d}",
        },
        headers,
    )


def estimate_tokens(body: dict[str, Any]) -> int:
    """Counts a request's tokens the way the fake does: characters / 4 of all its text."""
    request = RecordedRequest("POST", "", {}, body)
    return math.ceil((len(request.system) + len(request.user_text)) / CHARS_PER_TOKEN) + 8


Responder = Callable[[RecordedRequest], FakeReply]


class FakeAnthropic:
    """The fake API server; `base_url` goes into the SDK client (or ANTHROPIC_BASE_URL)."""

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.queue: deque[FakeReply | Responder] = deque()
        self.responder: Responder = lambda _request: message_reply('{"summary": "x"}')
        self._lock = threading.Lock()
        handler = type("FakeAnthropicHandler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """Returns the server's URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        """Starts serving on a thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stops serving."""
        self._server.shutdown()
        self._server.server_close()

    def enqueue(self, *replies: FakeReply | Responder) -> None:
        """Queues answers for the next `POST /v1/messages` requests, in order."""
        self.queue.extend(replies)

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """Returns the `POST /v1/messages` requests received."""
        return [r for r in self.requests if r.path == "/v1/messages"]

    @property
    def count_requests(self) -> list[RecordedRequest]:
        """Returns the `POST /v1/messages/count_tokens` requests received."""
        return [r for r in self.requests if r.path == "/v1/messages/count_tokens"]

    def answer(self, request: RecordedRequest) -> FakeReply:
        """Decides the answer to a request (records it first)."""
        with self._lock:
            self.requests.append(request)
            if request.api_key != self.api_key:
                return error_reply(401, "invalid x-api-key")
            if not request.headers.get("anthropic-version"):
                return error_reply(400, "anthropic-version header is required")
            if request.path == "/v1/messages/count_tokens":
                return FakeReply(200, {"input_tokens": estimate_tokens(request.body)})
            if request.path != "/v1/messages":
                return error_reply(404, f"no route {request.path}")
            if not request.body.get("max_tokens"):
                return error_reply(400, "max_tokens: field required")
            scripted = self.queue.popleft() if self.queue else self.responder
        return scripted(request) if callable(scripted) else scripted


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAnthropic

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(error_reply(400, "request body is not valid JSON"))
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        path = self.path.split("?", 1)[0]
        self._send(self.fake.answer(RecordedRequest("POST", path, headers, body)))

    def _send(self, reply: FakeReply) -> None:
        payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.send_header("request-id", str(reply.body.get("request_id") or f"req_{next(_ids)}"))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Keeps the test output quiet."""


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A fake Anthropic Messages API on 127.0.0.1, stopped after the test."""
    server = FakeAnthropic()
    server.start()
    yield server
    server.stop()
