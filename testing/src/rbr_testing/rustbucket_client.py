"""Registering as the real rustbucket does (jamesbinford/rustbucket `src/registration.rs`).

The real client posts once per start, with reqwest's `.json()`: compact JSON in field order
(`name`, `ip_address`, `operating_system`, `token`; the metrics left out), the headers
`content-type: application/json` and `accept: */*` only, no enrollment key, to its configured
URL (`RUSTBUCKET_REGISTRY_URL`) with a trailing slash appended. `ip_address` is `0.0.0.0`
when none of the public "what is my IP" services answered; the name (`rustbucket-` and 8
letters or digits) and the token (32 letters or digits) are new at every start. It logs the
answer, treats only 200 as success, and never retries.
"""

from __future__ import annotations

import http.client
import json
import secrets
import string
from typing import Any
from urllib.parse import urlsplit

ALPHANUMERIC = string.ascii_letters + string.digits
UNSPECIFIED = "0.0.0.0"
"""What the honeypot sends when it could not learn its public address."""
OPERATING_SYSTEM = "linux (x86_64)"


def random_text(length: int) -> str:
    """Returns random letters and digits, as rand's Alphanumeric distribution gives."""
    return "".join(secrets.choice(ALPHANUMERIC) for _ in range(length))


def new_identity() -> tuple[str, str]:
    """Returns a name and a token as the real client makes them at every start."""
    return f"rustbucket-{random_text(8)}", random_text(32)


def post_like_rustbucket(
    registry_url: str,
    name: str,
    token: str,
    ip_address: str = UNSPECIFIED,
    headers: tuple[tuple[str, str], ...] = (),
) -> tuple[int, Any]:
    """Sends the request the real client sends; returns the status and the decoded answer.

    Args:
        registry_url: the URL the honeypot is configured with (a trailing slash is added).
        name: the instance's generated name.
        token: the instance's generated token.
        ip_address: what it learnt of its public address (`0.0.0.0` when nothing).
        headers: headers a proxy on the way adds (the client itself sends no others).
    """
    url = registry_url if registry_url.endswith("/") else registry_url + "/"
    parts = urlsplit(url)
    payload = {
        "name": name,
        "ip_address": ip_address,
        "operating_system": OPERATING_SYSTEM,
        "token": token,
    }
    body = json.dumps(payload, separators=(",", ":")).encode()
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.putrequest("POST", parts.path, skip_accept_encoding=True)
        connection.putheader("content-type", "application/json")
        connection.putheader("accept", "*/*")
        for header, value in headers:
            connection.putheader(header, value)
        connection.putheader("content-length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()
