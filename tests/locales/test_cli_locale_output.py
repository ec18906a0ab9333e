"""What the CLI prints: names in the member's order, counts with thousands separators (never
identifiers), columns aligned by terminal cells for CJK text, raw numbers in --json."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from click.testing import CliRunner
from rich.cells import cell_len

from cli import cli
from engine.app import App
from engine.cli.common import render_table
from engine.testing.fakes import make_participant, make_program, unit

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def run(app: App, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--database-url", app.settings.database_url, *args])
    return result.exit_code, result.output


def test_participants_list_in_the_members_customs(app: App) -> None:
    with unit(app) as s:
        program = make_program(s, at=NOW)
        for external_id, first, last, locale, points in (
            ("M1", "静", "杨", "zh", 1_234_567),
            ("M2", "Maria", "Garcia", "en", 12),
            ("M3", "Yang", "Wang", "zh-Hant", 4_500),
        ):
            make_participant(
                s,
                program,
                at=NOW,
                external_id=external_id,
                first_name=first,
                last_name=last,
                locale=locale,
                points_balance=points,
            )
    code, out = run(app, "participants", "list")
    assert code == 0, out
    lines = out.splitlines()
    header, rows = lines[1], lines[2:]
    assert [r.split()[1] for r in rows] == ["杨静", "Maria", "Wang"]
    assert "Wang Yang" in rows[2] and "1,234,567" in rows[0] and "4,500" in rows[2]
    # Every column starts at the same terminal cell on every line, wide characters included.
    email_at = cell_len(header[: header.index("email")])
    for row in rows:
        email = next(w for w in row.split() if "@" in w)
        assert cell_len(row[: row.index(email)]) == email_at

    code, out = run(app, "participants", "list", "--json")
    assert code == 0, out
    listed = json.loads(out)
    assert [(p["name"], p["points_balance"]) for p in listed] == [
        ("杨静", 1_234_567),
        ("Maria Garcia", 12),
        ("Wang Yang", 4_500),
    ]


def test_counts_get_separators_and_identifiers_do_not(capsys) -> None:  # type: ignore[no-untyped-def]
    render_table(None, ["task", "run id", "calls", "flag"], [(12345, 20001, 12345, True)])
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["12345", "20001", "12,345", "True"]
