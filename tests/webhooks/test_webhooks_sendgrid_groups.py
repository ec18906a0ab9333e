"""SendGrid suppression groups: ``group_resubscribe`` lifts the email opt-out that SendGrid's
group unsubscribes made, and nothing else; signed batches through the real ASGI app, on SQLite
and PostgreSQL, with the groups left read back from ``email_group_unsubscribes``. The decisions
are pure and tested on their own."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from campaigns.helpers import definition
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select
from webhook_helpers import Hooks, World

from cli import cli
from engine import planning
from engine.app import App, build_app
from engine.consent.suppressions import add_suppression, email_hash
from engine.consent.unsubscribe import signer_for
from engine.db import migrate
from engine.db.models import NO_GROUP, EmailGroupUnsubscribe, Participant, Suppression
from engine.db.session import make_engine, take_write_lock
from engine.settings import Settings
from engine.webhooks import sendgrid_groups
from engine.webhooks.app import WebhookApp
from engine.webhooks.sendgrid_groups import (
    SOURCE,
    Resubscribe,
    group_id,
    judge_resubscribe,
    judge_unsubscribe,
)

T0 = 1772463600  # 2026-03-02 15:00 UTC, the test clock
_ids = itertools.count(1)


def group_event(kind: str, member: Participant, group: Any = 42, *, at: int) -> dict[str, Any]:
    """A group event as SendGrid sends it from its subscription-preferences page."""
    return {
        "event": kind,
        "sg_event_id": f"grp-{next(_ids)}-{kind}",
        "timestamp": at,
        "email": member.email,
        "asm_group_id": group,
    }


def unsub(member: Participant, group: Any = 42, *, at: int = T0 - 3600) -> dict[str, Any]:
    return group_event("group_unsubscribe", member, group, at=at)


def resub(member: Participant, group: Any = 42, *, at: int = T0 - 60) -> dict[str, Any]:
    return group_event("group_resubscribe", member, group, at=at)


def send(hooks: Hooks, *events: dict[str, Any]) -> dict[str, Any]:
    response = hooks.sendgrid(list(events))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def when(sg_event: dict[str, Any]) -> datetime:
    """The event's time as SendGrid sent it."""
    return datetime.fromtimestamp(sg_event["timestamp"], UTC)


def email_entry(world: World, member: Participant) -> tuple[str, str] | None:
    """(reason, source) of the member's email suppression, or None."""
    address = (member.email or "").lower()
    found = [(r, s) for c, a, r, s in world.suppressions() if c == "email" and a == address]
    return found[0] if found else None


def groups_left(app: App, email: str) -> dict[int, datetime]:
    """group -> left_at of the groups on record for the address."""
    with app.sessions() as session:
        rows = session.execute(
            select(EmailGroupUnsubscribe.group_id, EmailGroupUnsubscribe.left_at).where(
                EmailGroupUnsubscribe.address_hash == email_hash(email)
            )
        )
        return {group: left_at for group, left_at in rows}


def trail(world: World, sg_event: dict[str, Any]) -> dict[str, Any]:
    """What the event's message_events row records of its effect on the suppression list."""
    (row,) = [e for e in world.events() if e.provider_event_id == sg_event["sg_event_id"]]
    recorded: dict[str, Any] = row.detail["suppression"]
    return recorded


def verdict(world: World, member: Participant) -> str:
    """Whether ``plan``/``launch`` would enroll the member in an email campaign now."""
    with world.app.sessions() as session:
        return planning.explain(session, definition(), member.external_id, at=world.at).verdict


