"""The fake servers' contract validation is real: bodies that break the published OpenAPI
documents are refused, and what the fakes answer matches the documents too."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from engine.errors import ConfigError
from engine.testing.contracts import (
    contracts_dir,
    validate_sendgrid_mail_send,
    validate_twilio_create_message,
    validate_twilio_message_resource,
)
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_twilio import FakeTwilio

VALID_MAIL = {
    "personalizations": [{"to": [{"email": "a@example.com"}], "custom_args": {"message_id": "m1"}}],
    "from": {"email": "rewards@example.com"},
    "subject": "Hello",
    "content": [{"type": "text/plain", "value": "Hi"}],
}


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


def post_mail(server: FakeSendGrid, body: object) -> requests.Response:
    return requests.post(
        f"{server.url}/v3/mail/send",
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"},
        timeout=5,
    )


def post_sms(server: FakeTwilio, form: dict[str, str]) -> requests.Response:
    token = base64.b64encode(f"{server.account_sid}:{server.auth_token}".encode()).decode()
    return requests.post(
        server.url + server.messages_path(),
        data=urlencode(form),
        headers={
            "Authorization": f"Basic {token}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        timeout=5,
    )


def test_a_valid_mail_body_is_accepted(sendgrid: FakeSendGrid) -> None:
    response = post_mail(sendgrid, VALID_MAIL)
    assert response.status_code == 202 and response.headers["X-Message-Id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # What the SDK's Mail.custom_arg produces: an object where the contract says string.
        ({**VALID_MAIL, "custom_args": {"message_id": "m1"}}, "custom_args"),
        ({key: value for key, value in VALID_MAIL.items() if key != "from"}, "from"),
        (
            {**VALID_MAIL, "personalizations": [{"to": [{"email": "nope"}]}]},
            "personalizations.0.to.0.email",
        ),
        (
            {**VALID_MAIL, "personalizations": [{"to": [{"email": "a@example.com"}]}] * 1001},
            "personalizations",
        ),
        ({**VALID_MAIL, "categories": ["c"] * 11}, "categories"),
        ({**VALID_MAIL, "content": [{"type": "text/plain", "value": ""}]}, "content.0.value"),
    ],
    ids=[
        "custom-args-object",
        "no-from",
        "bad-address",
        "1001-personalizations",
        "11-categories",
        "empty-content",
    ],
)
def test_a_mail_body_against_the_contract_is_refused(
    sendgrid: FakeSendGrid, body: dict[str, object], field: str
) -> None:
    assert any(v.field == field for v in validate_sendgrid_mail_send(body))
    response = post_mail(sendgrid, body)
    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
    [request] = sendgrid.requests
    assert any(v.field == field for v in request.contract_errors)


def test_a_mail_without_the_bearer_key_is_refused(sendgrid: FakeSendGrid) -> None:
    response = requests.post(f"{sendgrid.url}/v3/mail/send", json=VALID_MAIL, timeout=5)
    assert response.status_code == 401


VALID_SMS = {"To": "+12025550123", "From": "+12025550100", "Body": "hi"}


def test_a_valid_sms_form_is_accepted_and_answered_per_the_contract(twilio: FakeTwilio) -> None:
    response = post_sms(twilio, VALID_SMS)
    assert response.status_code == 201
    resource = response.json()
    assert validate_twilio_message_resource(resource) == []
    assert resource["status"] == "queued" and resource["to"] == "+12025550123"


@pytest.mark.parametrize(
    ("form", "field", "code"),
    [
        ({"From": "+12025550100", "Body": "hi"}, "To", 21604),
        ({**VALID_SMS, "To": "call me"}, "To", 21211),
        ({**VALID_SMS, "StatusCallback": "not a url"}, "StatusCallback", 21609),
        ({**VALID_SMS, "MessagingServiceSid": "MG123"}, "MessagingServiceSid", None),
        ({**VALID_SMS, "ValidityPeriod": "soon"}, "ValidityPeriod", None),
        ({**VALID_SMS, "ContentRetention": "forever"}, "ContentRetention", None),
    ],
    ids=["no-to", "bad-to", "bad-callback", "bad-service-sid", "bad-integer", "bad-enum"],
)
def test_an_sms_form_against_the_contract_is_refused(
    twilio: FakeTwilio, form: dict[str, str], field: str, code: int | None
) -> None:
    as_lists = {key: [value] for key, value in form.items()}
    assert any(v.field == field for v in validate_twilio_create_message(as_lists))
    response = post_sms(twilio, form)
    assert response.status_code == 400
    assert response.json()["code"] == code
    [request] = twilio.requests
    assert any(v.field == field for v in request.contract_errors)


def test_an_sms_without_sender_or_body_is_refused_as_twilio_does(twilio: FakeTwilio) -> None:
    assert post_sms(twilio, {"To": "+12025550123", "Body": "hi"}).json()["code"] == 21603
    assert post_sms(twilio, {"To": "+12025550123", "From": "+12025550100"}).json()["code"] == 21602


def test_twilio_checks_the_account_in_the_path_against_the_credentials(
    twilio: FakeTwilio,
) -> None:
    token = base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
    other = "AC" + "f" * 32
    response = requests.post(
        twilio.url + twilio.messages_path(other),
        data=VALID_SMS,
        headers={"Authorization": f"Basic {token}"},
        timeout=5,
    )
    assert response.status_code == 401 and response.json()["code"] == 20003


def test_the_contracts_folder_can_be_moved_and_its_absence_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = contracts_dir()
    assert (real / "tsg_mail_v3.json").is_file()
    monkeypatch.setenv("CAMPAIGN_CONTRACTS_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"tsg_mail_v3\.json.*CAMPAIGN_CONTRACTS_DIR"):
        contracts_dir()
    (tmp_path / "tsg_mail_v3.json").write_text((real / "tsg_mail_v3.json").read_text())
    (tmp_path / "twilio_api_v2010.json").write_text("{}")
    assert contracts_dir() == tmp_path
