"""What the CLI prints: names in the member's order, counts with thousands separators (never
identifiers), columns aligned by terminal cells for CJK text, raw numbers in --json."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

from click.testing import CliRunner
from rich.cells import cell_len

from cli import cli
from engine.app import App
from engine.cli.common import render_table
from engine.run_work import RunWork
from engine.runs import StatusChange
from engine.sequencing.summary import AdvanceSummary
from engine.testing.fakes import make_participant, make_program, unit
from engine.tick import TickSummary

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


def test_counts_in_sentences_get_separators_too() -> None:
    """The advance, tick, run status and run work sentences: every count with a separator,
    the run ids (typed back into commands) without."""
    advanced = AdvanceSummary(
        at=NOW,
        enrollments=12_345,
        messages={"email": 4_321},
        messages_skipped={"no_address": 1_001},
        call_tasks=2_000,
        exited=1_500,
        exited_consent_not_stated=1_200,
        waiting=10_000,
        runs_completed=[1234],
    )
    text = advanced.message
    figures = ["12,345 due", "4,321 email", "1,001 (no_address)", "2,000 call task",
               "1,500 exited (1,200 of them", "10,000 waiting", "runs completed: 1234"]  # fmt: skip
    for figure in figures:
        assert figure in text, (figure, text)
    dispatch = SimpleNamespace(
        sent=5_000, skipped={"opted_out": 1_100}, waiting=2_500, retried=1_000, failed=1_000,
        unknown=1_000, stopped_by="drained", paused_runs=[], errors=[], waiting_for=[],
    )  # fmt: skip
    tick_text = TickSummary(at=NOW, conversions=3_000, advance=advanced, dispatch=dispatch).message
    assert "conversions: 3,000 new" in tick_text
    sent = "sent 5,000, skipped 1,100, waiting 2,500, retried 1,000, failed 1,000, unknown 1,000"
    assert sent in tick_text
    change = StatusChange(1234, "winback", "active", "cancelled", None, 1_500, 2_500, 1_000, 3_000)
    assert change.words() == (
        "Run 1234 (winback): active -> cancelled; 1,500 open enrollments exited; 2,500 queued "
        "messages skipped; 1,000 open call tasks closed; 3,000 call tasks held by agents close "
        "when logged."
    )
    work = RunWork(enrollments_with_steps_left=1_000, pending_messages=20_000, open_call_tasks=1)
    assert work.describe() == (
        "1,000 enrollment(s) with steps left, 20,000 pending message(s), 1 open call task(s)"
    )
