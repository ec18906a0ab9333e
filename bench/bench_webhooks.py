"""Benchmark: SendGrid Event Webhook batches through the real ASGI app (in process), next to
its floor measured in the same run (issue #20: a ratio, no absolute rate asserted).

    .venv/bin/python bench/bench_webhooks.py [--messages 5000] [--batch 1000]
        [--database sqlite|postgresql] [--rounds 3]

Signed batches (ECDSA P-256) of ``processed``, ``delivered`` and ``open`` events for N sent
emails are made once. Each round builds a fresh migrated database holding the N messages, then
POSTs every batch through Starlette's TestClient (no socket: verification, parsing and the
database work, not HTTP), then replays every batch (all duplicates). The floor, in the same
process and round, on the same batches: the official SendGrid helper verifies each signature
(as the app does), ``json.loads`` parses the body, and one row per event (provider, event id,
event, time, message uid, the event as JSON) is written into a table without indexes, keys,
constraints or triggers (``floor_message_events``): COPY on PostgreSQL, executemany on SQLite,
one commit per batch (the app's one transaction per request). What the app does beyond that
(the ASGI request, event cleaning, the duplicate check, the message lookups, message_events'
keys, status moves, tallies, suppressions) is what the ratio prices. The order alternates
(floor first in even rounds) so that a drifting load falls on both alike.

One JSON line per round and measurement: events/s of the app and of the floor, the ratio
(app / floor; the replay's ratio is to the same floor, a new batch's), and the same per CPU
second of this process (on PostgreSQL the server's CPU is not counted). With ``--rounds N`` a
last line per measurement gives the medians. Issue #7's absolute figure (>= 1,000 events/s on
SQLite, 3x what the default email rate produces) is history, not checked.
"""

from __future__ import annotations

import argparse
import base64
import json
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from sendgrid.helpers.eventwebhook import EventWebhook  # noqa: E402
from sqlalchemy import create_engine, insert, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from engine.app import build_app  # noqa: E402
from engine.clock import FrozenClock  # noqa: E402
from engine.db import migrate  # noqa: E402
from engine.db.models import OutboxMessage  # noqa: E402
from engine.db.session import make_engine  # noqa: E402
from engine.reports.tallies import largest_outbox_id, tally_inserted  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.testing.fakes import make_outbox_message, make_participant, make_program, make_run  # noqa: E402
from engine.webhooks.app import build_asgi_app  # noqa: E402

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
FLOOR_TABLE = "floor_message_events"
HEADERS = ("X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians at the end")
    args = parser.parse_args()

    private = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    uids = [uuid.uuid4().hex for _ in range(args.messages)]
    signed = _signed_batches(uids, private, args.batch)
    records = []
    for number in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as folder:
            url, drop = _database(args.database, Path(folder))
            try:
                records.append(_round(url, public, uids, signed, args, number))
            finally:
                drop()
    if args.rounds > 1:
        for index, measure in enumerate(("events_per_s", "replay_events_per_s")):
            mine = [r[index] for r in records]
            print(
                json.dumps(
                    {
                        "bench": "webhooks_sendgrid",
                        "database": args.database,
                        "measure": f"{measure} median",
                        "rounds": args.rounds,
                        **{
                            key: round(statistics.median(r[key] for r in mine), 3)
                            for key in (
                                "value",
                                "floor_events_per_s",
                                "ratio_to_floor",
                                "cpu_ratio_to_floor",
                            )
                        },
                        "ratios": [r["ratio_to_floor"] for r in mine],
                        "cpu_ratios": [r["cpu_ratio_to_floor"] for r in mine],
                    }
                ),
                flush=True,
            )


def _database(kind: str, folder: Path) -> tuple[str, Callable[[], None]]:
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'bench.db'}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        return url, lambda: None
    name = f"bench_webhooks_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def _signed_batches(
    uids: list[str], private: ec.EllipticCurvePrivateKey, batch: int
) -> list[tuple[bytes, str]]:
    """processed, delivered and open for every message, in signed batches of ``batch``."""
    stamp = str(int(NOW.timestamp()))
    events = [
        {
            "event": kind_,
            "sg_event_id": f"{uid}-{kind_}",
            "message_id": uid,
            "email": f"m{i}@example.com",
            "timestamp": int(NOW.timestamp()),
            "sg_message_id": f"pm{i:020d}.filter",
        }
        for i, uid in enumerate(uids)
        for kind_ in ("processed", "delivered", "open")
    ]
    bodies = [json.dumps(events[i : i + batch]).encode() for i in range(0, len(events), batch)]
    return [
        (
            body,
            base64.b64encode(
                private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
            ).decode(),
        )
        for body in bodies
    ]


