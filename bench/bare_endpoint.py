"""A FastAPI endpoint doing no work, served like the registrar: the registrations bench's bar.

    python -m bench.bare_endpoint PORT

Same server (`rbr_registrar.server.HttpServer`, so the same uvicorn settings), same paths as
the registrar's registration endpoint and readiness probe; the answer is a constant.
"""

from __future__ import annotations

import signal
import sys

from fastapi import FastAPI

from rbr_registrar.server import HttpServer


def create_app() -> FastAPI:
    """Returns an app whose registration endpoint reads nothing and answers a constant."""
    app = FastAPI()

    @app.post("/api/v1/register_bucket/")
    async def register_bucket() -> dict[str, str]:
        return {"status": "registered"}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main() -> None:
    """Serves the bare app on 127.0.0.1:PORT until SIGTERM."""
    server = HttpServer(create_app(), "127.0.0.1", int(sys.argv[1]))
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    server.run()


if __name__ == "__main__":
    main()
