"""Helpers of the operations tests: HTTP requests to a served app and its /metrics scrape."""

from __future__ import annotations

import http.client

from prometheus_client.parser import text_string_to_metric_families

METRICS_TOKEN = "metrics-token-0123456789abcdef"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def scrape_text(port: int) -> str:
    status, text = request(
        port, "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert status == 200, text
    return text


def scrape(port: int) -> Samples:
    """The samples of one scrape: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scrape_text(port))
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))
