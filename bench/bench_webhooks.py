"""Benchmark: SendGrid Event Webhook batches through the real ASGI app (in process).

    .venv/bin/python bench/bench_webhooks.py [--messages 5000] [--batch 1000]
        [--database sqlite|postgresql]

Builds a migrated database with N sent emails, then POSTs signed batches (ECDSA P-256, the
official helper verifies each) of ``processed``, ``delivered`` and ``open`` events for every
message through Starlette's TestClient (no socket: it measures verification, parsing and the
database work, not HTTP), then replays every batch (all duplicates). One JSON line each:

- ``events_per_s``: first delivery. Target >= 1000/s on SQLite: the dispatcher sends email at
  100/s by default and each message yields about three events, so this is a 3x margin.
- ``replay_events_per_s``: a replayed batch must be cheaper than a new one.

Machines are shared 2-core boxes: treat figures as +-30%.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()

    private = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    with tempfile.TemporaryDirectory() as folder:
        url, drop = _database(args.database, Path(folder))
        try:
            _run(url, public, private, args.messages, args.batch, args.database)
        finally:
            drop()


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


def _run(
    url: str, public: str, private: ec.EllipticCurvePrivateKey, n: int, batch: int, kind: str
) -> None:
    clock = FrozenClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    app = build_app(
        Settings(
            database_url=url, sendgrid_webhook_public_key=public, public_url="https://x.example"
        ),
        clock=clock,
    )
    at = clock.now()
    with app.sessions() as session, session.begin():
        program = make_program(session, at=at)
        run = make_run(session, program, at=at)
        member = make_participant(session, program, at=at)
        template = make_outbox_message(session, run, member, at=at, status="sent")
        columns = {c.name: getattr(template, c.name) for c in OutboxMessage.__table__.columns}
        rows = []
        for i in range(n):
            row = dict(columns)
            row.pop("id")
            row.update(
                uid=uuid.uuid4().hex,
                step_id=f"s{i}",
                to_address=f"m{i}@example.com",
                provider="sendgrid",
                provider_message_id=f"pm{i:020d}",
            )
            rows.append(row)
        before = largest_outbox_id(session.connection())
        session.execute(insert(OutboxMessage), rows)
        tally_inserted(session.connection(), before)  # SQLite: no insert trigger (0007)
        uids = [r["uid"] for r in rows]
    stamp = str(int(at.timestamp()))
    events = [
        {
            "event": kind_,
            "sg_event_id": f"{uid}-{kind_}",
            "message_id": uid,
            "email": f"m{i}@example.com",
            "timestamp": int(at.timestamp()),
            "sg_message_id": f"pm{i:020d}.filter",
        }
        for i, uid in enumerate(uids)
        for kind_ in ("processed", "delivered", "open")
    ]
    bodies = [json.dumps(events[i : i + batch]).encode() for i in range(0, len(events), batch)]
    signed = [
        (
            body,
            base64.b64encode(
                private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
            ).decode(),
        )
        for body in bodies
    ]
    with TestClient(build_asgi_app(app)) as client:
        for label in ("events_per_s", "replay_events_per_s"):
            started = time.perf_counter()
            for body, signature in signed:
                response = client.post(
                    "/webhooks/sendgrid",
                    content=body,
                    headers={
                        "X-Twilio-Email-Event-Webhook-Signature": signature,
                        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
                    },
                )
                assert response.status_code == 200, response.text
            elapsed = time.perf_counter() - started
            value = round(len(events) / elapsed)
            target = 1000 if label == "events_per_s" else None
            line = {
                "bench": "webhooks_sendgrid",
                "database": kind,
                "measure": label,
                "events": len(events),
                "batch": batch,
                "seconds": round(elapsed, 3),
                "value": value,
                "target": target,
                "met": None if target is None else value >= target,
            }
            print(json.dumps(line))
    app.close()


if __name__ == "__main__":
    main()
