"""The participants / events / suppress commands, end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli


@pytest.fixture
def run(database_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", database_url)

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args))
        return result.exit_code, result.output

    code, output = invoke("programs", "add", "gold", "--name", "Gold Club")
    assert code == 0, output
    return invoke


def test_import_show_list_and_events(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    members = tmp_path / "members.csv"
    members.write_text(
        "external_id,first_name,email,phone,status,tier,consent_sms\n"
        "G1,Ana,ana@example.com,202-555-0143,active,gold,yes\n"
        "G2,Bo,bo@example.com,,lapsed,silver,\n"
        "G3,Cy,broken,,active,,\n",
        encoding="utf-8",
    )
    code, output = run("participants", "import", str(members))
    assert code == 0, output  # rejects are reported, not an error
    assert "read 3, inserted 2, updated 0, unchanged 0, rejected 1" in output
    assert str(tmp_path / "members.rejects.csv") in output

    code, output = run("participants", "import", str(members), "--program", "gold", "--json")
    summary = json.loads(output)
    assert code == 0 and (summary["unchanged"], summary["rejected"]) == (2, 1)
    assert summary["read"] == 3 and summary["rejects_path"].endswith("members.rejects.csv")

    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"external_id": "G1", "type": "login", "occurred_at": "2026-03-01T09:00:00Z",'
        ' "reference": "E1"}\n',
        encoding="utf-8",
    )
    code, output = run("events", "import", str(events), "--json")
    assert code == 0, output
    assert json.loads(output)["inserted"] == 1

    code, output = run("participants", "show", "G1", "--json")
    view = json.loads(output)
    assert code == 0 and view["phone"] == "+12025550143"
    assert view["last_activity_at"] == "2026-03-01T09:00:00+00:00"
    assert view["consents"][0]["channel"] == "sms"
    assert view["recent_events"][0]["reference"] == "E1"
    code, output = run("participants", "show", "G1")
    assert code == 0 and "Ana" in output and "login" in output

    code, output = run("participants", "list", "--status", "lapsed", "--json")
    assert code == 0 and [r["external_id"] for r in json.loads(output)] == ["G2"]
    code, output = run("participants", "list", "--tier", "gold")
    assert code == 0 and "G1" in output and "G2" not in output


def test_user_errors_are_clean_messages(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, output = run("participants", "import", str(tmp_path / "nope.csv"))
    assert code == 1 and "nope.csv: cannot read the file" in output
    assert "Traceback" not in output
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nAna\n", encoding="utf-8")
    code, output = run("participants", "import", str(bad))
    assert code == 1 and "required column external_id is missing" in output
    code, output = run("participants", "show", "nobody")
    assert code == 1 and "no participant with external_id 'nobody'" in output
    code, output = run("participants", "import", str(bad), "--program", "other")
    assert code == 1 and "no program 'other'" in output


def test_suppress_commands(run) -> None:  # type: ignore[no-untyped-def]
    code, output = run(
        "suppress",
        "add",
        "Ana@Example.com",
        "--channel",
        "email",
        "--reason",
        "opt_out",
        "--note",
        "asked by phone",
    )
    assert code == 0 and "ana@example.com" in output, output
    code, output = run(
        "suppress", "add", "202-555-0143", "--channel", "all", "--reason", "erasure", "--json"
    )
    assert code == 0 and json.loads(output)["address"] is None
    code, output = run("suppress", "list", "--json")
    assert [(s["channel"], s["reason"]) for s in json.loads(output)] == [
        ("all", "erasure"),
        ("email", "opt_out"),
    ]
    code, output = run("suppress", "list", "--channel", "email")
    assert code == 0 and "opt_out" in output and "erasure" not in output
    code, output = run("suppress", "remove", "+12025550143", "--channel", "all")
    assert code == 1 and "cannot be removed" in output
    code, output = run("suppress", "remove", "ana@example.com", "--channel", "email")
    assert code == 0 and "Removed" in output
    code, output = run("suppress", "list", "--channel", "email", "--json")
    assert json.loads(output) == []