@pytest.fixture
def campaign(wapp: App, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ``campaign`` command a coordinator runs, on the webhooks' database."""
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", wapp.settings.database_url)

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


# --------------------------------------------------------------------------- end to end


def test_resubscribe_lifts_the_group_opt_out_and_the_member_is_eligible_again(
    world: World, hooks: Hooks
) -> None:
    member = world.participant()
    email = member.email or ""
    leaving = unsub(member)
    assert send(hooks, leaving)["suppressions"] == 1
    assert email_entry(world, member) == ("opt_out", SOURCE)
    assert groups_left(world.app, email) == {42: when(leaving)}
    assert verdict(world, member).startswith("excluded: suppressed")

    back = resub(member)
    assert send(hooks, back)["lifted"] == 1
    assert email_entry(world, member) is None
    assert groups_left(world.app, email) == {}
    assert verdict(world, member) == "would be enrolled in treatment"
    recorded = trail(world, back)
    assert recorded["outcome"] == "lifted"
    assert recorded["entry"]["source"] == SOURCE and recorded["entry"]["reason"] == "opt_out"
    assert recorded["entry"]["note"] == "SendGrid group unsubscribe (group 42)"


def test_resubscribe_lifts_only_what_group_unsubscribes_made(world: World, hooks: Hooks) -> None:
    """One batch of resubscribes: the member who left only the group is back; every member
    who also (before or after) opted out another way keeps that suppression as it was."""
    only_group = world.participant()
    link_first, bounced_first, manual_first = (world.participant() for _ in range(3))
    link_after, spam_after, global_after = (world.participant() for _ in range(3))
    with world.app.sessions() as session, session.begin():
        signer = signer_for(session, world.app.settings)
        add_suppression(session, manual_first.email or "", "email", "manual", "cli", at=world.at)
    assert hooks.client.post(f"/u/{signer.sign(link_first.id, 'email')}").status_code == 200
    send(hooks, group_event("bounce", bounced_first, at=T0 - 7200) | {"type": "bounce"})
    everyone = [only_group, link_first, bounced_first, manual_first]
    everyone += [link_after, spam_after, global_after]
    send(hooks, *(unsub(member) for member in everyone))
    # Opt-outs of other kinds after the group unsubscribe.
    assert hooks.client.post(f"/u/{signer.sign(link_after.id, 'email')}").status_code == 200
    send(
        hooks,
        group_event("spamreport", spam_after, at=T0 - 1800),
        group_event("unsubscribe", global_after, at=T0 - 1800),
    )

    summary = send(hooks, *(resub(member) for member in everyone))

    assert summary["lifted"] == 1
    assert email_entry(world, only_group) is None
    assert email_entry(world, link_first) == ("opt_out", "unsubscribe_link")
    assert email_entry(world, bounced_first) == ("bounce", "sendgrid_bounce")
    assert email_entry(world, manual_first) == ("manual", "cli")
    assert email_entry(world, link_after) == ("opt_out", "unsubscribe_link")
    assert email_entry(world, spam_after) == ("spam_report", "sendgrid_spamreport")
    assert email_entry(world, global_after) == ("opt_out", "sendgrid_unsubscribe")
    for member in everyone[1:]:
        assert verdict(world, member).startswith("excluded: suppressed")
        assert groups_left(world.app, member.email or "") == {}  # back in the group all the same


def test_resubscribe_leaves_an_sms_stop_and_an_old_entry_alone(world: World, hooks: Hooks) -> None:
    """A STOP by text is the SMS channel's; an email entry a group unsubscribe wrote before
    groups were recorded (no group of it on record) cannot be told from one it took over from
    another opt-out, so it stays."""
    texter, legacy = world.participant(), world.participant()
    send(hooks, unsub(texter))
    stop = {
        "MessageSid": "SM" + "5" * 32,
        "AccountSid": "AC" + "1" * 32,
        "From": texter.phone or "",
        "To": "+15005550006",
        "Body": "STOP",
        "NumMedia": "0",
    }
    assert hooks.inbound(stop).status_code == 200
    with world.app.sessions() as session, session.begin():
        add_suppression(session, legacy.email or "", "email", "opt_out", SOURCE, at=world.at)

    old = resub(legacy)
    assert send(hooks, resub(texter), old)["lifted"] == 1

    assert email_entry(world, texter) is None
    assert ("sms", texter.phone, "opt_out", "sms_stop") in world.suppressions()
    assert email_entry(world, legacy) == ("opt_out", SOURCE)
    assert trail(world, old)["outcome"] == "kept"


def test_a_resubscribe_older_than_the_unsubscribe_lifts_nothing(world: World, hooks: Hooks) -> None:
    member = world.participant()
    leaving = unsub(member, at=T0 - 600)
    send(hooks, leaving)
    stale = resub(member, at=T0 - 3600)  # reported late: the member left after it
    assert send(hooks, stale)["lifted"] == 0
    assert email_entry(world, member) == ("opt_out", SOURCE)
    assert groups_left(world.app, member.email or "") == {42: when(leaving)}
    assert trail(world, stale)["outcome"] == "kept"
    assert "older than leaving group 42" in trail(world, stale)["why"]
    # The same second is not "after" either.
    assert send(hooks, resub(member, at=T0 - 600))["lifted"] == 0
    # A resubscribe after it does lift it.
    assert send(hooks, resub(member, at=T0 - 60))["lifted"] == 1
    assert email_entry(world, member) is None


def test_replays_and_a_later_unsubscribe(world: World, hooks: Hooks) -> None:
    """Lifted, then left again: the replayed batch of the first resubscribe is a duplicate,
    and the same resubscribe re-sent under a new event id is older than the new unsubscribe:
    neither lifts it. An older unsubscribe re-sent late leaves the latest time on record."""
    member = world.participant()
    first = resub(member, at=T0 - 1800)
    leaving = unsub(member, at=T0 - 3600)
    send(hooks, leaving)
    assert send(hooks, first)["lifted"] == 1
    again = unsub(member, at=T0 - 600)
    send(hooks, again)
    assert email_entry(world, member) == ("opt_out", SOURCE)

    replay = send(hooks, first)
    assert replay["duplicates"] == 1 and replay["lifted"] == 0
    resent = dict(first, sg_event_id="grp-resent")
    assert send(hooks, resent)["lifted"] == 0
    send(hooks, dict(leaving, sg_event_id="grp-resent-unsub"))
    assert groups_left(world.app, member.email or "") == {42: when(again)}
    assert email_entry(world, member) == ("opt_out", SOURCE)
    # A fresh resubscribe lifts it; the unsubscribe replayed after that changes nothing.
    assert send(hooks, resub(member, at=T0 - 30))["lifted"] == 1
    assert send(hooks, again)["duplicates"] == 1
    assert email_entry(world, member) is None
    assert groups_left(world.app, member.email or "") == {}


def test_every_group_left_must_be_rejoined(world: World, hooks: Hooks) -> None:
    member = world.participant()
    send(hooks, unsub(member, 42, at=T0 - 3600), unsub(member, 43, at=T0 - 3000))
    narrowed = resub(member, 42)
    assert send(hooks, narrowed)["lifted"] == 0
    assert trail(world, narrowed)["outcome"] == "narrowed"
    assert trail(world, narrowed)["why"] == "still unsubscribed from group 43"
    assert set(groups_left(world.app, member.email or "")) == {43}
    assert email_entry(world, member) == ("opt_out", SOURCE)
    assert verdict(world, member).startswith("excluded: suppressed")
    # Rejoining a group it never left through SendGrid, or naming none, changes nothing.
    assert send(hooks, resub(member, 99), resub(member, None))["lifted"] == 0
    assert send(hooks, resub(member, "43"))["lifted"] == 1
    assert verdict(world, member) == "would be enrolled in treatment"


def test_an_unsubscribe_naming_no_group_is_never_lifted(world: World, hooks: Hooks) -> None:
    member = world.participant()
    send(hooks, unsub(member, None), unsub(member, 42))
    assert set(groups_left(world.app, member.email or "")) == {NO_GROUP, 42}
    last = resub(member, 42)
    assert send(hooks, last, resub(member, None))["lifted"] == 0
    assert trail(world, last)["why"] == "still unsubscribed from a group not named"
    assert email_entry(world, member) == ("opt_out", SOURCE)


def test_a_coordinators_suppress_add_over_a_group_entry_is_never_lifted(
    world: World, hooks: Hooks, campaign: Any
) -> None:
    """``campaign suppress add`` rewrites the entry (its note too); the groups left are still
    on record, and the resubscribe strikes its group from them but leaves the entry, which is
    the coordinator's now."""
    member = world.participant()
    email = member.email or ""
    leaving = unsub(member)
    send(hooks, leaving)
    campaign(
        "suppress", "add", email, "--channel", "email", "--reason", "opt_out", "--note", "by phone"
    )
    assert email_entry(world, member) == ("opt_out", "cli")
    assert groups_left(world.app, email) == {42: when(leaving)}

    back = resub(member)
    assert send(hooks, back)["lifted"] == 0
    assert email_entry(world, member) == ("opt_out", "cli")
    assert trail(world, back)["outcome"] == "kept"
    assert trail(world, back)["why"] == "suppressed another way (opt_out, source cli)"
    assert trail(world, back)["entry"]["note"] == "by phone"
    assert groups_left(world.app, email) == {}
    assert verdict(world, member).startswith("excluded: suppressed")


def test_a_group_unsubscribe_under_another_suppression_is_still_on_record(
    world: World, hooks: Hooks, campaign: Any
) -> None:
    """The bounce stays as it was, and the group left is recorded: once a coordinator has
    removed the bounce, rejoining a later group does not lift the entry while this one is
    still left."""
    member = world.participant()
    email = member.email or ""
    send(hooks, group_event("bounce", member, at=T0 - 7200) | {"type": "bounce"})
    leaving = unsub(member, 42)
    send(hooks, leaving)
    assert email_entry(world, member) == ("bounce", "sendgrid_bounce")
    assert groups_left(world.app, email) == {42: when(leaving)}

    campaign("suppress", "remove", email, "--channel", "email")
    send(hooks, unsub(member, 43, at=T0 - 1800))
    assert email_entry(world, member) == ("opt_out", SOURCE)
    narrowed = resub(member, 43)
    assert send(hooks, narrowed)["lifted"] == 0
    assert trail(world, narrowed)["outcome"] == "narrowed"
    assert send(hooks, resub(member, 42))["lifted"] == 1


def test_an_erasure_forgets_the_groups_left(world: World, hooks: Hooks, campaign: Any) -> None:
    """An erasure keeps the address's hash and nothing more: its groups go with it, and a
    group unsubscribe that arrives afterwards records none."""
    member, other = world.participant(), world.participant()
    send(hooks, unsub(member, 42), unsub(member, 43), unsub(other, 42))
    campaign("suppress", "add", member.email or "", "--channel", "email", "--reason", "erasure")
    assert groups_left(world.app, member.email or "") == {}
    assert set(groups_left(world.app, other.email or "")) == {42}

    send(hooks, unsub(member, 44, at=T0 - 600))
    assert groups_left(world.app, member.email or "") == {}
    assert send(hooks, resub(member, 42))["lifted"] == 0
    assert [r for c, _, r, _ in world.suppressions() if c == "email"].count("erasure") == 1


def test_concurrent_resubscribes_take_turns(wapp: App, world: World, hooks: Hooks) -> None:
    """Two resubscribes to the member's two groups at once: the second waits for the first
    (the entry and the rows are locked), sees its group struck, and lifts the entry. Without
    the locks both would see the other group still left, and neither would lift it."""
    member = world.participant()
    email = member.email or ""
    send(hooks, unsub(member, 42), unsub(member, 43))
    at = datetime.fromtimestamp(T0, UTC)
    second: list[Resubscribe] = []
    errors: list[BaseException] = []

    def rejoin_43() -> None:
        try:
            second.append(
                WebhookApp(wapp).transaction(
                    lambda session: sendgrid_groups.resubscribe(session, email, 43, at)
                )
            )
        except BaseException as exc:
            errors.append(exc)

    waiting = threading.Thread(target=rejoin_43)
    with wapp.sessions() as session, session.begin():
        take_write_lock(session)
        first = sendgrid_groups.resubscribe(session, email, 42, at)
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive(), "the second resubscribe did not wait for the first"
    waiting.join()

    assert errors == []
    assert (first.verdict.outcome, second[0].verdict.outcome) == ("narrowed", "lifted")
    assert email_entry(world, member) is None and groups_left(wapp, email) == {}


def test_entries_from_before_migration_0012_are_never_lifted(
    empty_database_url: str, clock: Any
) -> None:
    """Migration 0012 puts every group entry it finds under a group no resubscribe names: the
    group unsubscribes before it rewrote any entry to theirs, whatever opt-out it was."""
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine, "0011")
    created = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    with engine.begin() as connection:  # suppressions is as it was at 0011
        connection.execute(
            insert(Suppression),
            [
                {"channel": "email", "address": address, "address_hash": email_hash(address)}
                | {"reason": "opt_out", "source": source, "created_at": created}
                for address, source in (
                    ("old@example.com", SOURCE),
                    ("link@example.com", "unsubscribe_link"),
                )
            ],
        )
    migrate.upgrade(engine)
    engine.dispose()
    app = build_app(Settings(database_url=empty_database_url), clock=clock)
    try:
        assert groups_left(app, "old@example.com") == {NO_GROUP: created}
        assert groups_left(app, "link@example.com") == {}
        later = created + timedelta(days=1)
        with app.sessions() as session, session.begin():
            sendgrid_groups.unsubscribe(session, "old@example.com", 42, later, at=later)
            done = sendgrid_groups.resubscribe(
                session, "old@example.com", 42, later + timedelta(hours=1)
            )
        assert done.verdict.outcome == "narrowed"
        assert groups_left(app, "old@example.com") == {NO_GROUP: created}
        with app.sessions() as session:
            kept = select(Suppression.source).where(Suppression.address == "old@example.com")
            assert session.scalar(kept) == SOURCE
    finally:
        app.close()


