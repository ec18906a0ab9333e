"""Deliverability and retention reports on known scenarios (both databases)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from report_helpers import enroll, event, make_run, members, message
from test_campaign_report import AT, T0, build_scenario

from cli import cli
from engine.app import App
from engine.conversions import match_conversions
from engine.db.models import Program, Suppression
from engine.errors import NotFoundError
from engine.reports.common import parse_period
from engine.reports.deliverability import deliverability_report
from engine.reports.retention import retention_report
from engine.testing.fakes import make_program


def _suppress(app: App, channel: str, reason: str, n: int, at: datetime) -> None:
    with app.sessions() as session, session.begin():
        for _ in range(n):
            address = f"{channel}-{reason}-{id(object())}-{_}@example.com"
            session.add(
                Suppression(
                    channel=channel,
                    address=address,
                    address_hash=hashlib.sha256(address.encode()).hexdigest(),
                    reason=reason,
                    source="test",
                    created_at=at,
                )
            )


def test_deliverability(app: App) -> None:
    build_scenario(app)
    _suppress(app, "email", "opt_out", 2, T0 + timedelta(days=2))
    _suppress(app, "email", "spam_report", 1, T0 + timedelta(days=2))
    _suppress(app, "sms", "opt_out", 1, T0 + timedelta(days=2))
    _suppress(app, "call", "do_not_call", 1, T0 + timedelta(days=20))
    with app.sessions() as session:
        report = deliverability_report(session, at=AT)
    by = {c.channel: c for c in report.channels}
    assert list(by) == ["email", "sms", "call"]
    email, sms, call = by["email"], by["sms"], by["call"]
    assert (email.created, email.skipped, email.eligible, email.pending, email.failed) == (
        10, 2, 8, 1, 1,
    )  # fmt: skip
    assert (email.sent, email.delivered, email.bounced, email.awaiting) == (6, 4, 1, 1)
    assert (email.opened, email.clicked) == (3, 1)
    assert email.delivery_rate == pytest.approx(4 / 6) and email.bounce_rate == pytest.approx(1 / 6)
    assert (email.opt_outs, email.spam_reports) == (2, 1)
    assert email.suppressions == {"opt_out": 2, "spam_report": 1}
    assert (sms.created, sms.skipped, sms.pending, sms.unknown, sms.sent) == (5, 2, 1, 1, 1)
    assert sms.opt_outs == 1 and sms.spam_reports == 0
    assert call.created == 0 and call.suppressions == {"do_not_call": 1}
    for c in report.channels:
        assert c.created == c.skipped + c.eligible
        assert c.eligible == c.pending + c.unknown + c.failed + c.sent
        assert c.sent == c.delivered + c.bounced + c.awaiting

    with app.sessions() as session:
        day = deliverability_report(session, at=AT, period=parse_period("2026-01-10", at=AT))
        with pytest.raises(NotFoundError, match="no campaign 'nope'"):
            deliverability_report(session, at=AT, campaign="nope")
    by = {c.channel: c for c in day.channels}
    # Created on Jan 10: every email, and the SMS skipped at launch; no suppression yet.
    assert (by["email"].created, by["sms"].created, by["sms"].skipped) == (10, 1, 1)
    assert by["email"].opt_outs == 0 and "call" not in by


def test_retention_by_cohort(app: App) -> None:
    build_scenario(app)
    feb = datetime(2026, 2, 15, 9, 0, tzinfo=UTC)
    with app.sessions() as session, session.begin():
        program = session.query(Program).one()
        run = make_run(session, program, at=feb, events="renewal", window="45d", fire_key="feb")
        a, b, c = members(session, program, 3, at=feb)
        ea = enroll(session, run, a)
        enroll(session, run, b)
        enroll(session, run, c, group="holdout")
        message(session, ea, at=feb + timedelta(hours=1), status="delivered")
        event(session, a, "renewal", feb + timedelta(days=3))
        # a campaign whose goal is not a renewal never counts
        other = make_run(session, program, at=feb, name="logins", events="login")
        enroll(session, other, c)
        event(session, c, "login", feb + timedelta(days=1))
    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=AT + timedelta(days=30)) == 2

    with app.sessions() as session:
        report = retention_report(session, at=AT + timedelta(days=30))
    jan, febr = report.cohorts
    assert jan.cohort == "2026-01" and febr.cohort == "2026-02"
    # January: treatment renewed t0, t1, t6 (t5 redeemed, which is no renewal); holdout h0.
    assert (jan.treatment_due, jan.treatment_renewed, jan.holdout_due, jan.holdout_renewed) == (
        10, 3, 5, 1,
    )  # fmt: skip
    assert (jan.contacted_due, jan.contacted_renewed) == (5, 3)
    assert jan.due == 15 and jan.renewed == 4
    assert jan.treatment_rate == pytest.approx(0.3) and jan.holdout_rate == pytest.approx(0.2)
    assert jan.lift.difference == pytest.approx(0.1)
    assert (febr.treatment_due, febr.treatment_renewed, febr.holdout_due) == (2, 1, 1)
    assert (febr.contacted_due, febr.contacted_renewed) == (1, 1)
    total = report.total
    assert total is not None and total.due == jan.due + febr.due == 18
    assert total.renewed == jan.renewed + febr.renewed == 5
    for row in [*report.cohorts, total]:
        assert row.due == row.treatment_due + row.holdout_due
        assert row.contacted_due <= row.treatment_due

    with app.sessions() as session:
        only_feb = retention_report(session, at=AT, period=parse_period("2026-02", at=AT))
        none = retention_report(session, at=AT, campaign="logins")
    assert [c.cohort for c in only_feb.cohorts] == ["2026-02"]
    assert none.cohorts == [] and none.total is None

    result = CliRunner().invoke(
        cli,
        ["--database-url", app.settings.database_url, "report", "retention", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert [c["cohort"] for c in json.loads(result.output)["cohorts"]] == ["2026-01", "2026-02"]


def test_reports_cli_render_every_format(app: App, tmp_path: object) -> None:
    with app.sessions() as session, session.begin():
        make_program(session, at=T0)
    runner = CliRunner()
    for command in ("deliverability", "retention"):
        for extra in ([], ["--json"], ["--csv"], ["--period", "30d", "--program", "loyalty"]):
            result = runner.invoke(
                cli, ["--database-url", app.settings.database_url, "report", command, *extra]
            )
            assert result.exit_code == 0, (command, extra, result.output)
    result = runner.invoke(
        cli,
        ["--database-url", app.settings.database_url, "report", "deliverability", "--program", "x"],
    )
    assert result.exit_code == 1 and "no program 'x'" in result.output
