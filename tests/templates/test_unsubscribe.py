"""Signed unsubscribe tokens and the signing key kept in the database (both databases)."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from engine.app import App
from engine.consent.unsubscribe import (
    SETTING_KEY,
    InvalidTokenError,
    UnsubscribeSigner,
    signing_key,
    unsubscribe_url,
)
from engine.db.models import EngineSetting
from engine.settings import Settings

SIGNER = UnsubscribeSigner(b"k" * 32)
CHANNELS = st.sampled_from(["email", "sms", "call", "all"])


@given(st.integers(min_value=0, max_value=2**63 - 1), CHANNELS)
def test_round_trip(participant_id: int, channel: str) -> None:
    token = SIGNER.sign(participant_id, channel)
    assert SIGNER.verify(token) == (participant_id, channel)
    assert token.isascii() and all(c.isalnum() or c in "-_." for c in token)  # URL-safe


@given(
    st.integers(min_value=1, max_value=10**9),
    CHANNELS,
    st.data(),
)
def test_any_single_character_change_is_rejected(
    participant_id: int, channel: str, data: st.DataObject
) -> None:
    token = SIGNER.sign(participant_id, channel)
    index = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(
        st.sampled_from("0123456789abcdefxyzABC-_.").filter(lambda c: c != token[index])
    )
    altered = token[:index] + replacement + token[index + 1 :]
    with pytest.raises(InvalidTokenError):
        SIGNER.verify(altered)


def test_forgeries_are_rejected() -> None:
    token = SIGNER.sign(41, "email")
    _, _, signature = token.split(".")
    for forged in (
        f"42.email.{signature}",  # another member with the same signature
        f"41.sms.{signature}",  # another channel
        f"041.email.{signature}",  # same number, other spelling
        UnsubscribeSigner(b"x" * 32).sign(41, "email"),  # another key
        "41.email",
        "",
        "41.email." + signature + ".extra",
        "٤١.email." + signature,  # non-ASCII digits
    ):
        with pytest.raises(InvalidTokenError):
            SIGNER.verify(forged)


def test_url() -> None:
    settings = Settings(public_url="https://mail.example.org/")
    assert unsubscribe_url(settings, "1.email.abc") == "https://mail.example.org/u/1.email.abc"


def _stored_rows(app: App) -> int:
    with app.sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(EngineSetting)
                .where(EngineSetting.key == SETTING_KEY)
            )
            or 0
        )


def test_key_is_generated_once_and_reused(app: App) -> None:
    assert _stored_rows(app) == 0
    with app.sessions() as session, session.begin():
        first = signing_key(session, app.settings)
    with app.sessions() as session, session.begin():
        second = signing_key(session, app.settings)
    assert first == second and len(first) == 32
    assert _stored_rows(app) == 1
    # A token signed by one process verifies in another that reads the same key.
    assert UnsubscribeSigner(second).verify(UnsubscribeSigner(first).sign(9)) == (9, "email")


def test_secret_key_setting_wins_and_stores_nothing(app: App) -> None:
    settings = app.settings.model_copy(update={"secret_key": "correct horse battery staple"})
    with app.sessions() as session, session.begin():
        key = signing_key(session, settings)
    with app.sessions() as session, session.begin():
        assert signing_key(session, settings) == key
        assert key != signing_key(session, app.settings)  # generated key differs
    assert _stored_rows(app) == 1  # only the generated one, from the last call


# SQLite serialises writers with a database lock; the race is PostgreSQL's.
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_processes_racing_agree_on_one_key(app: App) -> None:
    """The second inserter waits on the first's uncommitted row, then reads the winner."""
    results: dict[str, bytes] = {}
    with app.sessions() as first, first.begin():
        results["first"] = signing_key(first, app.settings)  # inserted, not yet committed

        def second() -> None:
            with app.sessions() as session, session.begin():
                results["second"] = signing_key(session, app.settings)

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive()  # blocked on the conflicting uncommitted insert
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert results["first"] == results["second"]
    assert _stored_rows(app) == 1
