"""The unsubscribe link ``/u/{token}``: a GET shows a confirmation page and changes nothing; a
POST (the page's button, or a mail client's RFC 8058 one-click ``List-Unsubscribe=One-Click``)
suppresses the participant on the token's channel with source ``unsubscribe_link``.

Link scanners and mail previews fetch links with GET, which is why only a POST unsubscribes.
A token that does not verify, or names no participant, is answered like a page that does not
exist. Pages are plain HTML with inline style and no external assets, in the participant's
language where we have one (English, Spanish, Chinese).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.consent.opt_outs import suppress
from engine.consent.unsubscribe import InvalidTokenError, UnsubscribeSigner
from engine.db.models import Participant, Program
from engine.errors import InputError
from engine.webhooks.inbound_sms import language

SOURCE = "unsubscribe_link"


@dataclass(frozen=True)
class Recipient:
    participant_id: int
    channel: str
    program_name: str
    email: str | None
    phone: str | None
    lang: str


@dataclass(frozen=True)
class UnsubscribeOutcome:
    recipient: Recipient
    suppressed: list[str]  # "email:a@b.c", "sms:+1202..."
    new: bool  # at least one entry did not exist before


def recipient(session: Session, signer: UnsubscribeSigner, token: str) -> Recipient | None:
    """Whom a token names, or None for a token that is not genuine or names nobody."""
    if len(token) > 200 or not token.isascii():
        return None
    try:
        participant_id, channel = signer.verify(token)
    except InvalidTokenError:
        return None
    if participant_id > 2**62:
        return None
    row = session.execute(
        select(Participant.email, Participant.phone, Participant.locale, Program.name)
        .join(Program, Program.id == Participant.program_id)
        .where(Participant.id == participant_id)
    ).first()
    if row is None:
        return None
    return Recipient(
        participant_id=participant_id,
        channel=channel,
        program_name=row.name,
        email=row.email,
        phone=row.phone,
        lang=language(row.locale),
    )


def unsubscribe(
    session: Session, who: Recipient, *, at: datetime, default_region: str = "US"
) -> UnsubscribeOutcome:
    """Suppress the token's channel: email -> the email address, sms/call -> the phone number,
    all -> both on 'all'. Idempotent: a second POST finds the entries already there."""
    targets: list[tuple[str, str]] = []
    if who.channel in ("email", "all") and who.email:
        targets.append((who.email, who.channel))
    if who.channel in ("sms", "call", "all") and who.phone:
        targets.append((who.phone, who.channel))
    done: list[str] = []
    new = False
    for address, channel in targets:
        try:
            result = suppress(
                session,
                address,
                channel,
                "opt_out",
                SOURCE,
                at=at,
                default_region=default_region,
            )
        except InputError:
            continue  # a stored address that no longer validates: nothing to suppress
        done.append(f"{channel}:{result.address}")
        new = new or result.new
    return UnsubscribeOutcome(recipient=who, suppressed=done, new=new)


# ---------------------------------------------------------------- pages

_TEXTS = {
    "en": {
        "title": "Unsubscribe",
        "question": "Stop {what} from {program} to {address}?",
        "button": "Unsubscribe",
        "done_title": "You are unsubscribed",
        "done": "You will receive no more {what} from {program} at {address}.",
        "email": "emails",
        "sms": "text messages",
        "call": "calls",
        "all": "emails, text messages and calls",
        "missing": "Page not found",
        "missing_text": "This link is not valid. Please use the link from your latest message.",
    },
    "es": {
        "title": "Cancelar suscripción",
        "question": "¿Dejar de recibir {what} de {program} en {address}?",
        "button": "Cancelar suscripción",
        "done_title": "Suscripción cancelada",
        "done": "No recibirá más {what} de {program} en {address}.",
        "email": "correos electrónicos",
        "sms": "mensajes de texto",
        "call": "llamadas",
        "all": "correos, mensajes de texto ni llamadas",
        "missing": "Página no encontrada",
        "missing_text": "Este enlace no es válido.",
    },
    "zh": {
        "title": "退订",
        "question": "停止 {program} 向 {address} 发送{what}？",
        "button": "退订",
        "done_title": "您已退订",
        "done": "{program} 将不再向 {address} 发送{what}。",
        "email": "电子邮件",
        "sms": "短信",
        "call": "电话",
        "all": "电子邮件、短信和电话",
        "missing": "页面不存在",
        "missing_text": "此链接无效。",
    },
}


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain.lower()}" if domain else "***"


def mask_phone(number: str) -> str:
    return f"***{number[-4:]}" if len(number) > 4 else "***"


def _address(who: Recipient) -> str:
    if who.channel == "email":
        return mask_email(who.email) if who.email else "-"
    if who.channel in ("sms", "call"):
        return mask_phone(who.phone) if who.phone else "-"
    parts = [mask_email(who.email) if who.email else "", mask_phone(who.phone) if who.phone else ""]
    return ", ".join(p for p in parts if p) or "-"


def _page(lang: str, title: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title></head>"
        '<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto; '
        'padding: 0 1em; line-height: 1.5">'
        f"<h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def confirm_page(who: Recipient) -> str:
    """What a GET shows: the question and a button that POSTs back to the same URL."""
    t = _TEXTS[who.lang]
    question = t["question"].format(
        what=t[who.channel], program=who.program_name, address=_address(who)
    )
    body = (
        f"<p>{html.escape(question)}</p>"
        '<form method="post"><button type="submit" name="confirm" value="yes" '
        'style="font-size: 1.1em; padding: 0.5em 1.5em">'
        f"{html.escape(t['button'])}</button></form>"
    )
    return _page(who.lang, t["title"], body)


def done_page(who: Recipient) -> str:
    t = _TEXTS[who.lang]
    text = t["done"].format(what=t[who.channel], program=who.program_name, address=_address(who))
    return _page(who.lang, t["done_title"], f"<p>{html.escape(text)}</p>")


def missing_page() -> str:
    t = _TEXTS["en"]
    return _page("en", t["missing"], f"<p>{html.escape(t['missing_text'])}</p>")


__all__ = [
    "SOURCE",
    "Recipient",
    "UnsubscribeOutcome",
    "confirm_page",
    "done_page",
    "missing_page",
    "recipient",
    "unsubscribe",
]
