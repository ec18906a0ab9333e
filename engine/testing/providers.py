"""Fake SendGrid and Twilio servers for tests and benchmarks: real HTTP on 127.0.0.1.

The names integrators import, in one place. Where they live:

- contracts.py     the providers' OpenAPI documents and the body validators
- fake_server.py   the shared HTTP server: threads, keep-alive, recording, ``Canned`` failures
- fake_sendgrid.py ``FakeSendGrid`` (v3 mail send, Email Activity)
- fake_twilio.py   ``FakeTwilio`` (2010 Messages: create, fetch, list)
"""

from __future__ import annotations

from engine.testing.contracts import (
    ContractViolation,
    contracts_dir,
    validate_sendgrid_mail_send,
    validate_twilio_create_message,
    validate_twilio_message_resource,
)
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_server import Canned, RecordedRequest
from engine.testing.fake_twilio import FakeTwilio

__all__ = [
    "Canned",
    "ContractViolation",
    "FakeSendGrid",
    "FakeTwilio",
    "RecordedRequest",
    "contracts_dir",
    "validate_sendgrid_mail_send",
    "validate_twilio_create_message",
    "validate_twilio_message_resource",
]
