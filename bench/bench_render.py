"""Template rendering: the points_expiring email rendered N times through engine.templates,
as a ratio to bare Jinja2 rendering the same template files in the same run.

Measures, in one process (one core), with compiled templates cached as the sender uses them:

- html-part:  the 15-line HTML part alone;
- email:      a whole message (subject + html + text, compliance checks, headers);
- email-new-participant: a whole message with a fresh context and unsubscribe token each time
              (what the sender does per message).

The floor of each, measured in alternating rounds with it: a plain ``jinja2.Environment``
(no sandbox, no strict undefined, the same filters) rendering the same part(s) with a plain
dict holding the same values (``Template.render``). The ratio (engine / floor) is what to
compare between runs and machines; no absolute rate is asserted (issue #20).

Prints one JSON line per measurement. Run: .venv/bin/python bench/bench_render.py [-n 20000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import jinja2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.consent.unsubscribe import UnsubscribeSigner  # noqa: E402
from engine.templates import (  # noqa: E402
    ParticipantData,
    Renderer,
    date_filter,
    message_context,
    number_filter,
    sample_context,
)

FLOOR = "bare jinja2: the same part(s), plain Environment, plain dict"


def plain(value: Any) -> Any:
    """The context as plain dicts (dataclasses flattened), what a bare render is given."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def rate(n: int, body: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(n):
        body(i)
    return n / (time.perf_counter() - start)


def measure(
    name: str, n: int, rounds: int, body: Callable[[int], object], floor: Callable[[int], object]
) -> None:
    """Best of ``rounds`` for the engine and for its floor, taken in alternation so that a
    busy moment of the machine weighs on both."""
    best = best_floor = 0.0
    for _ in range(rounds):
        best_floor = max(best_floor, rate(n, floor))
        best = max(best, rate(n, body))
    print(
        json.dumps(
            {
                "measure": name,
                "n": n,
                "per_second": round(best),
                "floor": FLOOR,
                "floor_per_second": round(best_floor),
                "ratio_to_floor": round(best / best_floor, 2),
            }
        ),
        flush=True,
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
    bare = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ROOT / "templates")),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
    )
    bare.filters["number"] = number_filter  # the template's own filters
    bare.filters["date"] = date_filter
    parts = [bare.get_template(f"email/points_expiring.{p}.j2") for p in ("subject", "html", "txt")]

    context = sample_context("email", "en")
    context["unsubscribe_url"] = renderer.unsubscribe_url(1)
    full = {**context, "postal_address": renderer.postal_address}
    flat = plain(full)

    def bare_email(i: int) -> object:
        return [part.render(flat) for part in parts]

    html = renderer.resolve("email", "points_expiring", "en", "html")
    measure(
        "html-part",
        args.n,
        args.rounds,
        lambda i: html.render(full),
        lambda i: parts[1].render(flat),
    )
    measure(
        "email",
        args.n,
        args.rounds,
        lambda i: renderer.render_email("points_expiring", context, "en"),
        bare_email,
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

    measure("email-new-participant", args.n, args.rounds, per_message, bare_email)


if __name__ == "__main__":
    main()
