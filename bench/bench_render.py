"""Template rendering: the points_expiring email rendered N times through engine.templates.

Measures, in one process (one core), with compiled templates cached as the sender uses them:

- html-part:  the 15-line HTML part alone (the DESIGN.md floor: 25k renders/s per core);
- email:      a whole message (subject + html + text, compliance checks, headers);
- email-new-participant: a whole message with a fresh context and unsubscribe token each time
              (what the sender does per message).

Prints one JSON line per measurement. Run: .venv/bin/python bench/bench_render.py [-n 20000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.consent.unsubscribe import UnsubscribeSigner  # noqa: E402
from engine.templates import (  # noqa: E402
    ParticipantData,
    Renderer,
    message_context,
    sample_context,
)

FLOOR = 25_000  # renders/s per core of a realistic 15-line email (DESIGN.md)


def measure(name: str, n: int, rounds: int, body: Callable[[int], object], floor: int) -> None:
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(n):
            body(i)
        best = max(best, n / (time.perf_counter() - start))
    print(
        json.dumps(
            {
                "measure": name,
                "n": n,
                "per_second": round(best),
                "target": floor,
                "met": best >= floor,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    renderer = Renderer(
        ROOT / "templates",
        postal_address="Example Rewards, 100 Main Street, Springfield, IL 62701, USA",
        public_url="https://campaigns.example.com",
        unsubscribe_signer=UnsubscribeSigner(b"bench-key-" * 4),
    )
    context = sample_context("email", "en")
    context["unsubscribe_url"] = renderer.unsubscribe_url(1)
    full = {**context, "postal_address": renderer.postal_address}
    html = renderer.resolve("email", "points_expiring", "en", "html")
    measure("html-part", args.n, args.rounds, lambda i: html.render(full), FLOOR)
    measure(
        "email",
        args.n,
        args.rounds,
        lambda i: renderer.render_email("points_expiring", context, "en"),
        FLOOR // 3,  # three parts per message
    )
    participant: ParticipantData = context["participant"]
    campaign = {"name": "points-expiring", "description": "Points expiring soon"}

    def per_message(i: int) -> object:
        ctx = message_context(
            replace(participant, external_id=f"M{i}", points_balance=i),
            "Northwind Rewards",
            campaign,
            {"id": "email-1"},
            unsubscribe_url=renderer.unsubscribe_url(i),
        )
        return renderer.render_email("points_expiring", ctx, "en")

    measure("email-new-participant", args.n, args.rounds, per_message, FLOOR // 3)


if __name__ == "__main__":
    main()
