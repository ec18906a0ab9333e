"""/u/{token}: a GET never unsubscribes; a POST (and the RFC 8058 one-click POST) does."""

from __future__ import annotations

from webhook_helpers import Hooks, World

from engine.consent.unsubscribe import UnsubscribeSigner, signer_for


def signer(world: World) -> UnsubscribeSigner:
    with world.app.sessions() as session, session.begin():
        return signer_for(session, world.app.settings)


def test_get_shows_a_page_and_changes_nothing(world: World, hooks: Hooks) -> None:
    member = world.participant(email="Dana.Smith@Example.com")
    queued = world.message(member, status="queued")
    token = signer(world).sign(member.id, "email")
    for _ in range(3):  # link scanners fetch links, sometimes repeatedly
        response = hooks.client.get(f"/u/{token}")
        assert response.status_code == 200
        assert '<form method="post">' in response.text
        assert "D***@example.com" in response.text and "Loyalty Rewards" in response.text
        assert "http" not in response.text.split("<body", 1)[1]  # no external assets
    assert hooks.client.head(f"/u/{token}").status_code == 200
    assert world.suppressions() == []
    assert world.outbox(queued).status == "queued"


def test_one_click_post_suppresses_email_and_skips_the_next_email(
    world: World, hooks: Hooks
) -> None:
    member = world.participant()
    next_email = world.message(member, status="queued", run_id=world.run("renewal"))
    next_sms = world.message(member, status="queued", channel="sms")
    token = signer(world).sign(member.id, "email")
    response = hooks.client.post(
        f"/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert world.suppressions() == [
        ("email", (member.email or "").lower(), "opt_out", "unsubscribe_link")
    ]
    assert world.outbox(next_email).status == "skipped"
    assert world.outbox(next_email).status_reason == "suppressed"
    assert world.outbox(next_sms).status == "queued"
    # Pressing it again is harmless.
    assert hooks.client.post(f"/u/{token}").status_code == 200
    assert len(world.suppressions()) == 1


def test_page_is_localized(world: World, hooks: Hooks) -> None:
    spanish = world.participant(locale="es-MX")
    chinese = world.participant(locale="zh-Hant-TW")
    sign = signer(world)
    assert "Cancelar suscripción" in hooks.client.get(f"/u/{sign.sign(spanish.id)}").text
    assert 'lang="zh"' in hooks.client.get(f"/u/{sign.sign(chinese.id)}").text
    assert "您已退订" in hooks.client.post(f"/u/{sign.sign(chinese.id)}").text


def test_all_channels_token_suppresses_both_addresses_and_closes_call_tasks(
    world: World, hooks: Hooks
) -> None:
    member = world.participant()
    with world.app.sessions() as session, session.begin():
        from engine.db.models import CallTask

        session.add(
            CallTask(
                kind="follow_up",
                participant_id=member.id,
                status="open",
                due_at=world.at,
                created_at=world.at,
                updated_at=world.at,
            )
        )
    token = signer(world).sign(member.id, "all")
    assert hooks.client.post(f"/u/{token}").status_code == 200
    channels = {(s[0], s[1]) for s in world.suppressions()}
    assert channels == {("all", (member.email or "").lower()), ("all", member.phone)}
    (task,) = world.tasks()
    assert task.status == "closed" and task.close_reason == "suppressed"


def test_forged_or_altered_tokens_are_404_and_change_nothing(world: World, hooks: Hooks) -> None:
    member = world.participant()
    other = world.participant()
    good = signer(world).sign(member.id, "email")
    participant_id, channel, signature = good.split(".")
    forged = UnsubscribeSigner(b"k" * 32).sign(member.id, "email")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    for token in (
        forged,
        f"{other.id}.{channel}.{signature}",  # someone else's id, this signature
        f"{participant_id}.all.{signature}",  # a wider channel
        f"{participant_id}.{channel}.{flipped}",
        f"{participant_id}.{channel}",
        "nonsense",
        f"0{participant_id}.{channel}.{signature}",
        f"{participant_id}.{channel}.{signature}é",
        "9" * 40 + ".email.x",
    ):
        assert hooks.client.get(f"/u/{token}").status_code == 404, token
        assert hooks.client.post(f"/u/{token}").status_code == 404, token
    assert world.suppressions() == []


def test_token_of_a_deleted_participant_is_404(world: World, hooks: Hooks) -> None:
    token = signer(world).sign(987654, "email")
    assert hooks.client.post(f"/u/{token}").status_code == 404
    assert world.suppressions() == []
