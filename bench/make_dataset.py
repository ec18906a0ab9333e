"""Write the benchmark data sets with the demo's generator.

    .venv/bin/python bench/make_dataset.py --participants 1000000 --events-per-participant 10 \\
        --out bench/data

Prints the paths, sizes, row counts and the generator's speed. The same --seed and --now give
byte-identical files; --now defaults to today 00:00 UTC so the data looks current.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.demo.generator import generate_dataset


def _aware(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r}: give an offset, e.g. +00:00")
    return parsed.astimezone(UTC)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=1_000_000)
    parser.add_argument("--events-per-participant", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bad-row-rate", type=float, default=0.01)
    parser.add_argument("--now", type=_aware, help="the data set's today (ISO 8601 with offset)")
    parser.add_argument("--out", type=Path, default=Path("bench/data"))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    now = args.now or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    started = time.perf_counter()
    dataset = generate_dataset(
        args.out,
        participants=args.participants,
        events_per_participant=args.events_per_participant,
        seed=args.seed,
        bad_row_rate=args.bad_row_rate,
        now=now,
    )
    seconds = time.perf_counter() - started
    rows = dataset.participant_rows + dataset.events
    result = {
        "now": now.isoformat(),
        "seed": args.seed,
        "participants": {
            "path": str(dataset.paths.participants),
            "rows": dataset.participant_rows,
            "bad_rows": len(dataset.bad_lines),
            "bytes": dataset.paths.participants.stat().st_size,
        },
        "events": {
            "path": str(dataset.paths.events),
            "rows": dataset.events,
            "bytes": dataset.paths.events.stat().st_size,
        },
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds) if seconds else None,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"now {result['now']}, seed {args.seed}")
    for name in ("participants", "events"):
        part = result[name]
        assert isinstance(part, dict)
        print(f"{part['path']}: {part['rows']:,} rows, {part['bytes'] / 1e6:,.1f} MB")
    print(f"{len(dataset.bad_lines):,} planted bad participant rows")
    print(f"{seconds:,.1f} s, {result['rows_per_second']:,} rows/s")


if __name__ == "__main__":
    main()
