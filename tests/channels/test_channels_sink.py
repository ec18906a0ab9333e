"""The file sink: real .eml files a mail client can open, .json for SMS, never overwritten."""

from __future__ import annotations

import email
import json
from email.message import EmailMessage
from email.policy import default
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from engine.channels.base import (
    ChannelError,
    DuplicateSendError,
    OutboundEmail,
    OutboundSms,
)
from engine.channels.sink import SinkChannel
from engine.clock import FrozenClock


def rendered(message_id: str = "msg-1", **fields: object) -> OutboundEmail:
    values: dict[str, object] = {
        "message_id": message_id,
        "to_email": "wei.zhang@example.com",
        "to_name": "张伟",
        "from_email": "rewards@example.com",
        "from_name": "Example Rewards",
        "reply_to": "help@example.com",
        "subject": "您的积分即将过期 / Your points expire soon",
        "text": "Redeem 1,200 points before March 31.\n",
        "html": "<p>Redeem <b>1,200</b> points before March 31.</p>\n",
        "headers": {
            "List-Unsubscribe": "<https://campaigns.example.com/u/abc>, <mailto:u@example.com>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "categories": ("points-expiry",),
    }
    values.update(fields)
    return OutboundEmail(**values)  # type: ignore[arg-type]


def parse(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=default)
    assert isinstance(message, EmailMessage)
    return message


def test_an_email_is_a_complete_rfc5322_message(tmp_path: Path, clock: FrozenClock) -> None:
    outbox = tmp_path / "new" / "outbox"  # created on first use
    sink = SinkChannel(outbox, kind="email", clock=clock)
    result = sink.send(rendered())

    path = outbox / "msg-1.eml"
    assert result.provider_message_id == "msg-1.eml" and result.accepted_at == clock.now()
    parsed = parse(path)
    assert parsed["From"] == "Example Rewards <rewards@example.com>"
    assert parsed["To"].addresses[0].display_name == "张伟"
    assert parsed["To"].addresses[0].addr_spec == "wei.zhang@example.com"
    assert parsed["Reply-To"] == "help@example.com"
    assert parsed["Subject"] == "您的积分即将过期 / Your points expire soon"
    assert parsed["Message-ID"] == "<msg-1@example.com>"
    assert parsedate_to_datetime(parsed["Date"]) == clock.now()
    assert parsed["List-Unsubscribe"] == (
        "<https://campaigns.example.com/u/abc>, <mailto:u@example.com>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["X-Campaign-Message-Id"] == "msg-1"
    assert json.loads(parsed["X-Campaign-Custom-Args"]) == {"message_id": "msg-1"}
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None  # the file has CRLF line ends, as RFC 5322 says
    assert text.get_content().replace("\r\n", "\n") == "Redeem 1,200 points before March 31.\n"
    assert html is not None and "<b>1,200</b>" in html.get_content()


def test_a_text_only_email_is_a_single_part(tmp_path: Path, clock: FrozenClock) -> None:
    sink = SinkChannel(tmp_path, kind="email", clock=clock)
    sink.send(rendered(html=None))
    parsed = parse(tmp_path / "msg-1.eml")
    assert parsed.get_content_type() == "text/plain"


def test_a_template_email_records_the_template_and_its_data(
    tmp_path: Path, clock: FrozenClock
) -> None:
    sink = SinkChannel(tmp_path, kind="email", clock=clock)
    message = OutboundEmail(
        message_id="tpl-1",
        to_email="a@example.com",
        from_email="rewards@example.com",
        template_id="d-expiry",
        dynamic_template_data={"points": 1200},
    )
    sink.send(message)
    parsed = parse(tmp_path / "tpl-1.eml")
    assert parsed["X-Campaign-Template-Id"] == "d-expiry"
    assert json.loads(parsed.get_content()) == {"points": 1200}
    assert b"\r\n" in (tmp_path / "tpl-1.eml").read_bytes()


def test_an_sms_is_a_json_file(tmp_path: Path, clock: FrozenClock) -> None:
    sink = SinkChannel(tmp_path / "outbox", kind="sms", clock=clock)
    message = OutboundSms(
        message_id="sms-1",
        to="+12025550123",
        body="Your points expire on March 31. Reply STOP to opt out.",
        from_number="+12025550100",
        status_callback="https://campaigns.example.com/hooks/twilio/status?message_id=sms-1",
    )
    result = sink.send(message)
    record = json.loads((tmp_path / "outbox" / "sms-1.json").read_text(encoding="utf-8"))
    assert record == {
        "message_id": "sms-1",
        "to": "+12025550123",
        "body": message.body,
        "from": "+12025550100",
        "messaging_service_sid": None,
        "status_callback": message.status_callback,
        "written_at": clock.now().isoformat(),
    }
    assert result.provider_message_id == "sms-1.json"


def test_a_second_send_of_the_same_message_is_refused(tmp_path: Path, clock: FrozenClock) -> None:
    sink = SinkChannel(tmp_path, kind="email", clock=clock)
    sink.send(rendered())
    before = (tmp_path / "msg-1.eml").read_bytes()

    with pytest.raises(DuplicateSendError, match=r"msg-1.*twice"):
        sink.send(rendered(subject="A different subject"))

    assert (tmp_path / "msg-1.eml").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["msg-1.eml"]  # no partial files


def test_distinct_ids_never_share_a_file_or_leave_the_folder(
    tmp_path: Path, clock: FrozenClock
) -> None:
    sink = SinkChannel(tmp_path / "outbox", kind="sms", clock=clock)
    ids = ["a/b", "a_b", "a%2Fb", "../escape", ".hidden"]
    for message_id in ids:
        sink.send(OutboundSms(message_id=message_id, to="+12025550123", body="hi"))
    files = sorted((tmp_path / "outbox").iterdir())
    assert len(files) == len(ids)
    assert all(path.parent == tmp_path / "outbox" for path in files)
    assert not any(path.name.startswith(".") for path in files)
    found = {json.loads(path.read_text())["message_id"] for path in files}
    assert found == set(ids)


def test_the_wrong_kind_and_reserved_headers_are_refused(
    tmp_path: Path, clock: FrozenClock
) -> None:
    sms_sink = SinkChannel(tmp_path, kind="sms", clock=clock)
    with pytest.raises(ChannelError, match="sends sms"):
        sms_sink.send(rendered())
    email_sink = SinkChannel(tmp_path, kind="email", clock=clock)
    with pytest.raises(ChannelError, match="header Subject"):
        email_sink.send(rendered(headers={"Subject": "sneaky"}))
    assert list(tmp_path.iterdir()) == []
