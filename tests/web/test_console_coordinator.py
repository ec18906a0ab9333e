"""The coordinator's switches over HTTP: runs paused, resumed and cancelled (with the
confirmation step) and messages of unknown fate settled, one or a run's at once, by the same
engine functions as `campaign runs` and `campaign outbox resolve`, with their refusals and an
audit row each. Who may do what, and a POST without the CSRF token, are tried too; each test
checks what the database holds afterwards."""

from __future__ import annotations

from console_helpers import Browser, add_console_user, error_text, make_world, unit
from sqlalchemy import select

from engine.app import App
from engine.db.models import CampaignRun, ConsoleAuditEvent, OutboxMessage
from engine.testing.fakes import make_outbox_message, make_participant, make_program, make_run
from engine.web import coordinator


def _people(app: App) -> None:
    add_console_user(app, "cody", role="coordinator")
    add_console_user(app, "mia", role="manager")
    add_console_user(app, "sam", role="supervisor")


def _as(app: App, login: str) -> Browser:
    browser = Browser(app)
    browser.sign_in(login)
    return browser


def _status(app: App, run_id: int) -> str:
    with app.sessions() as s:
        run = s.get(CampaignRun, run_id)
        assert run is not None
        return run.status


def _audit(app: App) -> list[tuple[str, str, str | None]]:
    with app.sessions() as s:
        return [
            (e.event, e.login, e.detail)
            for e in s.scalars(
                select(ConsoleAuditEvent)
                .where(
                    ConsoleAuditEvent.event.like("run_%") | ConsoleAuditEvent.event.like("outbox%")
                )
                .order_by(ConsoleAuditEvent.id)
            )
        ]


def _unknown(app: App, n: int, *, campaign: str = "mailer") -> tuple[int, list[int]]:
    """A run with ``n`` emails of unknown fate: the run's id and the messages' ids."""
    now = app.clock.now()
    with unit(app) as s:
        program = make_program(s, at=now)
        run = make_run(s, program, at=now, campaign=campaign)
        ids = [
            make_outbox_message(
                s, run, make_participant(s, program, at=now), at=now, status="unknown"
            ).id
            for _ in range(n)
        ]
        return run.id, ids


def _message_status(app: App, ids: list[int]) -> list[str]:
    with app.sessions() as s:
        return [s.get(OutboxMessage, i).status for i in ids]  # type: ignore[union-attr]


def test_coordinator_pauses_resumes_and_cancels_a_run(app: App) -> None:
    world = make_world(app)
    world.task(world.member())
    _people(app)
    run_id = world.run_id
    cody = _as(app, "cody")
    page = cody.get("/runs")
    assert page.status_code == 200 and f'id="pause-{run_id}"' in page.text

    paused = cody.post(f"/runs/{run_id}/pause", {"reason": "wrong offer"})
    assert paused.status_code == 200 and paused.url.path == "/runs"
    assert _status(app, run_id) == "paused"
    assert "active -&gt; paused (wrong offer)" in paused.text  # the notice, from the audit
    assert f'id="resume-{run_id}"' in paused.text

    # Refused as `campaign runs pause` refuses: same words, nothing changes, no audit row.
    again = cody.post(f"/runs/{run_id}/pause", {})
    assert again.status_code == 409
    assert error_text(again.text) == (
        f"cannot pause: run {run_id} (renew-calls) is paused since 2026-03-02T15:00:00+00:00 "
        "(wrong offer) already"
    )
    resumed = cody.post(f"/runs/{run_id}/resume", {})
    assert resumed.status_code == 200 and _status(app, run_id) == "active"

    # Cancel asks first; the GET changes nothing.
    confirm = cody.get(f"/runs/{run_id}/cancel")
    assert confirm.status_code == 200 and "for good" in confirm.text
    assert _status(app, run_id) == "active"
    # A POST that does not come from that page's button is shown the page, nothing else.
    unconfirmed = cody.post(f"/runs/{run_id}/cancel", {"reason": "campaign withdrawn"})
    assert unconfirmed.status_code == 200 and 'id="confirm-cancel"' in unconfirmed.text
    assert _status(app, run_id) == "active"
    cancelled = cody.post(
        f"/runs/{run_id}/cancel", {"reason": "campaign withdrawn", "confirm": "yes"}
    )
    assert cancelled.status_code == 200 and _status(app, run_id) == "cancelled"
    assert "1 open call tasks closed" in cancelled.text
    refused = cody.post(f"/runs/{run_id}/resume", {})
    assert refused.status_code == 409 and "a cancelled run is final" in (
        error_text(refused.text) or ""
    )
    assert cody.post("/runs/99999/pause", {}).status_code == 409
    assert cody.get("/runs/99999/cancel").status_code == 404

    events = _audit(app)
    assert [(e, login) for e, login, _ in events] == [
        (coordinator.RUN_PAUSED, "cody"),
        (coordinator.RUN_RESUMED, "cody"),
        (coordinator.RUN_CANCELLED, "cody"),
    ]
    assert events[2][2] is not None and "campaign withdrawn" in events[2][2]


