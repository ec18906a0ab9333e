"""The caller log in front of an auditor (issue #17): an attacker who can write the database
but does not hold the key cannot delete the tail, empty the log, rewrite an entry with its
chain recomputed, or append a forged entry without `verify-log` saying so; erasure keeps the
chain verifiable; the key lives outside the database."""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from calls_helpers import TEST_NOW
from click.testing import CliRunner
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from test_calls_caller_log import fill, verify

from cli import cli
from engine.app import App, build_app
from engine.calls import caller_log
from engine.calls.log_key import default_key_file
from engine.db.models import CallerLogEntry
from engine.settings import Settings
from engine.testing.fakes import unit

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def raw(app: App, statement: str, **params: object) -> None:
    """What a database writer can do: plain SQL, triggers disabled where the owner may."""
    with app.engine.begin() as conn:
        if app.engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # owner/superuser
        conn.execute(text(statement), params)


def row(app: App, seq: int) -> dict[str, object]:
    with app.sessions() as s:
        entry = s.scalar(select(CallerLogEntry).where(CallerLogEntry.seq == seq))
        assert entry is not None
        return {c.name: getattr(entry, c.name) for c in CallerLogEntry.__table__.columns}


def test_deleting_the_newest_entry_is_detected(app: App) -> None:
    fill(app, 3)
    raw(app, "DELETE FROM caller_log WHERE seq = 3")
    result = verify(app)
    assert not result.ok
    assert "names entry 3 but the log ends at 2" in (result.problem or "")


def test_emptying_the_log_is_detected(app: App) -> None:
    fill(app, 3)
    raw(app, "DELETE FROM caller_log")
    result = verify(app)
    assert not result.ok and "the log was emptied" in (result.problem or "")


def test_an_edit_with_the_chain_recomputed_without_the_key_is_detected(app: App) -> None:
    fill(app, 3)
    # Rewrite entry 2 and every MAC after it, the way the old unkeyed chain allowed, with any
    # key the attacker may pick (here: the legacy formula and a guessed key).
    prev = str(row(app, 1)["hash"])
    for seq in (2, 3):
        values = row(app, seq)
        values["notes"] = "nothing happened" if seq == 2 else values["notes"]
        values["prev_hash"] = prev
        prev = caller_log.entry_hash(b"guessed", prev, values)
        raw(
            app,
            "UPDATE caller_log SET notes = :n, prev_hash = :p, hash = :h WHERE seq = :s",
            n=values["notes"],
            p=values["prev_hash"],
            h=prev,
            s=seq,
        )
    result = verify(app)
    assert (result.ok, result.first_broken_seq) == (False, 2)


@pytest.mark.parametrize("chain", ["hmac", "sha256"])
def test_an_appended_forged_entry_is_detected(app: App, chain: str) -> None:
    fill(app, 2)
    values = row(app, 2)
    values.update(seq=3, prev_hash=values["hash"], notes="forged", id=None, chain=chain)
    values["hash"] = (
        caller_log.legacy_entry_hash(str(values["prev_hash"]), values)
        if chain == "sha256"
        else caller_log.entry_hash(b"guessed", str(values["prev_hash"]), values)
    )
    values.pop("id")
    with app.engine.begin() as conn:
        conn.execute(CallerLogEntry.__table__.insert().values(**values))
    result = verify(app)
    assert (result.ok, result.first_broken_seq) == (False, 3)


def test_deleting_both_tails_is_caught_by_a_head_saved_outside(app: App, tmp_path: Path) -> None:
    fill(app, 3)
    with app.sessions() as s:
        saved = caller_log.signed_head(s, at=TEST_NOW)
    assert saved["seq"] == 3
    raw(app, "DELETE FROM caller_log WHERE seq = 3")
    raw(app, "DELETE FROM caller_log_checkpoints WHERE seq = 3")
    assert verify(app).ok  # what the database alone can tell
    with app.sessions() as s:
        result = caller_log.verify(s, saved_head=saved)
    assert not result.ok and "saved head" in (result.problem or "")
    forged = {**saved, "seq": 2, "head": str(row(app, 2)["hash"])}
    with app.sessions() as s:
        result = caller_log.verify(s, saved_head=forged)
    assert not result.ok and "signature" in (result.problem or "")


def test_log_head_and_verify_with_it_from_the_cli(app: App, tmp_path: Path) -> None:
    fill(app, 2)
    url = app.settings.database_url
    heads = tmp_path / "caller-log.heads"
    for _ in range(2):  # a cron appends one head a day
        result = CliRunner().invoke(cli, ["--database-url", url, "calls", "log-head"])
        assert result.exit_code == 0, result.output
        with heads.open("a") as handle:
            handle.write(result.output)
    assert json.loads(result.output)["seq"] == 2
    result = CliRunner().invoke(
        cli, ["--database-url", url, "calls", "verify-log", "--head", str(heads)]
    )
    assert result.exit_code == 0, result.output
    assert "Caller log intact: 2 entries" in result.output and "saved head" in result.output
    raw(app, "DELETE FROM caller_log")
    raw(app, "DELETE FROM caller_log_checkpoints")
    result = CliRunner().invoke(
        cli, ["--database-url", url, "calls", "verify-log", "--head", str(heads)]
    )
    assert result.exit_code == 1
    assert "Caller log BROKEN" in result.output and "emptied" in result.output
    assert "Traceback" not in result.output


