"""A fake SendGrid (v3 mail send and the Email Activity API) for tests and benchmarks: real
HTTP on 127.0.0.1 (fake_server.py), Bearer auth, every body checked against the contract."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from engine.testing.contracts import MAIL_SEND_PATH, ContractViolation, validate_sendgrid_mail_send
from engine.testing.fake_server import Answer, FakeServer, json_answer

ACTIVITY_PATH = "/v3/messages"
_UNIQUE_ARG_QUERY = re.compile(r"unique_args\['(?P<name>[\w.-]+)'\]\s*=\s*\"(?P<value>[^\"]*)\"")


def _sendgrid_errors(*errors: tuple[str | None, str]) -> dict[str, Any]:
    return {"errors": [{"field": f, "message": m, "help": None} for f, m in errors]}


class FakeSendGrid(FakeServer):
    """SendGrid v3 POST /v3/mail/send: Bearer auth, body validated against the contract,
    202 with X-Message-Id, or 400 with SendGrid's ``{"errors": [{field, message}]}``."""

    name = "SendGrid"

    def __init__(self, api_key: str = "SG.test-key", **options: Any) -> None:
        super().__init__(**options)
        self.api_key = api_key
        # What it took, one entry per recipient, as its Email Activity API lists them (with
        # our message id, which that API filters on but does not show).
        self.activity: list[dict[str, Any]] = []

    def inspect(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[Any, Mapping[str, list[str]] | None, tuple[ContractViolation, ...]]:
        if path != MAIL_SEND_PATH or method != "POST":
            return None, None, ()
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, None, (ContractViolation(None, f"body is not JSON: {exc}"),)
        violations = tuple(validate_sendgrid_mail_send(parsed)) if self.validate else ()
        return parsed, None, violations

    def answer(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        parsed: Any,
        form: Mapping[str, list[str]] | None,
        violations: tuple[ContractViolation, ...],
    ) -> Answer:
        if path == ACTIVITY_PATH and method == "GET":
            return self._activity(headers, form or {})
        if path != MAIL_SEND_PATH:
            return json_answer(404, _sendgrid_errors((None, f"no route {path}")))
        if method != "POST":
            return json_answer(405, _sendgrid_errors((None, "method not allowed")))
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return json_answer(
                401,
                _sendgrid_errors(
                    (None, "The provided authorization grant is invalid, expired, or revoked")
                ),
            )
        if not headers.get("content-type", "").startswith("application/json"):
            return json_answer(415, _sendgrid_errors((None, "Content-Type must be JSON")))
        if violations:
            return json_answer(400, _sendgrid_errors(*((v.field, v.message) for v in violations)))
        # SendGrid's id is 22 url-safe characters; per-recipient ids in events extend it.
        message_id = secrets.token_urlsafe(16)[:22]
        self._took(message_id, parsed)
        return Answer(202, b"", {"X-Message-Id": message_id})

    def _took(self, message_id: str, mail: dict[str, Any]) -> None:
        if not self.record:
            return
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entries = [
            {
                "from_email": (mail.get("from") or {}).get("email"),
                "msg_id": f"{message_id}.filterdrecv-fake-{index}.0",
                "subject": p.get("subject") or mail.get("subject") or "",
                "to_email": to.get("email"),
                "status": "processed",
                "opens_count": 0,
                "clicks_count": 0,
                "last_event_time": at,
                "unique_args": dict(p.get("custom_args") or {}),
            }
            for index, p in enumerate(mail.get("personalizations") or [])
            for to in p.get("to") or []
        ]
        with self._lock:
            self.activity.extend(entries)

    def _activity(self, headers: Mapping[str, str], params: Mapping[str, list[str]]) -> Answer:
        """``GET /v3/messages?query=...&limit=N`` (Email Activity), as SendGrid documents
        it; of its query language only ``unique_args['NAME']="VALUE"`` (what reconcile
        asks) is understood, anything else is a 400. The shipped contract has no such
        endpoint: the shape is the documented one."""
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return json_answer(401, _sendgrid_errors((None, "authorization required")))
        query = (params.get("query") or [""])[-1]
        match = _UNIQUE_ARG_QUERY.fullmatch(query.strip())
        limit_text = (params.get("limit") or ["10"])[-1]
        if match is None or not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            return json_answer(400, _sendgrid_errors(("query", f"invalid query {query!r}")))
        name, value = match["name"], match["value"]
        with self._lock:
            found = [e for e in self.activity if e["unique_args"].get(name) == value]
        shown = [{k: v for k, v in e.items() if k != "unique_args"} for e in found]
        return json_answer(200, {"messages": shown[: int(limit_text)]})


# ---------------------------------------------------------------- Twilio 2010
