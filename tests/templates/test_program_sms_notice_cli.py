"""The program's SMS opt-out notice setting through the CLI, and SMS segments in `plan`;
on both databases."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from engine.app import App
from engine.db.models import Program
from engine.testing.fakes import make_consent, make_participant

Invoke = Callable[..., tuple[int, str]]

CAMPAIGN = """\
name: shop-sms
program: shop
audience: {field: status, eq: active}
holdout_percent: 0
sms_max_segments: 1
goal: {events: [purchase], window: 7d}
steps:
  - {id: sms-1, channel: sms, template: plain}
  - {id: sms-2, channel: sms, template: long, delay: 1d}
"""
PLAIN = "{{ program.name }}: points are waiting."
LONG = "{{ program.name }}: " + "é" * 10 + "x" * 160  # é is GSM-7: 2 segments, no UCS-2


@pytest.fixture
def run(app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "shop-sms.yaml").write_text(CAMPAIGN)
    (tmp_path / "templates" / "sms").mkdir(parents=True)
    (tmp_path / "templates" / "sms" / "plain.txt.j2").write_text(PLAIN)
    (tmp_path / "templates" / "sms" / "long.txt.j2").write_text(LONG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", app.settings.database_url)
    monkeypatch.setenv("CAMPAIGN_CAMPAIGNS_DIR", str(tmp_path / "campaigns"))
    monkeypatch.setenv("CAMPAIGN_TEMPLATES_DIR", str(tmp_path / "templates"))

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args))
        return result.exit_code, result.output

    return invoke


def _member(app: App) -> None:
    with app.sessions() as session, session.begin():
        program = session.query(Program).filter_by(key="shop").one()
        member = make_participant(session, program, at=app.clock.now(), external_id="C1")
        make_consent(session, member, channel="sms", status="opted_in", at=app.clock.now())


def _first_sms(run: Invoke) -> str:
    code, output = run("preview", "shop-sms", "sms-1", "C1", "--json")
    assert code == 0, output
    return str(json.loads(output)["sms"]["body"])


def test_notice_is_on_by_default_and_can_be_turned_off(run: Invoke, app: App) -> None:
    code, output = run("programs", "add", "shop", "--name", "Shop")
    assert code == 0, output
    _member(app)
    assert _first_sms(run) == "Shop: points are waiting. Reply STOP to opt out."

    code, output = run("programs", "set", "shop", "--no-sms-opt-out-notice")
    assert code == 0 and "SMS opt-out notice off" in output, output
    assert _first_sms(run) == "Shop: points are waiting."
    code, output = run("programs", "list", "--json")
    assert code == 0, output
    assert [(p["key"], p["sms_opt_out_notice"]) for p in json.loads(output)] == [("shop", False)]
    code, output = run("programs", "list")
    assert code == 0 and "off" in output, output

    code, output = run("programs", "set", "shop", "--sms-opt-out-notice")
    assert code == 0, output
    assert _first_sms(run).endswith(" Reply STOP to opt out.")


def test_program_created_without_the_notice(run: Invoke, app: App) -> None:
    code, output = run("programs", "add", "shop", "--name", "Shop", "--no-sms-opt-out-notice")
    assert code == 0, output
    _member(app)
    assert _first_sms(run) == "Shop: points are waiting."


def test_set_needs_something_to_change_and_a_known_program(run: Invoke) -> None:
    code, output = run("programs", "set", "nope", "--no-sms-opt-out-notice")
    assert code != 0 and "no program 'nope'" in output and "Traceback" not in output
    code, output = run("programs", "add", "shop", "--name", "Shop")
    code, output = run("programs", "set", "shop")
    assert code != 0 and "nothing to change" in output


def test_plan_shows_sms_segments_with_the_warning(run: Invoke, app: App) -> None:
    code, output = run("programs", "add", "shop", "--name", "Shop")
    assert code == 0, output
    _member(app)
    code, output = run("plan", "shop-sms", "--json")
    assert code == 0, output
    report = json.loads(output)
    sizes = {s["step"]: s for s in report["sms"]}
    plain = "Shop: points are waiting. Reply STOP to opt out."
    assert sizes["sms-1"] == {
        "step": "sms-1",
        "external_id": "C1",
        "encoding": "GSM-7",
        "characters": len(plain),
        "segments": 1,
        "warning": None,
    }
    long = sizes["sms-2"]
    assert (long["encoding"], long["characters"], long["segments"]) == ("GSM-7", 176, 2)
    assert long["warning"] == "2 segments: more than sms_max_segments (1)"

    code, output = run("plan", "shop-sms")
    assert code == 0, output
    assert "SMS size for C1 (sample member)" in output
    assert "warning: step sms-2: 2 segments: more than sms_max_segments (1)" in output


# `validate` and `send-test` render a first SMS as the program will send it.

# 19 characters of "Northwind Rewards: " (the sample program) + 120: 139, one GSM-7 segment;
# with the notice (" Reply STOP to opt out.", 23) 162, two.
EDGE_CAMPAIGN = """\
name: edge
program: shop
audience: {field: status, eq: active}
sms_max_segments: 1
goal: {events: [purchase], window: 7d}
steps:
  - {id: sms-1, channel: sms, template: edge}
