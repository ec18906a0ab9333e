"""`campaign preview` end to end through the CLI, on both databases."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli import cli
from engine.app import App
from engine.consent.unsubscribe import UnsubscribeSigner, signing_key
from engine.db.models import Participant
from engine.definitions.loader import load_campaign
from engine.preview import assign_variant
from engine.testing.fakes import make_participant, make_program

from .helpers import CAMPAIGNS, TEMPLATES

PUBLIC_URL = "https://mail.example.net"
Invoke = Callable[..., tuple[int, str]]


@pytest.fixture
def run(app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    now = app.clock.now()
    with app.sessions() as session, session.begin():
        program = make_program(session, at=now, key="demo", name="Northwind Rewards")
        make_participant(
            session,
            program,
            at=now,
            external_id="M1",
            email="ana.ruiz@example.com",
            first_name="Ana",
            last_name="Ruiz",
            locale="es-MX",
            tier="Gold",
            points_balance=4200,
            points_expiring=1500,
            points_expire_at=date(2026, 4, 1),
        )
        make_participant(
            session,
            program,
            at=now,
            external_id="M2",
            first_name="伟",
            last_name="王",
            locale="zh-Hant",
            tier="Silver",
            points_balance=900,
            renewal_date=date(2026, 3, 20),
        )
        make_participant(
            session,
            program,
            at=now,
            external_id="M3",
            first_name="Bo",
            locale="fr",
            points_balance=5000,
            points_expiring=300,
            points_expire_at=date(2026, 4, 10),
        )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", app.settings.database_url)
    monkeypatch.setenv("CAMPAIGN_CAMPAIGNS_DIR", str(CAMPAIGNS))
    monkeypatch.setenv("CAMPAIGN_TEMPLATES_DIR", str(TEMPLATES))
    monkeypatch.setenv("CAMPAIGN_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("CAMPAIGN_POSTAL_ADDRESS", "Northwind, 1 Harbour Rd, Boston, MA 02110")

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args))
        return result.exit_code, result.output

    return invoke


def test_email_in_the_members_language_with_a_verifiable_unsubscribe_link(
    run: Invoke, app: App
) -> None:
    code, output = run("preview", "points-expiring", "email-1", "M1", "--json")
    assert code == 0, output
    result = json.loads(output)
    assert (result["channel"], result["locale"], result["template"]) == (
        "email",
        "es-MX",
        "points_expiring",
    )
    email = result["email"]
    # The es variant, with Mexico's CLDR number and date customs (not Spain's "1500").
    assert email["subject"] == "1,500 de sus puntos vencen el 1 de abril de 2026"
    assert "Hola Ana:" in email["text"] and "Hola Ana:" in email["html"]
    assert "Northwind, 1 Harbour Rd, Boston, MA 02110" in email["text"]
    assert email["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = email["headers"]["List-Unsubscribe"]
    assert link.startswith(f"<{PUBLIC_URL}/u/") and link.endswith(">")
    assert link[1:-1] in email["text"] and link[1:-1] in email["html"]
    # The link carries a token for this member, signed with the key stored in the database.
    with app.sessions() as session:
        key = signing_key(session, app.settings)
        member_id = session.scalar(select(Participant.id).where(Participant.external_id == "M1"))
    assert UnsubscribeSigner(key).verify(link[1:-1].rsplit("/", 1)[1]) == (member_id, "email")


def test_email_plain_output(run: Invoke) -> None:
    code, output = run("preview", "points-expiring", "email-1", "M3")
    assert code == 0, output
    lines = output.splitlines()
    # M3 is not in the audience today: preview says so first, then renders anyway.
    assert lines[0].startswith("NOT ENROLLED NOW: M3 ")
    assert (
        lines[1] == "points-expiring / email-1 (email, template points_expiring) for M3, locale fr"
    )
    # fr has no variant: the default (English) files
    # No fr variant: the English default, with English dates (never "10 avril" mid-sentence).
    assert "Subject: 300 of your points expire on April 10, 2026" in lines
    assert "--- text ---" in lines and "--- html ---" in lines
    assert any(line.startswith(f"List-Unsubscribe: <{PUBLIC_URL}/u/") for line in lines)


def test_sms_with_locale_fallback_and_segments(run: Invoke) -> None:
    code, output = run("preview", "renewal-due", "sms-1", "M2", "--json")
    assert code == 0, output
    sms = json.loads(output)["sms"]
    assert sms["body"] == (
        "Northwind Rewards：您的会员将于2026年3月20日续期，请到 rewards.example.com/renew "
        "续费并保留积分。回复STOP退订"
    )  # zh-Hant -> zh
    assert (sms["encoding"], sms["characters"]) == ("UCS-2", len(sms["body"]))
    assert sms["segments"] == (1 if len(sms["body"]) <= 70 else -(-len(sms["body"]) // 67))

    code, output = run("preview", "renewal-due", "sms-1", "M2")
    assert code == 0, output
    lines = output.splitlines()
    header = lines.index("renewal-due / sms-1 (sms, template renewal_due) for M2, locale zh-Hant")
    assert lines[header + 1] == (
        f"{sms['characters']} characters, UCS-2, {sms['segments']} segment(s)"
    )
    assert sms["body"] in output


def test_call_script(run: Invoke) -> None:
    code, output = run("preview", "renewal-due", "call-1", "M2", "--json")
    assert code == 0, output
    call = json.loads(output)["call"]
    assert "会员续费电话：renewal-due（call-1）" in call["script"]
    # Family name first without a space, the tier in Chinese, the date as CLDR writes it.
    assert "请问是王伟吗" in call["script"]
    assert "您的银卡会员将于2026年3月20日到期" in call["script"]
    assert call["offer"] == "Renew this month and keep your tier for another year"
    assert len(call["talking_points"]) == 3

    code, output = run("preview", "winback-inactive", "call-1", "M1")
    assert code == 0, output
    assert "WIN-BACK CALL: winback-inactive (call-1)" in output  # no es script: the default


def test_ab_step_variant_choice(run: Invoke, app: App) -> None:
    code, output = run("preview", "winback-inactive", "email-1", "M3", "--variant", "b", "--json")
    assert code == 0, output
    result = json.loads(output)
    assert (result["variant"], result["template"]) == ("b", "winback_b")
    assert result["email"]["subject"] == "Your 5,000 points are waiting"

    code, output = run("preview", "winback-inactive", "email-1", "M3", "--json")
    assert code == 0, output
    default = json.loads(output)
    assert default["template"] == f"winback_{default['variant']}"
    again = json.loads(run("preview", "winback-inactive", "email-1", "M3", "--json")[1])
    assert again["variant"] == default["variant"]  # deterministic


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("points-expiring", "email-9", "M1"), "campaign points-expiring has no step 'email-9'"),
        (("points-expiring", "email-1", "NOPE"), "no participant 'NOPE' in program demo"),
        (("no-such", "email-1", "M1"), "no campaign 'no-such'"),
        (("winback-inactive", "email-1", "M1", "--variant", "c"), "has no variant 'c'"),
        (("points-expiring", "sms-1", "M1", "--variant", "a"), "is not an A/B test"),
    ],
)
def test_errors_are_one_clean_line(run: Invoke, args: tuple[str, ...], message: str) -> None:
    code, output = run("preview", *args)
    assert code == 1
    assert message in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


def test_missing_template_is_a_clean_error(
    run: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-templates"
    (empty / "sms").mkdir(parents=True)
    monkeypatch.setenv("CAMPAIGN_TEMPLATES_DIR", str(empty))
    code, output = run("preview", "points-expiring", "sms-1", "M1")
    assert code == 1
    assert output.strip() == f"Error: {empty}/sms/points_expiring.txt.j2: template not found"


def test_variant_assignment_follows_the_weights() -> None:
    step = load_campaign(CAMPAIGNS, "winback-inactive").definition.step("email-1")
    assert step.variants is not None
    counts = Counter(
        assign_variant(step.variants, key * 7919, "winback-inactive", "email-1").name
        for key in range(20_000)
    )
    assert set(counts) == {"a", "b"}
    assert abs(counts["a"] - 10_000) < 500  # 50 / 50
    skewed = [
        step.variants[0].model_copy(update={"weight": 9}),
        step.variants[1].model_copy(update={"weight": 1}),
    ]
    skewed_counts = Counter(
        assign_variant(skewed, key * 7919, "winback-inactive", "email-1").name
        for key in range(20_000)
    )
    assert abs(skewed_counts["a"] / 20_000 - 0.9) < 0.02  # weights 9 : 1


def test_a_step_whose_channel_is_closed_for_the_member_says_so_first(run: Invoke) -> None:
    # M2 never stated SMS consent: the SMS step would skip them, in the sequencer's words.
    code, output = run("preview", "renewal-due", "sms-1", "M2", "--json")
    assert code == 0, output
    closed = json.loads(output)["channel_closed"]
    assert closed.startswith("sms is closed for M2: consent not stated; a program states")
    assert "--consent-default sms=yes" in closed
    code, output = run("preview", "renewal-due", "sms-1", "M2")
    assert code == 0, output
    # After "NOT ENROLLED NOW" (M2's renewal date is past), before the rendering.
    lines = output.splitlines()
    assert lines[0].startswith("NOT ENROLLED NOW: M2 ") and not lines[0].endswith(":")
    assert lines[1].startswith("NOT REACHABLE NOW: sms is closed for M2: consent not stated")
    assert lines[1].endswith("so this step would skip them; rendered all the same:")
    assert lines[2].startswith("renewal-due / sms-1 (sms, template renewal_due) for M2")

    # Email needs no stated consent: open until the address is suppressed.
    code, output = run("preview", "points-expiring", "email-1", "M1", "--json")
    assert json.loads(output)["channel_closed"] is None
    code, output = run(
        "suppress", "add", "Ana.Ruiz@Example.com", "--channel", "email", "--reason", "opt_out"
    )
    assert code == 0, output
    code, output = run("preview", "points-expiring", "email-1", "M1")
    warning = (
        "NOT REACHABLE NOW: email is closed for M1: suppressed, so this step would skip them; "
        "rendered all the same:"
    )
    assert warning in output.splitlines()[:2]  # after NOT ENROLLED NOW, when the date is past
