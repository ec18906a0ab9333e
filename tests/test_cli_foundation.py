"""The CLI's own plumbing: schema commands, the behind-the-schema refusal, clean errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cli import cli


def run(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--database-url", url, *args])
    return result.exit_code, result.output


def test_upgrade_then_current(empty_database_url: str) -> None:
    code, output = run(empty_database_url, "db", "current", "--json")
    assert code == 0, output
    status = json.loads(output)
    assert status["current"] is None and status["up_to_date"] is False

    code, output = run(empty_database_url, "db", "upgrade")
    assert code == 0, output
    assert "upgraded empty ->" in output

    code, output = run(empty_database_url, "db", "current", "--json")
    status = json.loads(output)
    assert status["up_to_date"] is True and status["current"] == status["head"]


def test_commands_refuse_a_database_without_schema(empty_database_url: str) -> None:
    code, output = run(empty_database_url, "programs", "list")
    assert code == 1
    assert "run `campaign db upgrade`" in output
    assert "Traceback" not in output


def test_programs_add_and_list(database_url: str) -> None:
    code, output = run(
        database_url,
        "programs",
        "add",
        "gold-club",
        "--name",
        "Gold Club",
        "--timezone",
        "Europe/Madrid",
        "--region",
        "es",
    )
    assert code == 0, output
    code, output = run(database_url, "programs", "list", "--json")
    assert json.loads(output) == [
        {
            "key": "gold-club",
            "name": "Gold Club",
            "timezone": "Europe/Madrid",
            "region": "ES",
            "participants": 0,
            "sms_opt_out_notice": True,
            "holidays": None,
        }
    ]
    code, output = run(database_url, "programs", "add", "gold-club", "--name", "Again")
    assert code == 1 and "already exists" in output


def test_user_errors_are_one_clean_line(database_url: str) -> None:
    for args, expected in [
        (("programs", "add", "x", "--name", "X", "--timezone", "Nowhere/City"), "not an IANA"),
        (("programs", "add", "x", "--name", "X", "--region", "ZZ"), "region"),
        (("programs", "add", "Bad Key", "--name", "X"), "program key"),
    ]:
        code, output = run(database_url, *args)
        assert code == 1, output
        assert expected in output and "Traceback" not in output


def test_unsupported_database_url_is_explained() -> None:
    code, output = run("mysql://localhost/x", "programs", "list")
    assert code == 1
    assert "unsupported database" in output
