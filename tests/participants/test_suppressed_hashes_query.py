"""The one statement the sender's re-check and the call claim read suppressions by hash with
(engine.consent.suppression_lookup.suppressed_hashes_query): the listed hashes on the named
channels and ``all``, never another channel's, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.app import App
from engine.consent.suppression_lookup import hash_normalised, suppressed_hashes_query
from engine.consent.suppressions import add_suppression
from engine.testing.fakes import unit

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
PHONES = ["+14155550101", "+14155550102", "+14155550103", "+14155550104"]


def _fill(app: App) -> None:
    with unit(app) as s:
        add_suppression(s, PHONES[0], "sms", "opt_out", "test", at=AT)
        add_suppression(s, PHONES[1], "all", "do_not_call", "test", at=AT)
        add_suppression(s, PHONES[2], "call", "do_not_call", "test", at=AT)
        add_suppression(s, PHONES[3], "call", "do_not_call", "test", at=AT)


def test_the_hashes_on_the_named_channels_and_all(app: App) -> None:
    _fill(app)
    postgres = app.engine.dialect.name == "postgresql"
    listed = [hash_normalised(p) for p in PHONES[:3]]  # the fourth is not asked about
    with app.engine.connect() as conn:
        found = set(
            conn.scalars(
                suppressed_hashes_query(postgres), {"hashes": listed, "channels": ["sms", "all"]}
            )
        )
    assert found == {hash_normalised(PHONES[0]), hash_normalised(PHONES[1])}


def test_with_their_channel(app: App) -> None:
    _fill(app)
    postgres = app.engine.dialect.name == "postgresql"
    listed = [hash_normalised(p) for p in PHONES[:3]]
    statement = suppressed_hashes_query(postgres, with_channel=True)
    with app.engine.connect() as conn:
        found = set(conn.execute(statement, {"hashes": listed, "channels": ["call", "all"]}))
    assert found == {
        (hash_normalised(PHONES[1]), "all"),
        (hash_normalised(PHONES[2]), "call"),
    }
    assert statement is suppressed_hashes_query(postgres, with_channel=True)  # built once