# --------------------------------------------------------------------------- the pure rules

_instants = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2099, 12, 31),
    timezones=st.just(UTC),
)
_group_ids = st.one_of(st.integers(0, 50), st.just(NO_GROUP))
_entries = st.one_of(
    st.none(),
    st.just(("opt_out", SOURCE)),
    st.tuples(
        st.sampled_from(["opt_out", "bounce", "manual", "erasure"]),
        st.sampled_from([SOURCE, "cli", "unsubscribe_link", "sendgrid_unsubscribe"]),
    ),
)


def test_group_ids_are_sendgrids_integers() -> None:
    assert [group_id(v) for v in (42, "42", " 007 ", 0, 2**63 - 1)] == [42, 42, 7, 0, 2**63 - 1]
    rejected = (None, True, -1, 4.2, "x", "٤٢", [], "", "-1", 2**63, "9" * 5000)
    assert [group_id(v) for v in rejected] == [None] * len(rejected)


def test_judge_unsubscribe() -> None:
    assert judge_unsubscribe(None, erased=False) == "suppressed"
    assert judge_unsubscribe(("opt_out", SOURCE), erased=False) == "group_added"
    assert judge_unsubscribe(("opt_out", "cli"), erased=False) == "already_suppressed"
    assert judge_unsubscribe(("bounce", SOURCE), erased=False) == "already_suppressed"
    assert judge_unsubscribe(("erasure", "cli"), erased=True) == "erased"
    assert judge_unsubscribe(None, erased=True) == "erased"  # erased on all channels


