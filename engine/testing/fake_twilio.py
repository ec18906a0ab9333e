"""A fake Twilio (2010 Messages API: create, fetch, list) for tests and benchmarks: real HTTP
on 127.0.0.1 (fake_server.py), Basic auth, every form checked against the contract."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs

from engine.clock import Clock, SystemClock
from engine.testing.contracts import (
    ContractViolation,
    validate_twilio_create_message,
)
from engine.testing.fake_server import Answer, FakeServer, json_answer

_TWILIO_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
# ListMessage's query parameters in the 2010 contract.
_TWILIO_LIST_PARAMETERS = {
    "To",
    "From",
    "DateSent",
    "DateSent<",
    "DateSent>",
    "PageSize",
    "Page",
    "PageToken",
}


def _twilio_error(status: int, code: int | None, message: str) -> dict[str, Any]:
    more = f"https://www.twilio.com/docs/errors/{code}" if code else None
    return {"code": code, "message": message, "more_info": more, "status": status}


class FakeTwilio(FakeServer):
    """Twilio 2010 POST /2010-04-01/Accounts/{AccountSid}/Messages.json: Basic auth with the
    account sid and auth token, form body validated against CreateMessage, 201 with a Message
    resource (sid "SM" + 32 hex, status "queued")."""

    name = "Twilio"

    def __init__(
        self,
        account_sid: str = "AC" + "0" * 31 + "1",
        auth_token: str = "test-auth-token",
        *,
        clock: Clock | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.clock = clock or SystemClock()
        self.created: list[dict[str, Any]] = []  # the Message resources made, oldest first

    def messages_path(self, account_sid: str | None = None) -> str:
        return f"/2010-04-01/Accounts/{account_sid or self.account_sid}/Messages.json"

    def inspect(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[Any, Mapping[str, list[str]] | None, tuple[ContractViolation, ...]]:
        if not _TWILIO_MESSAGES.match(path) or method != "POST":
            return None, None, ()
        try:
            form = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError) as exc:
            return None, None, (ContractViolation(None, f"body is not form-encoded: {exc}"),)
        violations = tuple(validate_twilio_create_message(form)) if self.validate else ()
        return None, form, violations

    def _authorised(self, headers: Mapping[str, str], path_sid: str) -> bool:
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == self.account_sid == path_sid and password == self.auth_token

    def answer(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        parsed: Any,
        form: Mapping[str, list[str]] | None,
        violations: tuple[ContractViolation, ...],
    ) -> Answer:
        match = _TWILIO_MESSAGES.match(path)
        if match is None:
            return json_answer(
                404, _twilio_error(404, 20404, f"The requested resource {path} was not found")
            )
        if method not in ("POST", "GET"):
            return json_answer(405, _twilio_error(405, 20004, "Method not allowed"))
        if not self._authorised(headers, match["sid"]):
            return json_answer(401, _twilio_error(401, 20003, "Authenticate"))
        if method == "GET":
            return self._list(path, form or {})
        form = form or {}
        if violations:
            return json_answer(400, self._violation_error(violations))
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return json_answer(
                400, _twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' is required.")
            )
        if not (form.get("Body") or form.get("MediaUrl") or form.get("ContentSid")):
            return json_answer(400, _twilio_error(400, 21602, "Message body is required."))
        resource = self._message_resource(form)
        if self.record:
            with self._lock:
                self.created.append(resource)
        return json_answer(201, resource)

    def _list(self, path: str, params: Mapping[str, list[str]]) -> Answer:
        """``GET .../Messages.json`` (ListMessage): filters ``To``, ``From``, ``DateSent``,
        ``DateSent<``, ``DateSent>``; one page of up to ``PageSize`` (1000 at most), newest
        first. A parameter the contract does not name is a 400."""
        unknown = sorted(set(params) - _TWILIO_LIST_PARAMETERS)
        size_text = (params.get("PageSize") or ["50"])[-1]
        if unknown or not size_text.isdigit() or not 1 <= int(size_text) <= 1000:
            return json_answer(
                400, _twilio_error(400, 20001, f"Invalid list parameters: {unknown or size_text}")
            )

        def one(key: str) -> str | None:
            values = params.get(key)
            return values[-1] if values else None

        try:
            after, before, on = (
                _iso(one("DateSent>")),
                _iso(one("DateSent<")),
                _iso(one("DateSent")),
            )
        except ValueError as exc:
            return json_answer(400, _twilio_error(400, 20001, f"Invalid DateSent: {exc}"))
        with self._lock:
            resources = list(reversed(self.created))
        chosen = []
        for resource in resources:
            sent = parsedate_to_datetime(resource["date_created"])
            if (
                (one("To") is None or resource["to"] == one("To"))
                and (one("From") is None or resource["from"] == one("From"))
                and (after is None or sent >= after)
                and (before is None or sent < before)
                and (on is None or sent.date() == on.date())
            ):
                chosen.append({**resource, "date_sent": resource["date_created"]})
        page = chosen[: int(size_text)]
        return json_answer(
            200,
            {
                "messages": page,
                "start": 0,
                "end": max(0, len(page) - 1),
                "page": 0,
                "page_size": int(size_text),
                "first_page_uri": f"{path}?PageSize={size_text}&Page=0",
                "next_page_uri": None,
                "previous_page_uri": None,
                "uri": f"{path}?PageSize={size_text}&Page=0",
            },
        )

    def _violation_error(self, violations: tuple[ContractViolation, ...]) -> dict[str, Any]:
        by_field = {v.field: v for v in violations}
        text = "; ".join(f"{v.field}: {v.message}" for v in violations)
        to = by_field.get("To")
        if to is not None:
            if "required" in to.message:
                return _twilio_error(400, 21604, "A 'To' phone number is required.")
            return _twilio_error(400, 21211, f"Invalid 'To' Phone Number: {text}")
        if "From" in by_field:
            return _twilio_error(400, 21212, f"Invalid 'From' Phone Number: {text}")
        if "StatusCallback" in by_field:
            return _twilio_error(400, 21609, f"Invalid StatusCallback url: {text}")
        # The fake's catch-all: real Twilio has a code per parameter; the status says enough.
        return _twilio_error(400, None, f"Invalid parameter: {text}")

    def _message_resource(self, form: Mapping[str, list[str]]) -> dict[str, Any]:
        def one(key: str) -> str | None:
            values = form.get(key)
            return values[-1] if values else None

        sid = "SM" + uuid.uuid4().hex
        created = format_datetime(self.clock.now(), usegmt=True)
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        body = one("Body") or ""
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": created,
            "date_sent": None,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": one("From"),
            "messaging_service_sid": one("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": str(max(1, -(-len(body) // 153) if len(body) > 160 else 1)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if one("MessagingServiceSid") else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": one("To"),
            "uri": f"{uri}.json",
        }


def _iso(value: str | None) -> datetime | None:
    """An ISO 8601 instant (UTC when it has no offset), or None."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