def _fill(app: Any, uids: list[str]) -> None:
    """The N sent emails the events are about."""
    at = NOW
    with app.sessions() as session, session.begin():
        program = make_program(session, at=at)
        run = make_run(session, program, at=at)
        member = make_participant(session, program, at=at)
        template = make_outbox_message(session, run, member, at=at, status="sent")
        columns = {c.name: getattr(template, c.name) for c in OutboxMessage.__table__.columns}
        rows = []
        for i, uid in enumerate(uids):
            row = dict(columns)
            row.pop("id")
            row.update(
                uid=uid,
                step_id=f"s{i}",
                to_address=f"m{i}@example.com",
                provider="sendgrid",
                provider_message_id=f"pm{i:020d}",
            )
            rows.append(row)
        before = largest_outbox_id(session.connection())
        session.execute(insert(OutboxMessage), rows)
        tally_inserted(session.connection(), before)  # SQLite: no insert trigger (0007)


def _through_app(app: Any, signed: list[tuple[bytes, str]]) -> tuple[float, float]:
    """Every batch POSTed to the app: (seconds, CPU seconds)."""
    stamp = str(int(NOW.timestamp()))
    with TestClient(build_asgi_app(app)) as client:
        started, cpu = time.perf_counter(), _cpu_seconds()
        for body, signature in signed:
            response = client.post(
                "/webhooks/sendgrid",
                content=body,
                headers={HEADERS[0]: signature, HEADERS[1]: stamp},
            )
            assert response.status_code == 200, response.text
        return time.perf_counter() - started, _cpu_seconds() - cpu


def _floor(url: str, public: str, signed: list[tuple[bytes, str]]) -> tuple[float, float, int]:
    """The floor (module docstring): (seconds, CPU seconds, rows written)."""
    postgres = url.startswith("postgresql")
    stamp = str(int(NOW.timestamp()))
    helper = EventWebhook(public)  # made once, as the app's verifier is
    engine = create_engine(url)
    raw: Any = engine.raw_connection()
    driver = raw.driver_connection
    cursor = driver.cursor()
    cursor.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
    when = "timestamptz" if postgres else "text"
    cursor.execute(
        f"CREATE TABLE {FLOOR_TABLE} (provider text, provider_event_id text, event text, "
        f"occurred_at {when}, received_at {when}, message_uid text, detail text)"
    )
    driver.commit()
    names = "provider, provider_event_id, event, occurred_at, received_at, message_uid, detail"
    insert_sql = f"INSERT INTO {FLOOR_TABLE} ({names}) VALUES (?, ?, ?, ?, ?, ?, ?)"
    received = NOW if postgres else NOW.isoformat()
    written = 0
    started, cpu = time.perf_counter(), _cpu_seconds()
    for body, signature in signed:
        assert helper.verify_signature(body.decode("utf-8"), signature, stamp)
        rows = []
        for event in json.loads(body):
            occurred = datetime.fromtimestamp(event["timestamp"], UTC)
            rows.append(
                (
                    "sendgrid",
                    event["sg_event_id"],
                    event["event"],
                    occurred if postgres else occurred.isoformat(),
                    received,
                    event["message_id"],
                    json.dumps(event),
                )
            )
        if postgres:
            with cursor.copy(f"COPY {FLOOR_TABLE} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(insert_sql, rows)
        driver.commit()
        written += len(rows)
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    raw.close()
    engine.dispose()
    return seconds, cpu, written


def _round(
    url: str,
    public: str,
    uids: list[str],
    signed: list[tuple[bytes, str]],
    args: argparse.Namespace,
    number: int,
) -> list[dict[str, Any]]:
    """One round on a fresh database: the app (new, then replayed) and the floor."""
    app = build_app(
        Settings(
            database_url=url, sendgrid_webhook_public_key=public, public_url="https://x.example"
        ),
        clock=FrozenClock(NOW),
    )
    try:
        _fill(app, uids)
        events = 3 * len(uids)
        if number % 2 == 0:
            floor_seconds, floor_cpu, written = _floor(url, public, signed)
        measured = {label: _through_app(app, signed) for label in ("events_per_s", "replay")}
        if number % 2:
            floor_seconds, floor_cpu, written = _floor(url, public, signed)
    finally:
        app.close()
    floor_rate, floor_cpu_rate = events / floor_seconds, events / floor_cpu
    records = []
    for label, (seconds, cpu) in measured.items():
        value = events / seconds
        record = {
            "bench": "webhooks_sendgrid",
            "database": args.database,
            "round": number,
            "measure": "events_per_s" if label == "events_per_s" else "replay_events_per_s",
            "events": events,
            "batch": args.batch,
            "seconds": round(seconds, 3),
            "value": round(value),
            "floor": "verify + json.loads + "
            + ("COPY" if args.database == "postgresql" else "executemany")
            + " into a table without indexes",
            "floor_seconds": round(floor_seconds, 3),
            "floor_events_per_s": round(floor_rate),
            "floor_correct": written == events,
            "ratio_to_floor": round(value / floor_rate, 3),
            "events_per_cpu_s": round(events / cpu),
            "floor_events_per_cpu_s": round(floor_cpu_rate),
            "cpu_ratio_to_floor": round(events / cpu / floor_cpu_rate, 3),
        }
        print(json.dumps(record), flush=True)
        records.append(record)
    return records


if __name__ == "__main__":
    main()