"""
EDGE = "{{ program.name }}: " + "x" * 120


def _validate_edge(run: Invoke, tmp_path: Path) -> list[str]:
    (tmp_path / "campaigns" / "edge.yaml").write_text(EDGE_CAMPAIGN)
    (tmp_path / "templates" / "sms" / "edge.txt.j2").write_text(EDGE)
    code, output = run("validate", "campaigns/edge.yaml", "--json")
    assert code == 0, output
    [file] = json.loads(output)["files"]
    return [
        w.removeprefix(f"{tmp_path / 'templates' / 'sms' / 'edge.txt.j2'}: ")
        for w in file["warnings"]
    ]


WITH_NOTICE = (
    "rendered for a sample participant it is 162 characters (GSM-7), 2 SMS segments "
    "(sms_max_segments is 1)"
)
NO_WORDING = "the first SMS of edge should say how to opt out (e.g. 'Reply STOP to opt out')"


def test_validate_measures_the_first_sms_as_the_program_sends_it(
    run: Invoke, tmp_path: Path
) -> None:
    # The program is not in the database yet: the default, the notice on; nothing else said.
    assert _validate_edge(run, tmp_path) == [WITH_NOTICE, NO_WORDING]

    code, output = run("programs", "add", "shop", "--name", "Shop", "--no-sms-opt-out-notice")
    assert code == 0, output
    # Without the notice it fits one segment; the missing wording now matters more.
    assert _validate_edge(run, tmp_path) == [
        NO_WORDING + "; program shop has the opt-out notice turned off, so none is added"
    ]

    code, output = run("programs", "set", "shop", "--sms-opt-out-notice")
    assert code == 0, output
    assert _validate_edge(run, tmp_path) == [WITH_NOTICE, NO_WORDING]


def test_validate_without_a_usable_database_uses_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_database_url: str
) -> None:
    """No schema yet (and, on SQLite, no file at all): validate runs on the files alone."""
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "templates" / "sms").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAMPAIGN_CAMPAIGNS_DIR", str(tmp_path / "campaigns"))
    monkeypatch.setenv("CAMPAIGN_TEMPLATES_DIR", str(tmp_path / "templates"))
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", empty_database_url)

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args))
        return result.exit_code, result.output

    assert _validate_edge(invoke, tmp_path) == [WITH_NOTICE, NO_WORDING]
    assert not list(tmp_path.glob("*.db"))  # nothing created


def _send_test_sms(run: Invoke, *extra: str) -> str:
    code, output = run("send-test", "shop-sms", "sms-1", "--to", "+12025550199", "--json", *extra)
    assert code == 0, output
    return str(json.loads(output)["body"])


def test_send_test_renders_the_first_sms_as_the_program_sends_it(run: Invoke, app: App) -> None:
    # The program is not in the database yet: the default, the notice on.
    notice = "[TEST] Northwind Rewards: points are waiting. Reply STOP to opt out."
    assert _send_test_sms(run) == notice

    code, output = run("programs", "add", "shop", "--name", "Shop", "--no-sms-opt-out-notice")
    assert code == 0, output
    _member(app)
    assert _send_test_sms(run) == "[TEST] Northwind Rewards: points are waiting."
    assert _send_test_sms(run, "--participant", "C1") == "[TEST] Shop: points are waiting."

    code, output = run("programs", "set", "shop", "--sms-opt-out-notice")
    assert code == 0, output
    assert _send_test_sms(run) == notice
    assert _send_test_sms(run, "--participant", "C1") == (
        "[TEST] Shop: points are waiting. Reply STOP to opt out."
    )
