"""The sequencer's suppression lookup (engine.sequencing.facts.suppressions_query) probes the
(channel, address_hash) key, whatever the size of the list, and finds what the gate needs:
the batch's channels and ``all``, never another channel's."""

from __future__ import annotations

import pytest
from seq_helpers import TEST_NOW
from sqlalchemy import text

from engine.app import App
from engine.consent.suppression_lookup import hash_normalised
from engine.consent.suppressions import add_suppression
from engine.sequencing.facts import suppressions_query
from engine.testing.fakes import unit

PHONES = ["+14155550101", "+14155550102", "+14155550103", "+14155550104"]


def test_the_lookup_finds_the_batch_channels_and_all(app: App) -> None:
    with unit(app) as s:
        add_suppression(s, PHONES[0], "sms", "opt_out", "test", at=TEST_NOW)
        add_suppression(s, PHONES[1], "all", "do_not_call", "test", at=TEST_NOW)
        add_suppression(s, PHONES[2], "call", "do_not_call", "test", at=TEST_NOW)
    postgres = app.engine.dialect.name == "postgresql"
    sql, params = suppressions_query(postgres, {"sms"}, [hash_normalised(p) for p in PHONES])
    with app.engine.connect() as conn:
        found = set(conn.exec_driver_sql(sql, params).all())
    assert found == {("sms", hash_normalised(PHONES[0])), ("all", hash_normalised(PHONES[1]))}


def test_the_lookup_probes_the_channel_and_hash_key(app: App) -> None:
    postgres = app.engine.dialect.name == "postgresql"
    digests = [hash_normalised(p) for p in PHONES]
    sql, params = suppressions_query(postgres, {"email", "sms"}, digests)
    with app.engine.begin() as conn:
        if postgres:
            # The plan a prepared statement ends up with (its arrays unknown when planned),
            # and no sequential scan to fall back on: the key's two columns must both be index
            # conditions (the hashes alone would walk the whole index).
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
            plan = "\n".join(str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN {sql}", params))
            conditions = [line for line in plan.splitlines() if "Index Cond" in line]
            assert any("channel" in c and "address_hash" in c for c in conditions), plan
        else:
            plan = " ".join(str(r[3]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "SEARCH suppressions USING COVERING INDEX" in plan, plan
            assert "channel=? AND address_hash=?" in plan, plan


@pytest.mark.parametrize("channel", ["sms'", "e mail"])
def test_the_lookup_refuses_what_is_not_a_channel_name(channel: str) -> None:
    with pytest.raises(ValueError, match="not a channel name"):
        suppressions_query(True, {channel}, [hash_normalised(PHONES[0])])
