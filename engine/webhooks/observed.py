"""What `campaign serve` tells operators: GET /metrics (engine/metrics) and the count of
webhook requests by endpoint and outcome, taken by an ASGI middleware around every route."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.app import App
from engine.metrics.collector import EngineCollector
from engine.metrics.counters import Counters
from engine.metrics.names import WEBHOOK_REQUESTS
from engine.webhooks.signatures import AUTHORIZATION_HEADER, BearerTokenVerifier, SignatureError

log = logging.getLogger("campaign.webhooks")

METRICS_PATH = "/metrics"


class RequestCounter:
    """Counts each answered request to a webhook or unsubscribe route (``endpoints``: path
    -> endpoint label; ``prefixes`` for paths with a parameter) as accepted (2xx/3xx),
    refused (4xx) or failed (5xx). /healthz and /metrics are not counted."""

    def __init__(
        self,
        app: ASGIApp,
        counters: Counters,
        endpoints: Mapping[str, str],
        prefixes: Mapping[str, str],
    ) -> None:
        self.app = app
        self.counters = counters
        self.endpoints = endpoints
        self.prefixes = prefixes

    def _endpoint(self, path: str) -> str | None:
        if path in self.endpoints:
            return self.endpoints[path]
        for prefix, name in self.prefixes.items():
            if path.startswith(prefix):
                return name
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._endpoint(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                outcome = "accepted" if status < 400 else "refused" if status < 500 else "failed"
                self.counters.add(WEBHOOK_REQUESTS, endpoint=endpoint, outcome=outcome)
            await send(message)

        await self.app(scope, receive, counted)


def metrics_endpoint(app: App) -> Callable[[Request], Any]:
    """GET /metrics: the engine's metrics, read from the database on each scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(app))
    token = BearerTokenVerifier(app.settings.metrics_token) if app.settings.metrics_token else None

    async def metrics(request: Request) -> Response:
        if token is not None:
            try:
                token.verify(request.headers.get(AUTHORIZATION_HEADER))
            except SignatureError as exc:
                log.warning("/metrics refused: %s", exc)
                return JSONResponse({"error": "missing or wrong Bearer token"}, status_code=403)
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


__all__ = ["METRICS_PATH", "RequestCounter", "metrics_endpoint"]
