"""Inbound SMS: opt-out keywords, resubscribe, help, and replies for an agent.

    STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT -> SMS suppression 'opt_out' (source
        'sms_stop') and one confirmation; a repeated STOP is answered with nothing
    START, YES, UNSTOP -> the 'opt_out' suppression is lifted (any other reason stays) and
        confirmed
    HELP, INFO -> the program's help text, and a 'help' case for an agent (engine/cases;
        a second HELP while it is open joins it)
    anything else -> recorded as a 'reply' against the participant; a member with an active
        case has it put in the case's history (the case is back on us, its follow-up task on
        a list); otherwise an open 'follow_up' call task, due now, for an agent (one at a
        time: while one is open, further replies are recorded against it)

A keyword is the whole message, in any case, with surrounding spaces (and a trailing '.' or
'!') ignored: "stop" and " Stop! " opt out, "please don't stop" is a reply. Each inbound
message is recorded once under its MessageSid: a retried webhook changes nothing and gets no
second confirmation. The sender is matched to participants by phone number across programs;
the program whose message they most recently received names itself in the answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.cases.hooks import RulesFor, after_inbound_sms
from engine.consent.opt_outs import existing_reason, lift_opt_out, participants_with, suppress
from engine.consent.provider_events import clean_detail, clean_text, record_event
from engine.db.models import CallTask, OutboxMessage, Participant, Program
from engine.errors import InputError
from engine.participants.validation import normalise_phone

PROVIDER = "twilio"
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
Keyword = Literal["stop", "start", "help"]
_DETAIL_KEYS = ("MessageSid", "From", "To", "NumMedia")

_TEXTS = {
    "en": {
        "stop": "{program}: you are unsubscribed and will receive no more text messages. "
        "Reply START to resubscribe.",
        "start": "{program}: you are resubscribed to text messages. Reply STOP to "
        "unsubscribe, HELP for help.",
        "help": "{program}: reply STOP to unsubscribe, START to resubscribe. "
        "Msg & data rates may apply.",
        "already": "{program}: you are already subscribed to text messages. Reply STOP to "
        "unsubscribe, HELP for help.",
    },
    "es": {
        "stop": "{program}: se ha dado de baja y no recibirá más mensajes de texto. "
        "Responda START para volver a suscribirse.",
        "start": "{program}: se ha vuelto a suscribir a los mensajes de texto. Responda STOP "
        "para darse de baja, HELP para obtener ayuda.",
        "help": "{program}: responda STOP para darse de baja, START para volver a "
        "suscribirse. Pueden aplicarse tarifas de mensajes y datos.",
        "already": "{program}: ya está suscrito a los mensajes de texto. Responda STOP para "
        "darse de baja, HELP para obtener ayuda.",
    },
    "zh": {
        "stop": "{program}：您已退订，将不再收到短信。回复 START 重新订阅。",
        "start": "{program}：您已重新订阅短信。回复 STOP 退订，回复 HELP 获取帮助。",
        "help": "{program}：回复 STOP 退订，回复 START 重新订阅。可能产生短信和数据费用。",
        "already": "{program}：您已订阅短信。回复 STOP 退订，回复 HELP 获取帮助。",
    },
}
DEFAULT_PROGRAM_NAME = "Rewards"


def keyword(body: str) -> Keyword | None:
    """The keyword a message is, or None for any other text (pure)."""
    word = body.strip().rstrip(".!").strip().upper()
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None


def language(locale: str | None) -> str:
    base = (locale or "").split("-", 1)[0].split("_", 1)[0].lower()
    return base if base in _TEXTS else "en"


@dataclass(frozen=True)
class InboundResult:
    kind: Literal["stop", "start", "help", "reply", "duplicate"]
    reply: str | None  # the text to answer with (TwiML <Message>), None for no answer
    participant_id: int | None
    follow_up_task_id: int | None = None


@dataclass(frozen=True)
class _Sender:
    participant_id: int | None
    program_name: str
    help_text: str | None
    locale: str | None
    outbox_id: int | None
    run_id: int | None
    campaign: str | None


def _sender(session: Session, phone: str | None) -> _Sender:
    """Who texted us: the participant with this number whose SMS from us is the most recent
    (else the first one with the number), with their program."""
    ids = participants_with(session, phone) if phone else []
    latest = None
    if ids:
        latest = session.execute(
            select(
                OutboxMessage.id,
                OutboxMessage.participant_id,
                OutboxMessage.run_id,
                OutboxMessage.campaign,
            )
            .where(OutboxMessage.participant_id.in_(ids))
            .where(OutboxMessage.channel == "sms")
            .where(OutboxMessage.to_address == phone)
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
            .limit(1)
        ).first()
    participant_id = latest.participant_id if latest is not None else (min(ids) if ids else None)
    if participant_id is None:
        return _Sender(None, DEFAULT_PROGRAM_NAME, None, None, None, None, None)
    row = session.execute(
        select(Program.name, Program.help_text, Participant.locale)
        .join(Participant, Participant.program_id == Program.id)
        .where(Participant.id == participant_id)
    ).one()
    return _Sender(
        participant_id=participant_id,
        program_name=row.name,
        help_text=row.help_text,
        locale=row.locale,
        outbox_id=latest.id if latest is not None else None,
        run_id=latest.run_id if latest is not None else None,
        campaign=latest.campaign if latest is not None else None,
    )


def handle_inbound(
    session: Session,
    form: Mapping[str, str],
    *,
    at: datetime,
    default_region: str = "US",
    case_rules: RulesFor | None = None,
) -> InboundResult:
    """Apply one (already verified) inbound message in the caller's transaction
    (``case_rules``: a program's case rules by key, for the cases a text opens)."""
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip()
    sender_number = (form.get("From") or "").strip()
    body = form.get("Body") or ""
    if not sid:
        raise InputError("an inbound message needs a MessageSid")
    try:
        phone: str | None = normalise_phone(sender_number, default_region)
    except ValueError:
        phone = None  # a short code or an alphanumeric sender: nobody we can match or suppress
    sender = _sender(session, phone)
    kind = keyword(body)
    detail = clean_detail(form, _DETAIL_KEYS)
    detail["body"] = clean_text(body, 1600)
    inserted = record_event(
        session,
        provider=PROVIDER,
        provider_event_id=sid,
        event=kind or "reply",
        occurred_at=at,
        received_at=at,
        outbox_id=sender.outbox_id,
        participant_id=sender.participant_id,
        detail=detail,
    )
    if not inserted:
        return InboundResult("duplicate", None, sender.participant_id)
    texts = _TEXTS[language(sender.locale)]
    if kind == "stop":
        if phone is None:
            return InboundResult("stop", None, sender.participant_id)
        result = suppress(session, phone, "sms", "opt_out", "sms_stop", at=at)
        reply = texts["stop"].format(program=sender.program_name) if result.new else None
        return InboundResult("stop", reply, sender.participant_id)
    if kind == "start":
        lifted = phone is not None and lift_opt_out(session, phone, "sms")
        # Only a number that had opted out is "resubscribed"; one blocked for another reason
        # (a bounce, an erasure, a manual block) stays blocked and gets the help text.
        still = phone is not None and existing_reason(session, phone, ("sms", "all"))
        which = "start" if lifted else ("help" if still else "already")
        return InboundResult(
            "start", texts[which].format(program=sender.program_name), sender.participant_id
        )
    if kind == "help":
        text = sender.help_text or texts["help"].format(program=sender.program_name)
        case_task = None
        if sender.participant_id is not None:
            case_task = after_inbound_sms(
                session, sender.participant_id, keyword="help", body=body, at=at,
                rules_for=case_rules,
            )  # fmt: skip
        return InboundResult("help", text, sender.participant_id, follow_up_task_id=case_task)
    if sender.participant_id is None:
        return InboundResult("reply", None, None)
    case_task = after_inbound_sms(
        session, sender.participant_id, keyword=None, body=body, at=at, rules_for=case_rules
    )
    if case_task is not None:
        return InboundResult("reply", None, sender.participant_id, follow_up_task_id=case_task)
    # Several texts in a row are one conversation: an agent already due to call back gets no
    # second task (every reply is in message_events for them to read).
    waiting = session.scalar(
        select(CallTask.id)
        .where(CallTask.participant_id == sender.participant_id)
        .where(CallTask.kind == "follow_up")
        .where(CallTask.status.in_(("open", "claimed")))
        .limit(1)
    )
    if waiting is not None:
        return InboundResult("reply", None, sender.participant_id, follow_up_task_id=waiting)
    task = CallTask(
        kind="follow_up",
        run_id=sender.run_id,
        participant_id=sender.participant_id,
        campaign=sender.campaign,
        status="open",
        due_at=at,
        created_at=at,
        updated_at=at,
    )
    session.add(task)
    session.flush()
    return InboundResult("reply", None, sender.participant_id, follow_up_task_id=task.id)


__all__ = ["InboundResult", "handle_inbound", "keyword"]