def test_judge_resubscribe() -> None:
    at = datetime(2026, 3, 2, 15, tzinfo=UTC)
    groups = {42: at, 43: at}
    later = at + timedelta(seconds=1)
    group_entry = ("opt_out", SOURCE)
    kept = judge_resubscribe(("bounce", SOURCE), groups, 42, later)
    assert (kept.outcome, kept.rejoined) == ("kept", 42)  # back in the group, still bounced
    assert judge_resubscribe(("opt_out", "unsubscribe_link"), groups, 42, later).outcome == "kept"
    assert judge_resubscribe(group_entry, {}, 42, later).outcome == "kept"
    assert judge_resubscribe(group_entry, groups, None, later) == judge_resubscribe(
        group_entry, groups, NO_GROUP, later
    )
    assert judge_resubscribe(group_entry, groups, None, later).rejoined is None
    assert judge_resubscribe(group_entry, groups, 7, later).rejoined is None
    older = judge_resubscribe(group_entry, groups, 42, at)
    assert (older.outcome, older.rejoined) == ("kept", None)
    narrowed = judge_resubscribe(group_entry, groups, 42, later)
    assert (narrowed.outcome, narrowed.rejoined) == ("narrowed", 42)
    lifted = judge_resubscribe(group_entry, {7: at}, 7, later)
    assert (lifted.outcome, lifted.rejoined) == ("lifted", 7)
    gone = judge_resubscribe(None, {7: at}, 7, later)
    assert (gone.outcome, gone.rejoined) == ("not_suppressed", 7)


