"""Bad or partial input never costs good data (issue #15), on SQLite and PostgreSQL: a file
that carries a few columns leaves the others alone, blank cells keep stored values unless
the import clears blanks, the "unchanged" digest is never fooled by a partial file, cells
PostgreSQL cannot store reject their row, and an encoding that is not UTF-8 is named."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli import cli
from engine.app import App
from engine.clock import FrozenClock
from engine.db.models import Consent, Participant
from engine.errors import InputError
from engine.participants.importer import import_participants
from engine.testing.fakes import make_program

FULL_HEADER = (
    "external_id,first_name,last_name,email,phone,timezone,locale,status,points_balance,"
    "points_expiring,tier,enrolled_at,home_store,consent_email,consent_sms,consent_call"
)
FULL_ROWS = [
    "M1,Ana,Lima,ana@example.com,+12025550143,America/Chicago,es-MX,lapsed,1200,300,gold,"
    "2024-01-05,Polanco,yes,yes,yes",
    "M2,Bo,Berg,bo@example.com,+12025550178,America/Denver,en,inactive,50,0,silver,"
    "2024-02-01,Roma,yes,no,yes",
]


def _write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _members(app: App) -> dict[str, dict[str, Any]]:
    fields = (
        "first_name",
        "last_name",
        "email",
        "phone",
        "timezone",
        "locale",
        "status",
        "points_balance",
        "points_expiring",
        "tier",
        "enrolled_at",
        "attributes",
    )
    with app.sessions() as session:
        consents: dict[int, dict[str, str]] = {}
        for participant_id, channel, status in session.execute(
            select(Consent.participant_id, Consent.channel, Consent.status)
        ):
            consents.setdefault(participant_id, {})[channel] = status
        return {
            p.external_id: {
                **{f: getattr(p, f) for f in fields},
                "consents": consents.get(p.id, {}),
            }
            for p in session.scalars(select(Participant))
        }


@pytest.fixture
def loaded(app: App, clock: FrozenClock, tmp_path: Path) -> dict[str, dict[str, Any]]:
    with app.sessions() as session, session.begin():
        make_program(session, at=clock.now(), key="loyalty")
    full = _write(tmp_path / "full.csv", FULL_HEADER, FULL_ROWS)
    summary = import_participants(app, full, program_key=None, at=clock.now())
    assert (summary.inserted, summary.rejected) == (2, 0)
    return _members(app)


def test_a_consent_only_file_changes_consents_and_nothing_else(
    app: App, clock: FrozenClock, tmp_path: Path, loaded: dict[str, dict[str, Any]]
) -> None:
    """The reported case: external_id,consent_sms,consent_call used to wipe name, email,
    phone, zone, locale, tier, points and attributes and set status to active."""
    path = _write(
        tmp_path / "consents.csv",
        "external_id,consent_sms,consent_call",
        ["M1,no,", "M2,yes,no", "M3,yes,"],
    )
    summary = import_participants(
        app, path, program_key=None, at=clock.now() + timedelta(days=1), workers=1
    )
    assert (summary.inserted, summary.updated, summary.rejected) == (1, 2, 0)
    after = _members(app)
    for key in ("M1", "M2"):
        expected = {k: v for k, v in loaded[key].items() if k != "consents"}
        assert {k: v for k, v in after[key].items() if k != "consents"} == expected
    assert after["M1"]["consents"] == {"email": "opted_in", "sms": "opted_out", "call": "opted_in"}
    assert after["M2"]["consents"] == {"email": "opted_in", "sms": "opted_in", "call": "opted_out"}
    # Defaults are for new members only.
    new = after["M3"]
    assert (new["status"], new["points_balance"], new["attributes"]) == ("active", 0, {})
    assert new["first_name"] is None and new["consents"] == {"sms": "opted_in"}


def test_blank_cells_keep_stored_values_and_clear_blank_clears_them(
    app: App, clock: FrozenClock, tmp_path: Path, loaded: dict[str, dict[str, Any]]
) -> None:
    header = "external_id,first_name,email,status,points_balance,home_store,consent_sms"
    path = _write(tmp_path / "blanks.csv", header, ["M1,,,,,,", "M2,Bob,,closed,,Centro,"])
    at = clock.now() + timedelta(days=1)
    summary = import_participants(app, path, program_key=None, at=at)
    assert (summary.updated, summary.unchanged) == (2, 0)
    kept = _members(app)
    assert kept["M1"] == loaded["M1"]
    assert kept["M2"]["first_name"] == "Bob" and kept["M2"]["status"] == "closed"
    assert kept["M2"]["email"] == "bo@example.com" and kept["M2"]["points_balance"] == 50
    assert kept["M2"]["attributes"] == {"home_store": "Centro"}
    assert kept["M2"]["consents"] == loaded["M2"]["consents"]

    again = import_participants(app, path, program_key=None, at=at)
    assert again.unchanged == 2  # re-running the same file changes nothing

    cleared = import_participants(
        app, path, program_key=None, at=at + timedelta(days=1), clear_blank=True
    )
    assert (cleared.updated, cleared.unchanged) == (2, 0)  # the digest knows the option
    after = _members(app)
    one = after["M1"]
    assert one["first_name"] is None and one["email"] is None
    assert (one["status"], one["points_balance"]) == ("active", 0)  # back to the defaults
    assert one["attributes"] == {}  # the blank attribute is removed
    # Columns the file does not carry and the consents are never cleared.
    assert one["last_name"] == "Lima" and one["phone"] == "+12025550143"
    assert one["tier"] == "gold" and one["consents"] == loaded["M1"]["consents"]


def test_jsonl_keys_a_row_lacks_are_left_alone(
    app: App, clock: FrozenClock, tmp_path: Path, loaded: dict[str, dict[str, Any]]
) -> None:
    path = tmp_path / "changes.jsonl"
    rows = [
        {"external_id": "M1", "tier": "platinum", "prefs": {"lang": ["es"]}, "vip": True},
        {"external_id": "M2", "email": "", "status": None, "home_store": "Sur"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    summary = import_participants(app, path, program_key=None, at=clock.now())
    assert (summary.updated, summary.rejected) == (2, 0)
    after = _members(app)
    assert after["M1"]["tier"] == "platinum" and after["M1"]["first_name"] == "Ana"
    assert after["M1"]["attributes"] == {
        "home_store": "Polanco",
        "prefs": {"lang": ["es"]},
        "vip": True,
    }
    assert after["M2"]["email"] == "bo@example.com" and after["M2"]["status"] == "inactive"
    assert after["M2"]["attributes"] == {"home_store": "Sur"}

    # With clear_blank, a JSONL key that is null or blank clears; an absent one does not.
    cleared = import_participants(app, path, program_key=None, at=clock.now(), clear_blank=True)
    assert cleared.updated == 2
    after = _members(app)
    assert after["M2"]["email"] is None and after["M2"]["status"] == "active"
    assert after["M2"]["first_name"] == "Bo" and after["M1"]["email"] == "ana@example.com"


def test_a_partial_file_never_passes_for_the_full_one(
    app: App, clock: FrozenClock, tmp_path: Path, loaded: dict[str, dict[str, Any]]
) -> None:
    """The digest of the file that last wrote a row is the row's: the full file after a
    partial one is written again (it restores what the partial one changed), and a partial
    file after the full one is never skipped as "unchanged"."""
    at = clock.now()
    names = _write(tmp_path / "names.csv", "external_id,first_name", ["M1,Annie", "M2,Bo"])
    first = import_participants(app, names, program_key=None, at=at)
    assert (first.updated, first.unchanged) == (2, 0)
    assert _members(app)["M1"]["first_name"] == "Annie"

    full = tmp_path / "full.csv"
    again = import_participants(app, full, program_key=None, at=at + timedelta(days=1))
    assert (again.updated, again.unchanged) == (2, 0)
    assert _members(app) == loaded

    rerun = import_participants(app, full, program_key=None, at=at + timedelta(days=2))
    assert rerun.unchanged == 2
    later = import_participants(app, names, program_key=None, at=at + timedelta(days=3))
    assert (later.updated, later.unchanged) == (2, 0)
    assert _members(app)["M1"]["first_name"] == "Annie"


def test_a_partial_file_through_worker_processes(
    app: App, clock: FrozenClock, tmp_path: Path, loaded: dict[str, dict[str, Any]]
) -> None:
    rows = ["M1,no", "M2,no"] + [f"N{i:04d},yes" for i in range(40)]
    path = _write(tmp_path / "sms.csv", "external_id,consent_sms", rows)
    summary = import_participants(
        app, path, program_key=None, at=clock.now(), workers=2, chunk_size=7, parallel_threshold=1
    )
    assert (summary.inserted, summary.updated, summary.rejected) == (40, 2, 0)
    after = _members(app)
    assert after["M1"]["first_name"] == "Ana" and after["M1"]["points_balance"] == 1200
    assert after["M1"]["consents"]["sms"] == "opted_out"
    assert after["N0007"]["status"] == "active"


def test_nul_characters_and_lone_surrogates_reject_their_row_only(
    app: App, clock: FrozenClock, tmp_path: Path, loaded: dict[str, dict[str, Any]]
) -> None:
    """On PostgreSQL a NUL used to abort the whole file with a traceback."""
    csv_path = tmp_path / "nul.csv"
    csv_path.write_bytes(
        b"external_id,first_name,home_store\n"
        b"M1,An\x00a,Polanco\n"
        b"M2,Bob,Ro\x00ma\n"
        b"M4,Dee,Centro\n"
        b'M5,"Eve\nAdams",Sur\n'
    )
    summary = import_participants(app, csv_path, program_key=None, at=clock.now())
    assert (summary.read, summary.inserted, summary.rejected) == (4, 1, 3)
    assert summary.rejects_path is not None
    rejects = summary.rejects_path.read_bytes()
    assert b"first_name: contains a NUL character" in rejects and b"An\x00a" in rejects
    assert b"home_store: contains a NUL character" in rejects
    assert b"first_name: contains a line break" in rejects

    jsonl = tmp_path / "nul.jsonl"
    jsonl.write_text(
        '{"external_id": "M1", "first_name": "An\\u0000a"}\n'
        '{"external_id": "M2", "prefs": {"k": "\\ud800"}}\n'
        '{"external_id": "M7", "score": NaN}\n'
        '{"external_id": "M6", "first_name": "Fay"}\n',
        encoding="utf-8",
    )
    summary = import_participants(app, jsonl, program_key=None, at=clock.now())
    assert (summary.read, summary.inserted, summary.rejected) == (4, 1, 3)
    assert summary.rejects_path is not None
    text = summary.rejects_path.read_text(encoding="utf-8")
    assert "score: is NaN or infinite" in text
    assert "first_name: contains a NUL character" in text
    assert "prefs: contains text that is not valid Unicode" in text
    after = _members(app)
    assert after["M1"] == loaded["M1"] and after["M2"] == loaded["M2"]
    assert after["M6"]["first_name"] == "Fay" and after["M4"]["first_name"] == "Dee"


LATIN = "external_id,first_name,home_store\nM1,Andr\xe9,S\xe3o Paulo\nM2,Zo\xeb,\u20acuro\n"


def test_a_windows_1252_file_is_refused_with_a_hint_or_read_with_encoding(
    app: App, clock: FrozenClock, tmp_path: Path, loaded: dict[str, dict[str, Any]]
) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(LATIN.encode("cp1252"))
    with pytest.raises(InputError) as refused:
        import_participants(app, path, program_key=None, at=clock.now())
    message = str(refused.value)
    assert "line 2 is not UTF-8 (byte 0xE9)" in message and "--encoding cp1252" in message
    assert _members(app) == loaded  # nothing was written

    # 0x81 is undefined in Windows-1252: Latin-1 is the better guess.
    path.write_bytes(LATIN.encode("cp1252") + b"M3,Bad\x81,x\n")
    with pytest.raises(InputError, match="--encoding latin-1"):
        import_participants(app, path, program_key=None, at=clock.now())

    summary = import_participants(app, path, program_key=None, at=clock.now(), encoding="cp1252")
    assert (summary.updated, summary.rejected) == (2, 1)
    after = _members(app)
    assert after["M1"]["first_name"] == "André"
    assert after["M1"]["attributes"] == {"home_store": "São Paulo"}
    assert after["M2"]["first_name"] == "Zoë"
    assert after["M2"]["attributes"] == {"home_store": "€uro"}
    # The rejected row is written back in the file's own bytes.
    assert summary.rejects_path is not None
    rejects = summary.rejects_path.read_bytes()
    assert b"\r\n4,contains bytes that are not cp1252,M3,Bad\x81,x\r\n" in rejects


def test_an_unknown_or_unsupported_encoding_is_a_clear_error(
    app: App, clock: FrozenClock, tmp_path: Path, loaded: dict[str, dict[str, Any]]
) -> None:
    path = _write(tmp_path / "x.csv", "external_id", ["M1"])
    with pytest.raises(InputError, match="unknown encoding 'klingon'"):
        import_participants(app, path, program_key=None, at=clock.now(), encoding="klingon")
    with pytest.raises(InputError, match="'utf-16' is not supported"):
        import_participants(app, path, program_key=None, at=clock.now(), encoding="utf-16")


def _cli(database_url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--database-url", database_url, *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_exits_1_when_every_row_is_rejected_and_still_prints_the_summary(
    database_url: str, tmp_path: Path
) -> None:
    code, out, err = _cli(database_url, "programs", "add", "gold", "--name", "Gold")
    assert code == 0, out + err
    bad = _write(tmp_path / "bad.csv", "external_id,email", ["G1,nope", "G2,also-nope"])
    code, out, err = _cli(database_url, "participants", "import", str(bad))
    assert code == 1
    assert "read 2, inserted 0, updated 0, unchanged 0, rejected 2" in out
    assert "every row was rejected" in err
    code, out, _err = _cli(database_url, "participants", "import", str(bad), "--json")
    assert code == 1 and json.loads(out)["rejected"] == 2

    good = _write(tmp_path / "good.csv", "external_id,first_name", ["G1,Ana", "G2,"])
    code, out, err = _cli(database_url, "participants", "import", str(good))
    assert code == 0, out + err

    events = _write(tmp_path / "events.csv", "external_id,type,occurred_at", ["G9,login,x"])
    code, out, err = _cli(database_url, "events", "import", str(events))
    assert code == 1 and "rejected 1" in out and "every row was rejected" in err


def test_cli_encoding_and_clear_blank_options(database_url: str, tmp_path: Path) -> None:
    code, out, err = _cli(database_url, "programs", "add", "gold", "--name", "Gold")
    assert code == 0, out + err
    path = tmp_path / "latin.csv"
    path.write_bytes(LATIN.encode("cp1252"))
    code, out, err = _cli(database_url, "participants", "import", str(path))
    assert code == 1 and "Traceback" not in out + err
    assert "line 2 is not UTF-8" in out + err and "--encoding cp1252" in out + err
    code, out, err = _cli(database_url, "participants", "import", str(path), "--encoding", "cp1252")
    assert code == 0 and "inserted 2" in out, out + err
    blank = _write(tmp_path / "blank.csv", "external_id,first_name,home_store", ["M1,,"])
    code, out, err = _cli(database_url, "participants", "import", str(blank), "--clear-blank")
    assert code == 0, out + err
    code, out, err = _cli(database_url, "participants", "show", "M1", "--json")
    shown = json.loads(out)
    assert shown["first_name"] is None and shown.get("attributes") in ({}, None)
