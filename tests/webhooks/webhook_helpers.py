"""Shared by the webhook tests: keys and signatures made with the providers' own helpers, a
signing test client, and a small world of participants and outbox rows."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from engine.app import App
from engine.clock import FrozenClock
from engine.consent.suppressions import list_suppressions
from engine.db.models import (
    CallTask,
    CampaignRun,
    MessageEvent,
    OutboxMessage,
    Participant,
    Program,
)
from engine.testing.fakes import make_outbox_message, make_participant, make_program, make_run

PUBLIC_URL = "https://hooks.example.org"
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
EVENTS_TOKEN = "events-webhook-token-0123456789abcdef"
EVENTS_PATH = "/webhooks/events"
STATUS_PATH = "/webhooks/twilio/status"
INBOUND_PATH = "/webhooks/twilio/inbound"


@dataclass(frozen=True)
class SendGridKeys:
    private: ec.EllipticCurvePrivateKey
    public_b64: str  # what SendGrid's console shows as the verification key

    def sign(self, body: bytes, timestamp: str) -> dict[str, str]:
        signature = self.private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }


def new_sendgrid_keys() -> SendGridKeys:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SendGridKeys(private, base64.b64encode(der).decode())


def twilio_signature(url: str, params: Mapping[str, str], token: str = TWILIO_TOKEN) -> str:
    signature: str = RequestValidator(token).compute_signature(url, dict(params))
    return signature


class Hooks:
    """A TestClient that signs what it sends, as the providers would."""

    def __init__(self, client: TestClient, keys: SendGridKeys, clock: FrozenClock) -> None:
        self.client = client
        self.keys = keys
        self.clock = clock

    def now_stamp(self) -> str:
        return str(int(self.clock.now().timestamp()))

    def sendgrid(self, events: Sequence[Mapping[str, Any]] | bytes, **kwargs: Any) -> Any:
        body = events if isinstance(events, bytes) else json.dumps(list(events)).encode()
        headers = self.keys.sign(body, kwargs.pop("timestamp", None) or self.now_stamp())
        return self.client.post(
            "/webhooks/sendgrid",
            content=body,
            headers={**headers, "Content-Type": "application/json"},
        )

    def twilio(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        query: str = "",
        signed_url: str | None = None,
    ) -> Any:
        url = signed_url or (PUBLIC_URL + path + (f"?{query}" if query else ""))
        return self.client.post(
            path + (f"?{query}" if query else ""),
            data=dict(params),
            headers={"X-Twilio-Signature": twilio_signature(url, params)},
        )

    def status(self, uid: str | None, params: Mapping[str, str]) -> Any:
        return self.twilio(STATUS_PATH, params, query=f"m={uid}" if uid else "")

    def inbound(self, params: Mapping[str, str]) -> Any:
        return self.twilio(INBOUND_PATH, params)

    def activity(self, body: Any, *, token: str | None = EVENTS_TOKEN) -> Any:
        """POST activity events (any JSON value, or raw bytes) with the Bearer token."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.post(EVENTS_PATH, content=content, headers=headers)


# ---------------------------------------------------------------- data


class World:
    """A program with one active run; participants and outbox rows are added per test, each
    in its own committed transaction (the app under test reads them from other connections)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.at = app.clock.now()
        with app.sessions() as session, session.begin():
            program = make_program(session, at=self.at)
            self.program_id = program.id
            self.run_id = make_run(session, program, at=self.at).id

    def participant(self, **fields: Any) -> Participant:
        with self.app.sessions() as session, session.begin():
            program = session.get(Program, self.program_id)
            assert program is not None
            return make_participant(session, program, at=self.at, **fields)

    def message(
        self,
        participant: Participant,
        *,
        channel: str = "email",
        status: str = "sent",
        provider_message_id: str | None = None,
        step_id: str | None = None,
        run_id: int | None = None,
    ) -> OutboxMessage:
        with self.app.sessions() as session, session.begin():
            run = session.get(CampaignRun, run_id or self.run_id)
            assert run is not None
            message = make_outbox_message(
                session, run, participant, at=self.at, channel=channel, step_id=step_id
            )
            message.status = status
            if status != "queued":
                message.provider = "sendgrid" if channel == "email" else "twilio"
                message.provider_message_id = provider_message_id
                message.attempts = 1
            session.flush()
            return message

    def run(self, campaign: str) -> int:
        with self.app.sessions() as session, session.begin():
            program = session.get(Program, self.program_id)
            assert program is not None
            return make_run(session, program, at=self.at, campaign=campaign).id

    def outbox(self, message: OutboxMessage) -> OutboxMessage:
        with self.app.sessions() as session:
            row = session.get(OutboxMessage, message.id)
            assert row is not None
            return row

    def events(self) -> list[MessageEvent]:
        with self.app.sessions() as session:
            return list(session.scalars(select(MessageEvent).order_by(MessageEvent.id)))

    def suppressions(self) -> list[tuple[str, str | None, str, str]]:
        with self.app.sessions() as session:
            return [
                (s.channel, s.address, s.reason, s.source)
                for s in list_suppressions(session, limit=1000)
            ]

    def tasks(self) -> list[CallTask]:
        with self.app.sessions() as session:
            return list(session.scalars(select(CallTask).order_by(CallTask.id)))

    def statuses(self) -> dict[int, str]:
        with self.app.sessions() as session:
            return dict(session.execute(select(OutboxMessage.id, OutboxMessage.status)).tuples())


# ---------------------------------------------------------------- a fake SendGrid suppression API


class FakeSuppressionApi:
    """SendGrid's GET /v3/suppression/{bounces,spam_reports,unsubscribes} on 127.0.0.1: Bearer
    auth, start_time/end_time (inclusive) and limit/offset as SendGrid documents them, entries
    ``{"created": unix seconds, "email": ..., ...}``. Records every query string."""

    LISTS = ("bounces", "spam_reports", "unsubscribes")

    def __init__(self, api_key: str = "SG.sync-test") -> None:
        self.api_key = api_key
        self.entries: dict[str, list[dict[str, Any]]] = {name: [] for name in self.LISTS}
        self.queries: list[tuple[str, dict[str, str]]] = []
        self.fail_with: int | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query))
                name = parts.path.removeprefix("/v3/suppression/")
                fake.queries.append((name, query))
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    return self._answer(401, {"errors": [{"message": "authorization required"}]})
                if fake.fail_with is not None:
                    return self._answer(fake.fail_with, {"errors": [{"message": "scripted"}]})
                if name not in fake.entries:
                    return self._answer(404, {"errors": [{"message": "not found"}]})
                start = int(query.get("start_time", 0))
                end = int(query.get("end_time", 2**40))
                rows = [e for e in fake.entries[name] if start <= e["created"] <= end]
                offset, limit = int(query.get("offset", 0)), int(query.get("limit", 500))
                self._answer(200, rows[offset : offset + limit])

            def _answer(self, status: int, body: Any) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSuppressionApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"
