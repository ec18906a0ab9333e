"""Deliveries on SQLite and PostgreSQL: a monthly subscription fires once at the month
boundary in the program's zone (a DST month), its email and CSV attachments are what the
file sink and SendGrid get; a failed delivery is retried with backoff and listed."""

from __future__ import annotations

import base64
import csv
import email
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.app import App
from engine.clock import FrozenClock
from engine.db.models import ReportDelivery
from engine.programs import add_program
from engine.subscriptions.deliveries import deliver_due, list_deliveries, send_now
from engine.subscriptions.loader import load_named
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_server import Canned

SUBSCRIPTION = """\
name: uk-monthly
program: uk
reports:
  - report: retention
  - report: deliverability
period: last calendar month
language: {language}
recipients: [finance@example.com, ops@example.com]
schedule:
  cron: "0 7 1 * *"
"""


def _app(app: App, tmp_path: Path, at: datetime, **settings: object) -> App:
    updated = app.settings.model_copy(update={"reports_dir": tmp_path / "reports", **settings})
    return App(settings=updated, engine=app.engine, sessions=app.sessions, clock=FrozenClock(at))


@pytest.fixture
def uk(app: App, tmp_path: Path) -> App:
    with app.sessions() as session, session.begin():
        add_program(
            session,
            key="uk",
            name="UK members",
            timezone="Europe/London",
            region="GB",
            at=datetime(2026, 9, 1, tzinfo=UTC),
        )
    (tmp_path / "reports").mkdir()
    return app


def _write(tmp_path: Path, language: str = "en") -> None:
    path = tmp_path / "reports" / "uk-monthly.yaml"
    path.write_text(SUBSCRIPTION.format(language=language), encoding="utf-8")


def _rows(app: App) -> list[ReportDelivery]:
    with app.sessions() as session:
        return list(session.scalars(select(ReportDelivery).order_by(ReportDelivery.id)))


def _tick(app: App, tmp_path: Path, at: datetime, **settings: object) -> list[str]:
    return deliver_due(_app(app, tmp_path, at, **settings), at=at).lines()


def test_a_monthly_subscription_fires_once_at_the_month_boundary_in_the_program_zone(
    uk: App, tmp_path: Path
) -> None:
    _write(tmp_path)
    # Seen on 20 October (BST): the 1 October fire was before it, so nothing is due or skipped.
    assert _tick(uk, tmp_path, datetime(2026, 10, 20, 12, tzinfo=UTC)) == []
    # 07:00 on 1 November in London is 07:00 UTC (GMT since 25 October), not 06:00.
    assert _tick(uk, tmp_path, datetime(2026, 11, 1, 6, 59, tzinfo=UTC)) == []
    assert _rows(uk) == []
    fire = datetime(2026, 11, 1, 7, tzinfo=UTC)
    lines = _tick(uk, tmp_path, fire)
    assert lines == [
        "report uk-monthly (delivery 1): sent: to finance@example.com, ops@example.com"
    ]
    # Later ticks, and a second tick at the same instant, deliver nothing more.
    assert _tick(uk, tmp_path, fire) == []
    assert _tick(uk, tmp_path, fire + timedelta(minutes=1)) == []
    assert _tick(uk, tmp_path, datetime(2026, 11, 30, 7, tzinfo=UTC)) == []
    (row,) = _rows(uk)
    assert (row.status, row.fire_at, row.period_label, row.attempts) == (
        "sent",
        fire,
        "2026-10-01..2026-10-31",
        1,
    )
    assert row.delivered_to == "finance@example.com,ops@example.com"

    outbox = uk.settings.outbox_dir
    files = sorted(p.name for p in outbox.iterdir())
    assert files == ["report-1-0.eml", "report-1-1.eml"]
    mail = email.message_from_bytes((outbox / files[0]).read_bytes(), policy=policy.default)
    assert mail["To"] == "finance@example.com"
    assert mail["Subject"] == "Report: uk-monthly (October 1, 2026 – October 31, 2026)"
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Period: October 1, 2026 – October 31, 2026 (Europe/London)" in html
    assert "Generated: Nov 1, 2026, 7:00:00\u202fAM GMT" in html  # CLDR: a narrow space
    assert '<h2 data-report="retention">Retention</h2>' in html
    # Empty tables are left out, as in `campaign report`: nothing at all is said in one line,
    # and a report with some rows shows only the tables that have them.
    assert "(none)" not in html
    retention = html.split('<h2 data-report="retention">', 1)[1].split("<h2", 1)[0]
    assert "<table>" not in retention and "<p>nothing to report for this period</p>" in retention
    assert "<h3>Deliverability by channel</h3>" in html
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Retention\r\n  nothing to report for this period\r\nDeliverability" in text
    attachments = {a.get_filename(): a.get_content() for a in mail.iter_attachments()}
    assert sorted(attachments) == ["01-retention.csv", "02-deliverability.csv"]
    rows = list(csv.reader(io.StringIO(attachments["02-deliverability.csv"].lstrip("\ufeff"))))
    assert rows[0] == ["Deliverability by channel"]
    assert rows[1][:3] == ["channel", "created", "skipped"]

    # The next month's fire (1 December) is the next delivery.
    assert _tick(uk, tmp_path, datetime(2026, 12, 1, 7, 5, tzinfo=UTC)) == [
        "report uk-monthly (delivery 2): sent: to finance@example.com, ops@example.com"
    ]
    assert _rows(uk)[1].period_label == "2026-11-01..2026-11-30"


