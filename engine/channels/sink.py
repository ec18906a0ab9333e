"""The file sink: the default channel when no provider credentials are set.

Each email becomes one RFC 5322 ``.eml`` file (open it in any mail client) and each text one
``.json`` file, named after our message id. A file is never overwritten: finding one for the
same message id means the message is being sent twice, which is an error to surface, not to
paper over. Files appear atomically (written aside, then linked into place), so a crash never
leaves half a message that would block the retry.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from pathlib import Path
from urllib.parse import quote

from engine.channels.base import (
    EMAIL,
    SMS,
    ChannelError,
    DuplicateSendError,
    Outbound,
    OutboundEmail,
    OutboundSms,
    SendResult,
    wrong_kind,
)
from engine.clock import Clock, SystemClock

# CRLF as on the wire. Lines up to RFC 5322's hard limit: at the default 78 the folder breaks
# a long List-Unsubscribe right after the colon, and parsers then read a leading space.
_POLICY = SMTP.clone(max_line_length=998)
# Headers the sink writes itself; a message's own headers may not replace them.
_RESERVED = {"from", "to", "subject", "date", "message-id", "reply-to", "content-type"}


def file_stem(message_id: str) -> str:
    """A file name for a message id: reversible, so two ids never share a file."""
    stem = quote(message_id, safe="-_.@+=")
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    return stem


def build_eml(message: OutboundEmail, *, at: datetime) -> EmailMessage:
    """The message as an RFC 5322 email: what the recipient's mail client would receive."""
    mail = EmailMessage(policy=_POLICY)
    mail["From"] = formataddr((message.from_name or "", message.from_email))
    mail["To"] = formataddr((message.to_name or "", message.to_email))
    if message.reply_to:
        mail["Reply-To"] = message.reply_to
    domain = message.from_email.rpartition("@")[2] or "localhost"
    mail["Message-ID"] = f"<{file_stem(message.message_id)}@{domain}>"
    mail["Date"] = format_datetime(at)
    for name, value in message.headers.items():
        if name.lower() in _RESERVED:
            raise ChannelError(f"message {message.message_id}: header {name} is set by the sink")
        mail[name] = value
    mail["X-Campaign-Message-Id"] = message.message_id
    if message.categories:
        mail["X-Campaign-Categories"] = ", ".join(message.categories)
    mail["X-Campaign-Custom-Args"] = json.dumps(dict(message.custom_args), sort_keys=True)
    if message.is_template:
        # No renderer here: record what the provider would have rendered.
        mail["Subject"] = f"[dynamic template {message.template_id}]"
        mail["X-Campaign-Template-Id"] = message.template_id or ""
        data = json.dumps(message.dynamic_template_data or {}, indent=2, sort_keys=True)
        mail.set_content(data + "\n")
        return mail
    mail["Subject"] = message.subject or ""
    mail.set_content(message.text or "")
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    for attachment in message.attachments:
        maintype, _, subtype = attachment.mime_type.partition("/")
        mail.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
            params={"charset": attachment.charset} if attachment.charset else None,
        )
    return mail


class SinkChannel:
    name = "sink"

    def __init__(self, outbox_dir: Path, *, kind: str, clock: Clock | None = None) -> None:
        if kind not in (EMAIL, SMS):
            raise ValueError(f"unknown channel kind {kind!r}")
        self.kind = kind
        self.outbox_dir = Path(outbox_dir)
        self.clock = clock or SystemClock()

    def path_for(self, message_id: str) -> Path:
        suffix = ".eml" if self.kind == EMAIL else ".json"
        return self.outbox_dir / (file_stem(message_id) + suffix)

    def send(self, message: Outbound) -> SendResult:
        if self.kind == EMAIL and isinstance(message, OutboundEmail):
            data = build_eml(message, at=self.clock.now()).as_bytes()
        elif self.kind == SMS and isinstance(message, OutboundSms):
            data = self._sms_json(message)
        else:
            raise wrong_kind(self.name, self.kind, message)
        target = self.path_for(message.message_id)
        self._write_new(target, data, message.message_id)
        return SendResult(
            provider_message_id=target.name, accepted_at=self.clock.now(), raw_status=0
        )

    def _sms_json(self, message: OutboundSms) -> bytes:
        record = {
            "message_id": message.message_id,
            "to": message.to,
            "body": message.body,
            "from": message.from_number,
            "messaging_service_sid": message.messaging_service_sid,
            "status_callback": message.status_callback,
            "written_at": self.clock.now().isoformat(),
        }
        return (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode()

    def _write_new(self, target: Path, data: bytes, message_id: str) -> None:
        try:
            self.outbox_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ChannelError(f"cannot create the outbox folder {self.outbox_dir}: {exc}") from exc
        handle, temporary = tempfile.mkstemp(dir=self.outbox_dir, prefix=".partial-")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            try:
                # link() refuses an existing name: the check and the write are one step.
                os.link(temporary, target)
            except FileExistsError:
                raise
            except OSError:
                # A filesystem without hard links: exclusive create is the next best thing.
                with open(target, "xb") as stream:
                    stream.write(data)
        except FileExistsError as exc:
            raise DuplicateSendError(
                f"message {message_id} was already written to {target}: refusing to send it twice"
            ) from exc
        except OSError as exc:
            raise ChannelError(f"message {message_id}: cannot write {target}: {exc}") from exc
        finally:
            Path(temporary).unlink(missing_ok=True)

    def close(self) -> None:
        pass