@given(
    entry=_entries,
    groups=st.dictionaries(_group_ids, _instants),
    group=st.one_of(st.none(), _group_ids),
    occurred_at=_instants,
)
def test_a_resubscribe_lifts_only_a_group_entry_once_every_group_is_rejoined(
    entry: tuple[str, str] | None,
    groups: dict[int, datetime],
    group: int | None,
    occurred_at: datetime,
) -> None:
    verdict = judge_resubscribe(entry, groups, group, occurred_at)
    left_at = groups.get(group) if group is not None else None
    # The row struck is the named group's, and only when the event is newer than leaving it.
    assert (verdict.rejoined is not None) == (
        group is not None and group != NO_GROUP and left_at is not None and occurred_at > left_at
    )
    assert verdict.rejoined in (None, group)
    if verdict.outcome == "lifted":
        assert entry == ("opt_out", SOURCE) and set(groups) == {group}
    if verdict.outcome == "narrowed":
        assert entry == ("opt_out", SOURCE) and verdict.rejoined is not None and len(groups) > 1
    assert (verdict.outcome == "not_suppressed") == (entry is None)
    if entry == ("opt_out", SOURCE) and verdict.rejoined is not None:
        assert verdict.outcome == ("lifted" if len(groups) == 1 else "narrowed")