def test_a_fire_later_than_the_grace_is_skipped_and_listed(uk: App, tmp_path: Path) -> None:
    _write(tmp_path)
    _tick(uk, tmp_path, datetime(2026, 10, 20, tzinfo=UTC))
    lines = _tick(uk, tmp_path, datetime(2026, 11, 3, 7, tzinfo=UTC))
    assert lines == ["skipped report uk-monthly of 2026-11-01 07:00 GMT: 2 days late, grace 1d"]
    with uk.sessions() as session:
        (row,) = list_deliveries(session, problems=True)
    assert (row.status, row.error) == ("skipped", "2 days late, grace 1d")


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid("SG.test-key") as fake:
        yield fake


def test_a_failed_delivery_is_retried_with_backoff_and_listed(
    uk: App, tmp_path: Path, sendgrid: FakeSendGrid
) -> None:
    _write(tmp_path, language="zh")
    provider = {"sendgrid_api_key": "SG.test-key", "sendgrid_host": sendgrid.url}
    _tick(uk, tmp_path, datetime(2026, 10, 20, tzinfo=UTC), **provider)
    sendgrid.script("/v3/mail/send", Canned.json(503, {"errors": []}), Canned.json(503, {}))
    fire = datetime(2026, 11, 1, 7, tzinfo=UTC)

    (line,) = _tick(uk, tmp_path, fire, **provider)
    assert line.startswith("report uk-monthly (delivery 1): retrying: attempt 1 of 5 failed")
    with uk.sessions() as session:
        (listed,) = list_deliveries(session, problems=True)
    assert (listed.status, listed.attempts) == ("retrying", 1)
    assert listed.next_attempt_at == fire + timedelta(minutes=5)
    assert "503" in (listed.error or "")

    assert _tick(uk, tmp_path, fire + timedelta(minutes=4), **provider) == []  # not yet due
    (line,) = _tick(uk, tmp_path, fire + timedelta(minutes=5), **provider)
    assert "attempt 2 of 5 failed" in line
    assert _rows(uk)[0].next_attempt_at == fire + timedelta(minutes=15)  # doubled
    (line,) = _tick(uk, tmp_path, fire + timedelta(minutes=15), **provider)
    assert line == "report uk-monthly (delivery 1): sent: to finance@example.com, ops@example.com"

    (row,) = _rows(uk)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
    accepted = [r for r in sendgrid.requests if r.answered == 202]
    assert [r.json["personalizations"][0]["to"][0]["email"] for r in accepted] == [
        "finance@example.com",
        "ops@example.com",
    ]
    body = accepted[0].json
    assert all(r.contract_errors == () for r in sendgrid.requests)
    assert body["subject"] == "报告: uk-monthly (2026年10月1日 – 2026年10月31日)"
    html = next(c["value"] for c in body["content"] if c["type"] == "text/html")
    assert '<html lang="zh-Hans">' in html and "<h3>各渠道送达情况</h3>" in html
    # No renewal was due: the retention tables are left out and one line says why.
    assert "按批组统计的留存（renewal）" not in html and "<p>本期间没有可报告的内容</p>" in html
    files = {a["filename"]: a for a in body["attachments"]}
    assert sorted(files) == ["01-retention.csv", "02-deliverability.csv"]
    assert files["02-deliverability.csv"]["type"] == "text/csv"
    text = base64.b64decode(files["02-deliverability.csv"]["content"]).decode("utf-8-sig")
    assert text.splitlines()[:2][0] == "各渠道送达情况"


def test_a_permanent_failure_is_failed_and_listed_never_retried(
    uk: App, tmp_path: Path, sendgrid: FakeSendGrid
) -> None:
    _write(tmp_path)
    provider = {"sendgrid_api_key": "SG.wrong-key", "sendgrid_host": sendgrid.url}
    _tick(uk, tmp_path, datetime(2026, 10, 20, tzinfo=UTC), **provider)
    fire = datetime(2026, 11, 1, 7, tzinfo=UTC)
    (line,) = _tick(uk, tmp_path, fire, **provider)
    assert "(delivery 1): failed: finance@example.com: SendGrid credentials were refused" in line
    assert _tick(uk, tmp_path, fire + timedelta(hours=2), **provider) == []
    with uk.sessions() as session:
        (listed,) = list_deliveries(session, problems=True)
    assert (listed.status, listed.attempts) == ("failed", 1)


def test_send_now_delivers_to_the_given_address(uk: App, tmp_path: Path) -> None:
    _write(tmp_path)
    at = datetime(2026, 11, 15, 12, tzinfo=UTC)
    app = _app(uk, tmp_path, at)
    outcome = send_now(
        app, load_named(tmp_path / "reports", "uk-monthly"), to=["cfo@example.com"], at=at
    )
    assert (outcome.status, outcome.written) == ("sent", ["report-1-0.eml"])
    (row,) = _rows(uk)
    assert (row.manual, row.recipients, row.period_label) == (
        True,
        "cfo@example.com",
        "2026-10-01..2026-10-31",
    )
