"""The operations tests' server: the app's ASGI application under uvicorn on a real port, in
this process (the same app, so its frozen clock and its counters are the server's)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn

from engine.app import App
from engine.webhooks.app import build_asgi_app


@pytest.fixture
def served(app: App) -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_asgi_app(app), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        started = threading.Event()
        for _ in range(200):
            if server.started:
                break
            started.wait(0.05)
        assert server.started, "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
