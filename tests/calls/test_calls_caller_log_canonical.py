"""The caller log's MACs are over the same bytes whichever encoder wrote them (#20): entries
chained before orjson wrote the canonical JSON must keep verifying, so the fast path must write
exactly what the json module writes, or hand the value to it."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.calls import caller_log

KEY = b"k" * 32
# Any text (lone surrogates included), ints beyond 64 bits, floats, dates, nested documents.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None))
    | st.datetimes(timezones=st.just(timezone(timedelta(hours=-5))))
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(st.characters(codec=None), max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
entries = st.fixed_dictionaries(
    {name: documents for name in (*caller_log.CHAINED_COLUMNS, *caller_log.PERSONAL_COLUMNS)}
)


def reference_mac(key: bytes, text: str) -> str:
    """The MAC as the module's docstring defines it, by the json module."""
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def outcome(compute: Any) -> tuple[str, Any]:
    try:
        return ("value", compute())
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        return ("refused", type(exc))


@settings(max_examples=150, deadline=None)
@given(entries)
def test_entry_mac_and_digest_are_those_of_the_json_module(values: dict[str, Any]) -> None:
    prev = "a" * 64
    assert outcome(lambda: caller_log.entry_hash(KEY, prev, values)) == outcome(
        lambda: reference_mac(KEY, prev + caller_log.canonical(values))
    )
    assert outcome(lambda: caller_log.personal_digest(KEY, values)) == outcome(
        lambda: reference_mac(
            KEY, "personal:" + caller_log.canonical(values, caller_log.PERSONAL_COLUMNS)
        )
    )


def test_a_typical_entry_is_hashed_as_before() -> None:
    """Pinned: an entry as `calls log` writes it, MAC'd by the formula of 0020."""
    values: dict[str, Any] = {
        "seq": 7,
        "task_id": 12,
        "participant_id": 34,
        "external_id": "M-é-12",
        "program": "loyalty",
        "campaign": "renewals",
        "run_id": 3,
        "task_kind": "campaign",
        "agent": "ana",
        "number_dialled": "+12025550123",
        "disposition": "NOT_INTERESTED",
        "human_contact": True,
        "verified": True,
        "fields": {"reason": "trop cher ✓", "points": "12"},
        "notes": "calm\nand polite",
        "record": "NOT_INTERESTED - Not interested.",
        "claimed_at": None,
        "logged_at": datetime(2026, 3, 2, 16, 0, 1, 5, tzinfo=UTC),
        "handle_seconds": 95,
        "attempt": 1,
        "source": "dialer",
        "prev_hash": "b" * 64,
    }
    values["personal_digest"] = caller_log.personal_digest(KEY, values)
    plain = {
        name: values[name].isoformat(timespec="microseconds")
        if isinstance(values[name], datetime)
        else values[name]
        for name in caller_log.CHAINED_COLUMNS
    }
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert caller_log.entry_hash(KEY, "b" * 64, values) == reference_mac(KEY, "b" * 64 + text)
