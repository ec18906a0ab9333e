"""The providers' published API contracts, and checking bodies against them.

SendGrid's v3 mail send and Twilio's 2010 Messages API as OpenAPI documents
(``tests/contracts/specs`` shipped with the repository, or ``CAMPAIGN_CONTRACTS_DIR``): the fake
servers (fake_sendgrid.py, fake_twilio.py) validate every request body with these functions,
so a body our adapter builds wrongly is rejected exactly as the provider would reject it; the
contract tests (tests/contracts) call them directly.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
from email_validator import EmailNotValidError, validate_email
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from engine.errors import ConfigError

SENDGRID_SPEC = "tsg_mail_v3.json"
TWILIO_SPEC = "twilio_api_v2010.json"
MAIL_SEND_PATH = "/v3/mail/send"
MESSAGES_TEMPLATE = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
FORM = "application/x-www-form-urlencoded"
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


def contracts_dir() -> Path:
    """Where the providers' OpenAPI documents are: CAMPAIGN_CONTRACTS_DIR, else the copy the
    repository ships as test data (``tests/contracts/specs``), so a clone tests on its own."""
    override = os.environ.get("CAMPAIGN_CONTRACTS_DIR")
    folder = (
        Path(override)
        if override
        else Path(__file__).resolve().parents[2] / "tests" / "contracts" / "specs"
    )
    missing = [name for name in (SENDGRID_SPEC, TWILIO_SPEC) if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"provider API contracts not found: {', '.join(str(folder / n) for n in missing)} "
            "(set CAMPAIGN_CONTRACTS_DIR to the folder holding the OpenAPI documents)"
        )
    return folder


@dataclass(frozen=True)
class ContractViolation:
    field: str | None  # dotted path into the body, e.g. "personalizations.0.to.0.email"
    message: str


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker()

    @checker.checks("email", raises=EmailNotValidError)
    def _email(value: object) -> bool:
        if isinstance(value, str):
            validate_email(value, check_deliverability=False)
        return True

    @checker.checks("phone-number")
    def _phone(value: object) -> bool:
        return not isinstance(value, str) or bool(_E164.match(value))

    @checker.checks("uri")
    def _uri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parts = urlsplit(value)
        return bool(parts.scheme and parts.netloc)

    return checker


@functools.cache
def _spec(name: str) -> tuple[dict[str, Any], Registry[Any]]:
    path = contracts_dir() / name
    document = json.loads(path.read_text(encoding="utf-8"))
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return document, Registry().with_resource(f"urn:spec:{name}", resource)


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


@functools.cache
def _sendgrid_mail_send_validator() -> jsonschema.protocols.Validator:
    document, registry = _spec(SENDGRID_SPEC)
    operation = document["paths"][MAIL_SEND_PATH]["post"]
    body_ref = operation["requestBody"]["$ref"]  # "#/components/requestBodies/PostMailSend"
    schema_ref = f"urn:spec:{SENDGRID_SPEC}{body_ref}/" + _pointer(
        "content", "application/json", "schema"
    )
    # The document is OpenAPI 3.1, whose schemas are JSON Schema 2020-12.
    return jsonschema.Draft202012Validator(
        {"$ref": schema_ref}, registry=registry, format_checker=_format_checker()
    )


@functools.cache
def _twilio_create_message() -> tuple[dict[str, Any], jsonschema.protocols.Validator]:
    document, registry = _spec(TWILIO_SPEC)
    operation = document["paths"][MESSAGES_TEMPLATE]["post"]
    schema = operation["requestBody"]["content"][FORM]["schema"]
    ref = f"urn:spec:{TWILIO_SPEC}#/" + _pointer(
        "paths", MESSAGES_TEMPLATE, "post", "requestBody", "content", FORM, "schema"
    )
    # OpenAPI 3.0 (nullable, ...): the OAS 3.0 dialect validator, refs resolved in the document.
    validator = OAS30Validator({"$ref": ref}, registry=registry, format_checker=_format_checker())
    return schema, validator


@functools.cache
def _twilio_message_resource_validator() -> jsonschema.protocols.Validator:
    _, registry = _spec(TWILIO_SPEC)
    ref = f"urn:spec:{TWILIO_SPEC}#/components/schemas/" + _pointer("api.v2010.account.message")
    return OAS30Validator({"$ref": ref}, registry=registry, format_checker=_format_checker())


def _violations(validator: jsonschema.protocols.Validator, body: object) -> list[ContractViolation]:
    out = []
    for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(part) for part in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            # Point at the missing property itself, as the providers do.
            missing = re.match(r"'([^']+)' is a required property", error.message)
            if missing:
                path = f"{path}.{missing.group(1)}" if path else missing.group(1)
        out.append(ContractViolation(path or None, error.message))
    return out


def validate_sendgrid_mail_send(body: object) -> list[ContractViolation]:
    """Violations of SendGrid's POST /v3/mail/send request schema (empty when valid)."""
    return _violations(_sendgrid_mail_send_validator(), body)


def _coerce_form(form: Mapping[str, list[str]], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Form fields are strings on the wire; give them the schema's types before validating."""
    properties = schema.get("properties", {})
    out: dict[str, Any] = {}
    for key, values in form.items():
        kind = properties.get(key, {}).get("type")
        if kind == "array":
            out[key] = list(values)
            continue
        value: Any = values[-1]
        if kind == "boolean" and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        elif kind == "integer" and re.fullmatch(r"-?[0-9]+", value):
            value = int(value)
        elif kind == "number":
            with contextlib.suppress(ValueError):
                value = float(value)
        out[key] = value
    return out


def validate_twilio_create_message(form: Mapping[str, list[str]]) -> list[ContractViolation]:
    """Violations of Twilio's CreateMessage form schema (empty when valid)."""
    schema, validator = _twilio_create_message()
    return _violations(validator, _coerce_form(form, schema))


def validate_twilio_message_resource(resource: object) -> list[ContractViolation]:
    """Violations of Twilio's Message resource schema (to check the fake's own answers)."""
    return _violations(_twilio_message_resource_validator(), resource)


# ---------------------------------------------------------------- the server