def test_erasure_empties_personal_columns_and_the_chain_still_verifies(app: App) -> None:
    fill(app, 3)
    participant = int(row(app, 2)["participant_id"])  # type: ignore[call-overload]
    with unit(app) as s:
        assert caller_log.erase_personal(s, participant, at=TEST_NOW + timedelta(days=1)) == 1
    erased = row(app, 2)
    assert [erased[c] for c in caller_log.PERSONAL_COLUMNS] == [None] * 5
    assert erased["erased_at"] is not None and erased["disposition"] == "NOT_INTERESTED"
    result = verify(app)
    assert result.ok and result.erased == 1 and result.entries == 3


@POSTGRES_ONLY
def test_postgres_trigger_lets_only_erasure_through(app: App, database_url: str) -> None:
    fill(app, 2)
    for statement in (
        "UPDATE caller_log SET notes = NULL",  # not the whole erasure
        "UPDATE caller_log SET external_id = NULL, number_dialled = NULL, fields = NULL, "
        "notes = NULL, record = NULL, erased_at = now(), agent = 'mallory'",  # and a change
        "DELETE FROM caller_log_checkpoints",
        "UPDATE caller_log_checkpoints SET seq = 1",
    ):
        with pytest.raises(DBAPIError, match="append-only"), app.engine.begin() as conn:
            conn.execute(text(statement))
    with unit(app) as s:
        assert caller_log.erase_personal(s, int(row(app, 1)["participant_id"]), at=TEST_NOW) == 1  # type: ignore[call-overload]
    assert verify(app).ok


@pytest.fixture
def app_role(database_url: str) -> Iterator[str]:
    """A login role for the application that owns nothing (the migrations ran as the owner)."""
    name = f"campaign_app_{uuid.uuid4().hex[:8]}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {name} LOGIN"))
        conn.execute(
            text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}")
        )
        conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {name}"))
    try:
        yield make_url(database_url).set(username=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {name}"))
            conn.execute(text(f"DROP ROLE {name}"))
        admin.dispose()


@POSTGRES_ONLY
def test_an_application_role_that_is_not_the_owner_cannot_switch_the_trigger_off(
    app: App, database_url: str, app_role: str
) -> None:
    # The engine works as that role: calls are logged and the log verifies...
    role_app = build_app(
        app.settings.model_copy(update={"database_url": app_role}), clock=app.clock
    )
    try:
        fill(role_app, 2)
        assert verify(role_app).ok
    finally:
        role_app.close()
    # ... but the role cannot switch the append-only trigger off, nor get round it.
    engine = create_engine(app_role)
    try:
        for statement in (
            "ALTER TABLE caller_log DISABLE TRIGGER ALL",
            "ALTER TABLE caller_log DISABLE TRIGGER caller_log_no_update_delete",
            "DROP TRIGGER caller_log_no_update_delete ON caller_log",
            "SET session_replication_role = replica",
        ):
            with (
                pytest.raises(DBAPIError, match=r"must be owner|permission denied"),
                engine.begin() as conn,
            ):
                conn.execute(text(statement))
        for statement in ("DELETE FROM caller_log", "DELETE FROM caller_log_checkpoints"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    assert verify(app).entries == 2


@SQLITE_ONLY
def test_the_default_key_file_lives_beside_the_database_and_another_key_fails(
    database_url: str, monkeypatch: pytest.MonkeyPatch, clock: object
) -> None:
    monkeypatch.delenv("CAMPAIGN_CALLER_LOG_KEY")
    settings = Settings(database_url=database_url)
    app = build_app(settings, clock=clock)  # type: ignore[arg-type]
    try:
        fill(app, 2)
    finally:
        app.close()
    key_file = default_key_file(database_url)
    assert key_file is not None and key_file.name == "campaign.db.caller-log.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    with unit(build_app(settings, clock=clock)) as s:  # type: ignore[arg-type]
        assert caller_log.verify(s).ok
    # The key is nowhere in the database.
    key = key_file.read_text().strip()
    assert key.encode() not in Path(make_url(database_url).database or "").read_bytes()
    key_file.write_text("another-key-" + "1" * 32 + "\n")
    other = build_app(settings, clock=clock)  # type: ignore[arg-type]
    try:
        with other.sessions() as s:
            result = caller_log.verify(s)
        assert not result.ok and result.first_broken_seq == 1
    finally:
        other.close()
