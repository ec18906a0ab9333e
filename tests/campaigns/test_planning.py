"""Plan and explain: exclusions by reason (waterfall), volumes, holdout, and read-only-ness."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from engine import planning, sampling
from engine.app import App
from engine.db.models import (
    Base,
    CampaignRun,
    Contact,
    Enrollment,
    Participant,
    Program,
    Suppression,
)
from engine.errors import NotFoundError
from engine.sending.outbox import resolve
from engine.testing.fakes import (
    make_consent,
    make_event,
    make_outbox_message,
    make_participant,
    make_run,
)

from .helpers import TEST_NOW, definition, insert_members, unit

DAY = timedelta(days=1)

CAMPAIGN = dict(
    exclusions=[{"field": "tier", "eq": "staff"}],
    frequency_cap={"max": 2, "per": "7d"},
    steps=[
        {"id": "email-1", "channel": "email", "template": "welcome"},
        {"id": "sms-1", "channel": "sms", "template": "nudge", "delay": "3d"},
    ],
)


def _suppress(s: Any, address: str, channel: str) -> None:
    s.add(
        Suppression(
            channel=channel,
            address=address,
            address_hash=f"h-{channel}-{address}",
            reason="opt_out",
            source="test",
            created_at=TEST_NOW,
        )
    )


def _run(s: Any, program: Program, key: str, status: str) -> CampaignRun:
    run = CampaignRun(
        campaign="test-campaign",
        program_id=program.id,
        definition_hash="x",
        definition_source="x",
        fire_key=key,
        status=status,
        launched_at=TEST_NOW - 60 * DAY,
    )
    s.add(run)
    s.flush()
    return run


def _enroll(s: Any, run: CampaignRun, participant: Participant, state: str) -> None:
    s.add(
        Enrollment(
            run_id=run.id,
            campaign=run.campaign,
            participant_id=participant.id,
            group="treatment",
            enrolled_at=run.launched_at,
            state=state,
            next_action_at=None,
        )
    )


@pytest.fixture
def scenario(app: App, program: Program) -> dict[str, str]:
    """One member per exclusion reason, plus eligible ones; returns name -> external id."""
    with unit(app) as s:

        def member(name: str, **fields: Any) -> Participant:
            fields.setdefault("external_id", name)
            return make_participant(s, program, at=TEST_NOW, **fields)

        member("staff", tier="staff", email="staff@example.com")
        staff_supp = member("staff_and_suppressed", tier="staff", phone=None)
        _suppress(s, staff_supp.email or "", "email")
        supp = member("suppressed", email="supp@example.com", phone=None)
        _suppress(s, "supp@example.com", "email")
        supp_all = member("suppressed_all", email="all@example.com", phone=None)
        _suppress(s, "all@example.com", "all")
        member("no_address", email=None, phone=None)
        optout = member("email_opted_out")
        make_consent(s, optout, channel="email", status="opted_out", at=TEST_NOW)
        sms_ok = member("sms_only", email=None)
        make_consent(s, sms_ok, channel="sms", status="opted_in", at=TEST_NOW)
        conv = member("converted")
        make_event(s, conv, type="login", occurred_at=TEST_NOW - 10 * DAY)
        old_conv = member("converted_long_ago")  # outside the 30d goal window: eligible
        make_event(s, old_conv, type="login", occurred_at=TEST_NOW - 40 * DAY)
        capped = member("capped")
        for days in (1, 3):
            s.add(
                Contact(
                    participant_id=capped.id,
                    channel="email",
                    occurred_at=TEST_NOW - days * DAY,
                    kind="message",
                )
            )
        global_capped = member("global_capped")
        s.add(
            Contact(
                participant_id=global_capped.id,
                channel="sms",
                occurred_at=TEST_NOW - 20 * DAY,
                kind="message",
            )
        )
        active_run = _run(s, program, "2026-01-01T14:00:00+00:00", "active")
        done_run = _run(s, program, "2025-12-01T14:00:00+00:00", "completed")
        _enroll(s, active_run, member("enrolled"), "active")
        _enroll(s, done_run, member("been_before"), "completed")
        member("inactive", status="inactive")
        member("ok1")
        member("ok2")
        del supp, supp_all
    return {}


GLOBAL = planning.GlobalCap(max=1, per=timedelta(days=30))


def test_plan_counts_every_exclusion_by_reason(
    app: App, program: Program, scenario: dict[str, str]
) -> None:
    loaded = definition(**CAMPAIGN)
    with unit(app) as s:
        report = planning.plan(s, loaded, at=TEST_NOW, global_cap=GLOBAL)
    counts = {e.reason: e.count for e in report.exclusions}
    assert counts == {
        "exclusions[0]": 2,  # staff, staff_and_suppressed (counted once, first reason)
        "suppressed": 2,  # suppressed, suppressed_all
        "no_consent": 2,  # no_address, email_opted_out (no SMS opt-in either)
        "converted": 1,
        "frequency_cap": 2,  # capped (campaign cap), global_capped (global cap)
        "already_enrolled": 1,
        "reentry": 1,
    }
    assert [e.reason for e in report.exclusions] == list(counts)  # the fixed order
    assert report.audience == 15  # every active member; "inactive" is not in it
    assert report.eligible == 4  # sms_only, converted_long_ago, ok1, ok2
    assert (report.treatment, report.holdout) == (4, 0)
    assert report.reachable == {"email": 3, "sms": 1}
    assert [(v.step_id, v.channel, v.projected) for v in report.steps] == [
        ("email-1", "email", 3),
        ("sms-1", "sms", 1),
    ]
    assert {m.external_id for m in report.sample} == {
        "sms_only",
        "converted_long_ago",
        "ok1",
        "ok2",
    }
    assert all(m.values == {"status = active": "active"} for m in report.sample)
    assert report.fire_key == "once" and report.existing_run_id is None


def test_default_global_cap_comes_from_settings(app: App, scenario: dict[str, str]) -> None:
    loaded = definition(**CAMPAIGN)
    with unit(app) as s:
        report = planning.plan(
            s, loaded, at=TEST_NOW, global_cap=planning.GlobalCap.from_settings(app.settings)
        )
    # With the default global cap (4 per 7d) one contact 20 days ago caps nobody.
    assert {e.reason: e.count for e in report.exclusions}["frequency_cap"] == 1


def test_reentry_after_a_gap(app: App, program: Program) -> None:
    with unit(app) as s:
        recent = make_participant(s, program, at=TEST_NOW, external_id="recent")
        old = make_participant(s, program, at=TEST_NOW, external_id="old")
        run = _run(s, program, "old", "completed")
        _enroll(s, run, recent, "completed")
        s.flush()
        run2 = _run(s, program, "older", "completed")
        s.add(
            Enrollment(
                run_id=run2.id,
                campaign="test-campaign",
                participant_id=old.id,
                group="holdout",
                enrolled_at=TEST_NOW - 100 * DAY,
                state="completed",
            )
        )
    loaded = definition(reentry={"after": "90d"})
    with unit(app) as s:
        report = planning.plan(s, loaded, at=TEST_NOW)
    assert {e.reason: e.count for e in report.exclusions}["reentry"] == 1
    assert [m.external_id for m in report.sample] == ["old"]


def _table_counts(app: App) -> dict[str, int]:
    with unit(app) as s:
        return {
            t.name: int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }


def test_plan_and_explain_change_nothing(app: App, scenario: dict[str, str]) -> None:
    before = _table_counts(app)
    loaded = definition(**CAMPAIGN)
    with app.sessions() as s, s.begin():
        planning.plan(s, loaded, at=TEST_NOW)
        planning.explain(s, loaded, "ok1", at=TEST_NOW)
        assert not (s.new or s.dirty or s.deleted)
    assert _table_counts(app) == before


def test_explain_shows_each_check_and_values(app: App, scenario: dict[str, str]) -> None:
    loaded = definition(**CAMPAIGN)
    with unit(app) as s:
        capped = planning.explain(s, loaded, "capped", at=TEST_NOW, global_cap=GLOBAL)
        ok = planning.explain(s, loaded, "ok1", at=TEST_NOW, global_cap=GLOBAL)
        inactive = planning.explain(s, loaded, "inactive", at=TEST_NOW, global_cap=GLOBAL)
        supp = planning.explain(s, loaded, "suppressed", at=TEST_NOW, global_cap=GLOBAL)
        enrolled = planning.explain(s, loaded, "enrolled", at=TEST_NOW, global_cap=GLOBAL)
    assert capped.verdict.startswith("excluded: frequency_cap")
    cap = next(c for c in capped.exclusions if c.reason == "frequency_cap")
    assert cap.excluded and cap.actual == {"max 2 per 1w": 2, "max 1 per 30d": 2}
    assert ok.verdict == "would be enrolled in treatment" and ok.group == "treatment"
    assert not any(c.excluded for c in ok.exclusions)
    assert ok.audience.passed and ok.audience.actual == "active"
    assert inactive.verdict == "not in the audience"
    assert inactive.audience.actual == "inactive" and not inactive.in_audience
    check = {c.reason: c for c in supp.exclusions}
    assert check["suppressed"].excluded
    assert check["suppressed"].actual["email"] == ["email (opt_out)"]
    assert check["no_consent"].actual["sms"]["address"] is None
    run_info = {c.reason: c for c in enrolled.exclusions}["already_enrolled"]
    assert run_info.excluded and run_info.actual[0]["run_status"] == "active"


def test_explain_unknown_member(app: App, scenario: dict[str, str]) -> None:
    with unit(app) as s, pytest.raises(NotFoundError, match="no participant 'nobody'"):
        planning.explain(s, definition(), "nobody", at=TEST_NOW)


def test_plan_refuses_an_unknown_program(app: App, program: Program) -> None:
    with unit(app) as s, pytest.raises(NotFoundError, match="no program 'nope'"):
        planning.plan(s, definition(program="nope"), at=TEST_NOW)


def test_holdout_is_deterministic_and_close_to_the_share(app: App, program: Program) -> None:
    n = 3000
    insert_members(app, program, n)
    loaded = definition(holdout_percent=12.5)
    salt = planning.holdout_salt("test-campaign")
    with unit(app) as s:
        report = planning.plan(s, loaded, at=TEST_NOW, sample_size=0)
        bucket = planning.holdout_bucket_sql(Participant.sample_key, salt)
        sql_buckets = dict(s.execute(select(Participant.external_id, bucket)).all())
    # SQL and Python agree on every member, so every database puts them in the same group.
    ids = [f"M{i:05d}" for i in range(n)]
    assert sql_buckets == {
        i: sampling.bucket(sampling.sample_key(program.key, i), salt) for i in ids
    }
    expected = sum(1 for b in sql_buckets.values() if b < 1250)
    assert report.holdout == expected
    assert report.treatment + report.holdout == n
    assert abs(report.holdout / n - 0.125) < 0.02


def test_an_unknown_message_counts_toward_the_cap_until_settled(app: App, program: Program) -> None:
    """A message left ``unknown`` may have reached the member: plan, explain (and launch,
    which shares plan's SQL) count it as a contact until it is settled."""
    with unit(app) as s:
        member = make_participant(s, program, at=TEST_NOW, external_id="lost")
        other = make_run(s, program, at=TEST_NOW - DAY, campaign="other")
        lost = make_outbox_message(s, other, member, at=TEST_NOW - DAY, status="unknown")
        # Long ago: outside the 30-day window, not counted.
        old = make_outbox_message(
            s, other, member, at=TEST_NOW - 40 * DAY, step_id="email-0", status="unknown"
        )
        del old
    loaded = definition()

    def check() -> tuple[int, dict[str, int]]:
        with unit(app) as s:
            report = planning.plan(s, loaded, at=TEST_NOW, global_cap=GLOBAL)
            explained = planning.explain(s, loaded, "lost", at=TEST_NOW, global_cap=GLOBAL)
        counts = {e.reason: e.count for e in report.exclusions}
        cap = next(c for c in explained.exclusions if c.reason == "frequency_cap")
        assert cap.excluded == (counts["frequency_cap"] == 1)
        return counts["frequency_cap"], cap.actual

    assert check() == (1, {"max 1 per 30d": 1})
    with unit(app) as s:
        resolve(s, lost.uid, "failed", at=TEST_NOW)
    assert check() == (0, {"max 1 per 30d": 0})


def test_an_unknown_message_settled_as_sent_counts_once(app: App, program: Program) -> None:
    with unit(app) as s:
        member = make_participant(s, program, at=TEST_NOW, external_id="lost")
        other = make_run(s, program, at=TEST_NOW - DAY, campaign="other")
        lost = make_outbox_message(s, other, member, at=TEST_NOW - DAY, status="unknown")
    loaded = definition()
    cap = planning.GlobalCap(max=2, per=timedelta(days=30))
    with unit(app) as s:
        resolve(s, lost.uid, "sent", at=TEST_NOW)
    with unit(app) as s:
        explained = planning.explain(s, loaded, "lost", at=TEST_NOW, global_cap=cap)
        report = planning.plan(s, loaded, at=TEST_NOW, global_cap=cap)
    check = next(c for c in explained.exclusions if c.reason == "frequency_cap")
    assert check.actual == {"max 2 per 30d": 1} and not check.excluded
    assert report.eligible == 1