def test_coordinator_settles_unknown_messages_one_and_a_runs(app: App) -> None:
    _people(app)
    run_id, ids = _unknown(app, 4)
    other_run, other_ids = _unknown(app, 2, campaign="other")
    cody = _as(app, "cody")
    page = cody.get(f"/outbox/unknown?run={run_id}")
    assert page.status_code == 200 and "4 message(s) of unknown fate in run" in page.text
    assert f'data-message="{other_ids[0]}"' not in page.text

    one = cody.post("/outbox/unknown/resolve", {"message": str(ids[0]), "action": "sent"})
    assert one.status_code == 200 and f"outbox message {ids[0]}: unknown -&gt; sent" in one.text
    twice = cody.post("/outbox/unknown/resolve", {"message": str(ids[0]), "action": "resend"})
    assert twice.status_code == 409
    assert error_text(twice.text) == (
        f"outbox message {ids[0]} is sent; it cannot be marked queued (only an unknown message "
        "is settled this way: see `campaign outbox unknown`)"
    )
    bad = cody.post("/outbox/unknown/resolve", {"message": str(ids[1]), "action": "delete"})
    assert bad.status_code == 409

    # In bulk for the run: refused without the confirmation box, then done.
    unconfirmed = cody.post("/outbox/unknown/resolve-run", {"run": str(run_id), "action": "resend"})
    assert unconfirmed.status_code == 409
    assert _message_status(app, ids) == ["sent", "unknown", "unknown", "unknown"]
    bulk = cody.post(
        "/outbox/unknown/resolve-run",
        {"run": str(run_id), "action": "resend", "confirm": "yes", "note": "provider outage"},
    )
    assert bulk.status_code == 200
    assert f"run {run_id}: 3 message(s) of unknown fate -&gt; queued" in bulk.text
    assert _message_status(app, ids) == ["sent", "queued", "queued", "queued"]
    assert _message_status(app, other_ids) == ["unknown", "unknown"]  # another run's: untouched
    missing = cody.post(
        "/outbox/unknown/resolve-run", {"run": "99999", "action": "failed", "confirm": "yes"}
    )
    assert missing.status_code == 409
    assert error_text(missing.text) == "no campaign run 99999; see `campaign runs list`"
    assert [e for e, _, _ in _audit(app)] == [
        coordinator.OUTBOX_RESOLVED,
        coordinator.OUTBOX_RESOLVED_RUN,
    ]
    assert other_run != run_id


def test_unknown_messages_come_a_page_at_a_time(app: App) -> None:
    _people(app)
    _run_id, ids = _unknown(app, coordinator.PAGE + 3)
    sam = _as(app, "sam")
    first = sam.get("/outbox/unknown")
    assert first.text.count("data-message=") == coordinator.PAGE
    assert f'after={ids[coordinator.PAGE - 1]}"' in first.text
    second = sam.get(f"/outbox/unknown?after={ids[coordinator.PAGE - 1]}")
    assert second.text.count("data-message=") == 3
    assert 'id="next-page"' not in second.text


def test_supervisors_and_managers_read_only_agents_nothing(app: App) -> None:
    world = make_world(app)
    world.agent("ana")
    add_console_user(app, "ana")
    _people(app)
    run_id = world.run_id
    _unknown_run, ids = _unknown(app, 1)
    for login in ("mia", "sam"):
        reader = _as(app, login)
        runs = reader.get("/runs")
        assert runs.status_code == 200 and f'data-run="{run_id}"' in runs.text
        assert f'id="pause-{run_id}"' not in runs.text and "Read only" in runs.text
        unknown = reader.get("/outbox/unknown")
        assert unknown.status_code == 200 and f'id="sent-{ids[0]}"' not in unknown.text
        # A manager cannot pause a run (nor anything else), even with a valid token.
        assert reader.post(f"/runs/{run_id}/pause", {}).status_code == 403
        assert reader.post(f"/runs/{run_id}/cancel", {}).status_code == 403
        assert reader.get(f"/runs/{run_id}/cancel").status_code == 403
        assert (
            reader.post("/outbox/unknown/resolve", {"message": str(ids[0]), "action": "sent"})
        ).status_code == 403
    agent = _as(app, "ana")
    for path in ("/runs", "/outbox/unknown", f"/runs/{run_id}/cancel"):
        assert agent.get(path).status_code == 403, path
    assert agent.post(f"/runs/{run_id}/pause", {}).status_code == 403
    assert agent.post(f"/runs/{run_id}/resume", {}).status_code == 403
    assert (
        agent.post(
            "/outbox/unknown/resolve-run", {"run": str(run_id), "action": "sent", "confirm": "yes"}
        ).status_code
        == 403
    )
    anonymous = Browser(app)
    anonymous.get("/login")
    assert anonymous.post(f"/runs/{run_id}/pause", {}).status_code == 401
    assert _status(app, run_id) == "active" and _message_status(app, ids) == ["unknown"]
    assert _audit(app) == []


def test_posts_without_the_csrf_token_change_nothing(app: App) -> None:
    world = make_world(app)
    _people(app)
    run_id = world.run_id
    _other, ids = _unknown(app, 1)
    cody = _as(app, "cody")
    for token in ("", "forged"):
        assert cody.post(f"/runs/{run_id}/pause", {}, csrf=token).status_code == 403
        assert cody.post(f"/runs/{run_id}/cancel", {}, csrf=token).status_code == 403
        assert (
            cody.post(
                "/outbox/unknown/resolve", {"message": str(ids[0]), "action": "sent"}, csrf=token
            ).status_code
            == 403
        )
    assert _status(app, run_id) == "active" and _message_status(app, ids) == ["unknown"]
    assert _audit(app) == []
