"""A new program's first hour, on both databases: the sender identity, consent not stated,
and preview of a member the campaign would not enroll."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli import CliState, cli
from engine.app import build_app
from engine.clock import FrozenClock
from engine.db.models import CampaignRun, Enrollment
from engine.sender_identity import sender_identity_problem
from engine.settings import DEMO_EMAIL_FROM, DEMO_POSTAL_ADDRESS, Settings
from init import TEST_NOW
from init.test_init import INIT

MEMBERS = """\
external_id,first_name,email,phone,status,last_activity_at,points_balance,consent_sms
NOSMS,Ada,,+13125550123,inactive,2025-06-01,1200,
OUT,Bob,,+13125550124,inactive,2025-06-01,900,no
BOTH,Cy,cy@example.org,+13125550125,inactive,2025-06-01,500,
ACTIVE,Di,di@example.org,+13125550126,active,2026-02-25,300,yes
"""


class Folder:
    def __init__(self, database_url: str) -> None:
        self.env = {"CAMPAIGN_DATABASE_URL": database_url}
        self.database_url = database_url

    def run(self, *args: str, at: object = TEST_NOW, **env: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            cli,
            list(args),
            env={**self.env, **env},
            obj=CliState(overrides={}, clock=FrozenClock(at)),  # type: ignore[arg-type]
        )
        return result.exit_code, result.output


def scalars(folder: Folder, statement: Any) -> list[Any]:
    app = build_app(Settings(database_url=folder.database_url))
    try:
        with app.sessions() as session:
            return list(session.scalars(statement))
    finally:
        app.close()


@pytest.fixture
def folder(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Folder:
    monkeypatch.chdir(tmp_path)
    here = Folder(database_url)
    assert here.run(*INIT)[0] == 0
    monkeypatch.chdir(tmp_path / "nw")
    (tmp_path / "nw" / "members.csv").write_text(MEMBERS, encoding="utf-8")
    for command in (
        ["programs", "add", "northwind", "--name", "Northwind Rewards"],
        ["participants", "import", "members.csv"],
    ):
        code, output = here.run(*command)
        assert code == 0, output
    return here


# --------------------------------------------------------------------------- sender identity


def test_sender_identity_rules() -> None:
    def problem(program: str | None, email_from: str, postal: str) -> str | None:
        return sender_identity_problem(
            program=program, channels={"email", "sms"}, email_from=email_from, postal_address=postal
        )

    own = ("Northwind <r@northwind.example>", "200 Lake St, Chicago")
    assert problem("northwind", *own) is None
    assert problem("demo", DEMO_EMAIL_FROM, DEMO_POSTAL_ADDRESS) is None  # the demo keeps working
    assert "the sender is the demo's" in (problem("northwind", DEMO_EMAIL_FROM, own[1]) or "")
    assert "postal address is the demo's" in (
        problem("northwind", own[0], DEMO_POSTAL_ADDRESS) or ""
    )
    assert "no postal address" in (problem("northwind", own[0], "  ") or "")
    assert "not an email address" in (problem("northwind", "Northwind", own[1]) or "")
    assert (
        sender_identity_problem(
            program="northwind",
            channels={"sms", "call"},
            email_from=DEMO_EMAIL_FROM,
            postal_address="",
        )
        is None
    )  # no email step, no email sender needed


def test_validate_and_launch_refuse_the_demo_sender_for_a_real_program(folder: Folder) -> None:
    demo_sender = {"CAMPAIGN_EMAIL_FROM": DEMO_EMAIL_FROM}
    code, output = folder.run("validate", "campaigns/winback-inactive.yaml", **demo_sender)
    assert code == 1
    assert output.count("\n") == 1 and "winback-inactive.yaml:5 program:" in output
    assert "the sender is the demo's (rewards@example.com)" in output
    assert "set email_from and postal_address in campaign.toml" in output
    code, output = folder.run("launch", "winback-inactive", CAMPAIGN_POSTAL_ADDRESS="")
    assert code == 1
    assert "not launched" in output and "there is no postal address" in output
    assert scalars(folder, select(CampaignRun.id)) == []
    # With the program's own sender (campaign.toml) it launches.
    code, output = folder.run("launch", "winback-inactive")
    assert code == 0, output


# --------------------------------------------------------------------------- consent


def test_consent_not_stated_is_never_called_an_opt_out(folder: Folder) -> None:
    code, output = folder.run("explain", "winback-inactive", "NOSMS")
    assert code == 0, output
    verdict = output.splitlines()[1]
    assert "sms: consent not stated" in verdict and "call: consent not stated" in verdict
    assert "consent_sms" in verdict and "opted out" not in verdict
    code, output = folder.run("explain", "winback-inactive", "OUT")
    assert "sms: opted out" in output.splitlines()[1]
    code, output = folder.run("plan", "winback-inactive")
    assert code == 0, output
    assert "consent not stated counts as no for SMS and calls" in output


def test_the_tick_says_consent_not_stated_when_a_member_leaves(folder: Folder) -> None:
    assert folder.run("launch", "winback-inactive")[0] == 0
    # BOTH's email is closed after launch; SMS and calls were never consented to.
    code, output = folder.run(
        "suppress", "add", "cy@example.org", "--channel", "email", "--reason", "bounce"
    )
    assert code == 0, output
    code, output = folder.run("advance", at=TEST_NOW + timedelta(days=1))
    assert code == 0, output
    assert "consent not stated" in output and "opted out" not in output
    reasons = [r for r in scalars(folder, select(Enrollment.exit_reason)) if r]
    assert reasons == [
        "no channel left to contact (call: consent not stated, email: suppressed, "
        "sms: consent not stated); a program states consent with the consent_call / "
        "consent_sms column of its member file (yes/no; a file of external_id and those "
        "columns is enough), or for every member who stated none with `campaign programs set "
        "KEY --consent-default call=yes --consent-default sms=yes`"
    ]


def test_a_program_default_states_consent_for_members_who_stated_none(folder: Folder) -> None:
    code, output = folder.run("programs", "show", "northwind")
    assert code == 0, output
    assert "consent default: sms not set (not stated counts as no), call not set" in output
    code, output = folder.run("programs", "set", "northwind", "--consent-default", "sms=yes")
    assert code == 0, output
    assert (
        output
        == "Program 'northwind': consent default sms yes (set on 2026-03-02), call not set.\n"
    )
    code, output = folder.run("programs", "show", "northwind", "--json")
    assert '"sms": "2026-03-02T15:00:00+00:00"' in output and '"call": null' in output
    code, output = folder.run("explain", "winback-inactive", "NOSMS")
    assert code == 0, output
    verdict = output.splitlines()[1]
    assert "would be enrolled" in verdict, output
    assert "consent by program default (set on 2026-03-02)" in output
    # A member who said no stays excluded: the default fills only what is not stated.
    code, output = folder.run("explain", "winback-inactive", "OUT")
    assert "sms: opted out" in output.splitlines()[1]
    code, output = folder.run("plan", "winback-inactive")
    assert code == 0, output
    assert "counts as yes for SMS (consent by program default (set on 2026-03-02))" in output
    code, output = folder.run("programs", "set", "northwind", "--consent-default", "email=yes")
    assert code == 1 and output.count("\n") == 1 and "email needs no stated consent" in output
    code, output = folder.run("programs", "set", "northwind", "--consent-default", "sms=no")
    assert code == 0 and "sms not set" in output
    code, output = folder.run("explain", "winback-inactive", "NOSMS")
    assert "sms: consent not stated" in output.splitlines()[1]


# --------------------------------------------------------------------------- preview


def test_preview_says_first_when_the_member_is_outside_the_audience(folder: Folder) -> None:
    code, output = folder.run("preview", "winback-inactive", "email-1", "ACTIVE")
    assert code == 0, output
    first = output.splitlines()[0]
    assert first.startswith("NOT ENROLLED NOW: ACTIVE is outside the audience: ")
    assert "last_activity_at more than 90d ago" in first
    assert "Subject:" in output  # rendered all the same, after the warning
    code, output = folder.run("preview", "winback-inactive", "email-1", "BOTH")
    assert code == 0 and "NOT ENROLLED" not in output
    code, output = folder.run("preview", "winback-inactive", "email-1", "NOSMS", "--json")
    assert "consent not stated" in output
