"""Working with an external dialer: export the call list as CSV, import the outcomes.

Import file (CSV with a header row, UTF-8):

    task_id,agent,disposition,verified,duration_seconds,notes,field.reason,field.callback_at,...

``field.NAME`` columns carry the disposition's documentation fields (empty cells are absent).
Every row is validated exactly like ``calls log``; one bad row rejects the whole file with
every problem listed by line, and nothing is written (nothing is lost either: fix and re-run).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from engine.calls.agents import get_agent
from engine.calls.dispositions import DispositionSet, parse_yes_no
from engine.calls.log import CallInput, LogResult, log_call, validate_call
from engine.calls.tasks import list_calls, write_lock
from engine.clock import ensure_utc
from engine.errors import EngineError, InputError

EXPORT_COLUMNS = (
    "task_id",
    "position",
    "kind",
    "external_id",
    "name",
    "phone",
    "callable_at",
    "campaign",
    "step",
    "team",
    "assigned_agent",
    "attempt",
    "max_attempts",
    "why",
)
REQUIRED_COLUMNS = ("task_id", "agent", "disposition")
FIELD_PREFIX = "field."


def export_rows(
    session: Session, *, at: datetime, agent: str | None = None, day: date | None = None
) -> list[dict[str, object]]:
    """The callable tasks of the call list in serving order (refused ones left out)."""
    rows = []
    for t in list_calls(session, at=at, agent=agent, day=day):
        if t.blocked is not None:
            continue
        rows.append(
            {
                "task_id": t.task_id,
                "position": t.position,
                "kind": t.kind,
                "external_id": t.external_id,
                "name": t.name,
                "phone": t.phone,
                "callable_at": t.callable_at.isoformat() if t.callable_at else "",
                "campaign": t.campaign or "",
                "step": t.step or "",
                "team": t.team or "",
                "assigned_agent": t.assigned_agent or "",
                "attempt": t.attempts + 1,
                "max_attempts": t.max_attempts,
                "why": t.why,
            }
        )
    return rows


def to_csv(rows: Iterable[dict[str, object]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return out.getvalue()


@dataclass(frozen=True)
class ImportResult:
    file: str
    rows: int
    logged: list[LogResult]


def _parse_rows(path: Path) -> tuple[list[tuple[int, CallInput]], list[tuple[int, str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} in the header")
    parsed: list[tuple[int, CallInput]] = []
    problems: list[tuple[int, str]] = []
    for row in reader:
        line = reader.line_num
        try:
            task_text = (row.get("task_id") or "").strip()
            if not task_text.isdigit():
                raise InputError(f"task_id {task_text!r} is not a task number")
            verified_text = (row.get("verified") or "").strip()
            duration_text = (row.get("duration_seconds") or "").strip()
            if duration_text and not duration_text.isdigit():
                raise InputError(f"duration_seconds {duration_text!r} is not whole seconds")
            fields = {
                key[len(FIELD_PREFIX) :]: value.strip()
                for key, value in row.items()
                if key and key.startswith(FIELD_PREFIX) and value and value.strip()
            }
            parsed.append(
                (
                    line,
                    CallInput(
                        task_id=int(task_text),
                        agent=(row.get("agent") or "").strip(),
                        disposition=(row.get("disposition") or "").strip(),
                        fields=fields,
                        verified=parse_yes_no(verified_text, "verified") if verified_text else None,
                        notes=(row.get("notes") or "").strip() or None,
                        duration_seconds=int(duration_text) if duration_text else None,
                    ),
                )
            )
        except EngineError as exc:
            problems.append((line, str(exc)))
    return parsed, problems


def import_results(
    session: Session, path: Path, dispositions: DispositionSet, *, at: datetime
) -> ImportResult:
    """Validate every row, then log them all in the caller's transaction (all or nothing).
    On SQLite call it first in its transaction."""
    at = ensure_utc(at)
    write_lock(session)
    parsed, problems = _parse_rows(path)
    seen: dict[int, int] = {}
    for line, call in parsed:
        try:
            get_agent(session, call.agent)
            validate_call(session, call, dispositions, at=at)
            if call.task_id in seen:
                raise InputError(f"task {call.task_id} is already on line {seen[call.task_id]}")
            seen[call.task_id] = line
        except EngineError as exc:
            problems.append((line, str(exc)))
    if problems:
        problems.sort(key=lambda p: p[0])
        shown = [f"{path}:{line}: {message}" for line, message in problems[:20]]
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise InputError(
            f"{path}: {len(problems)} row(s) refused; nothing was imported:\n"
            + "\n".join(shown)
            + more
        )
    logged = [
        log_call(session, call, dispositions, at=at, source="dialer", lock=False)
        for _, call in parsed
    ]
    return ImportResult(str(path), len(parsed), logged)
