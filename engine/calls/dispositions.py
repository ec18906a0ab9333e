"""Dispositions: the standard set, their documentation templates, and validation (pure).

A disposition says what happened on a call. Each has: whether a human was reached
(``human_contact``), whether it ends the task (``final``), how long until a no-contact outcome
is retried (``recycle_after``), whether it counts as an attempt, an ``effect`` the engine
applies (suppress, callback, escalate, conversion...), the fields its documentation template
requires, and the template of the standard call record note.

No database and no clock here: :func:`validate_entry` checks what an agent typed against the
template and renders the note; engine/calls/log.py applies the effect.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import InputError

Effect = Literal[
    "none",
    "conversion",
    "follow_up",
    "callback",
    "recycle",
    "invalid_number",
    "do_not_call",
    "escalate",
    "complaint",
]
EFFECTS: tuple[str, ...] = get_args(Effect)
FieldKind = Literal["text", "choice", "datetime", "date", "number", "yes_no"]
FIELD_KINDS: tuple[str, ...] = get_args(FieldKind)
COMPLAINT_CATEGORIES = (
    "service",
    "billing",
    "points",
    "communication",
    "privacy",
    "product",
    "other",
)
YES = ("yes", "y", "true", "1")
NO = ("no", "n", "false", "0")


class DispositionError(InputError):
    """A call log entry does not satisfy its disposition's documentation template."""


@dataclass(frozen=True)
class FieldSpec:
    """One field of a documentation template."""

    name: str
    kind: FieldKind = "text"
    required: bool = True
    choices: tuple[str, ...] = ()
    help: str = ""
    default: str | None = None


@dataclass(frozen=True)
class Disposition:
    code: str
    label: str
    human_contact: bool
    final: bool
    counts_as_attempt: bool
    effect: Effect
    recycle_after: timedelta | None = None
    fields: tuple[FieldSpec, ...] = ()
    note: str = ""
    # Whether the agent must say if identity was verified (every human-contact disposition).
    asks_verified: bool = True
    # A disposition that changes the account on the call requires a verified identity.
    requires_verified: bool = False

    def field(self, name: str) -> FieldSpec | None:
        return next((spec for spec in self.fields if spec.name == name), None)

    def describe(self) -> dict[str, Any]:
        """Plain data for --json and the docs (the recycle delay as '4h', '30m'...)."""
        from engine.definitions.durations import format_duration

        return {
            "code": self.code,
            "label": self.label,
            "human_contact": self.human_contact,
            "final": self.final,
            "counts_as_attempt": self.counts_as_attempt,
            "recycle_after": format_duration(self.recycle_after) if self.recycle_after else None,
            "effect": self.effect,
            "asks_verified": self.asks_verified and self.human_contact,
            "requires_verified": self.requires_verified,
            "fields": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "required": f.required,
                    "choices": list(f.choices),
                    "help": f.help,
                    "default": f.default,
                }
                for f in self.fields
            ],
            "note": self.note,
        }


def _f(name: str, kind: FieldKind = "text", required: bool = True, **kw: Any) -> FieldSpec:
    return FieldSpec(name, kind, required, **kw)


_H = timedelta(hours=1)
STANDARD: tuple[Disposition, ...] = (
    Disposition(
        "CONVERTED",
        "Renewed, redeemed or activated during the call",
        human_contact=True,
        final=True,
        counts_as_attempt=True,
        effect="conversion",
        requires_verified=True,
        fields=(
            _f("action", "choice", choices=("renewed", "redeemed", "activated", "purchased")),
            _f("amount", "number", required=False, help="amount paid, if any"),
            _f("points", "number", required=False, help="points redeemed, if any"),
        ),
        note="Converted on the call: {{ fields.action }}"
        "{% if fields.amount %}, amount {{ fields.amount }}{% endif %}"
        "{% if fields.points %}, {{ fields.points }} points{% endif %}.",
    ),
    Disposition(
        "PROMISED",
        "Will act; follow up",
        human_contact=True,
        final=False,
        counts_as_attempt=True,
        effect="follow_up",
        recycle_after=timedelta(days=2),
        fields=(
            _f("action", "choice", choices=("renew", "redeem", "activate", "purchase", "other")),
            _f("by", "date", required=False, help="date they promised to act by"),
        ),
        note="Promised to {{ fields.action }}"
        "{% if fields.by %} by {{ fields.by }}{% endif %}; follow-up scheduled.",
    ),
    Disposition(
        "NOT_INTERESTED",
        "Not interested",
        human_contact=True,
        final=True,
        counts_as_attempt=True,
        effect="none",
        fields=(_f("reason", help="why, in their words"),),
        note="Not interested: {{ fields.reason }}.",
    ),
    Disposition(
        "CALLBACK",
        "Asked to be called back at a given time",
        human_contact=True,
        final=True,
        counts_as_attempt=True,
        effect="callback",
        fields=(
            _f("callback_at", "datetime", help="when to call back (ISO 8601, with offset)"),
            _f("who", "choice", required=False, choices=("anyone", "agent"), default="anyone"),
        ),
        note="Callback requested for {{ fields.callback_at }}"
        "{% if fields.who == 'agent' %} (same agent){% endif %}.",
    ),
    Disposition(
        "VOICEMAIL",
        "Left a voicemail",
        human_contact=False,
        final=False,
        counts_as_attempt=True,
        effect="recycle",
        recycle_after=24 * _H,
        asks_verified=False,
        fields=(_f("message_left", "yes_no", required=False, default="yes"),),
        note="Voicemail{% if fields.message_left == 'no' %}, no message left{% endif %}.",
    ),
    Disposition(
        "NO_ANSWER",
        "No answer",
        human_contact=False,
        final=False,
        counts_as_attempt=True,
        effect="recycle",
        recycle_after=4 * _H,
        asks_verified=False,
        note="No answer.",
    ),
    Disposition(
        "BUSY",
        "Line busy",
        human_contact=False,
        final=False,
        counts_as_attempt=True,
        effect="recycle",
        recycle_after=timedelta(minutes=30),
        asks_verified=False,
        note="Line busy.",
    ),
    Disposition(
        "WRONG_NUMBER",
        "The number is not the participant's",
        human_contact=False,
        final=True,
        counts_as_attempt=True,
        effect="invalid_number",
        asks_verified=False,
        note="Wrong number: the number is marked invalid for calls and SMS.",
    ),
    Disposition(
        "DISCONNECTED",
        "The number is disconnected",
        human_contact=False,
        final=True,
        counts_as_attempt=True,
        effect="invalid_number",
        asks_verified=False,
        note="Number disconnected: marked invalid for calls and SMS.",
    ),
    Disposition(
        "DO_NOT_CALL",
        "Asked not to be called again",
        human_contact=True,
        final=True,
        counts_as_attempt=True,
        effect="do_not_call",
        note="Asked not to be called: calls suppressed in every campaign.",
    ),
    Disposition(
        "ESCALATED",
        "Escalated to another team",
        human_contact=True,
        final=True,
        counts_as_attempt=True,
        effect="escalate",
        fields=(_f("team", help="the team whose queue takes the task"), _f("reason")),
        note="Escalated to {{ fields.team }}: {{ fields.reason }}.",
    ),
    Disposition(
        "COMPLAINT",
        "Complaint recorded",
        human_contact=True,
        final=True,
        counts_as_attempt=True,
        effect="complaint",
        fields=(
            _f("category", "choice", choices=COMPLAINT_CATEGORIES),
            _f("summary", help="what the complaint is about"),
        ),
        note="Complaint ({{ fields.category }}): {{ fields.summary }}.",
    ),
    Disposition(
        "VERIFICATION_FAILED",
        "Identity could not be verified; no account detail disclosed",
        human_contact=True,
        final=False,
        counts_as_attempt=True,
        effect="recycle",
        recycle_after=24 * _H,
        asks_verified=False,
        fields=(_f("reason", required=False, help="which check failed"),),
        note="Identity not verified{% if fields.reason %} ({{ fields.reason }}){% endif %};"
        " no account detail disclosed.",
    ),
)


@dataclass(frozen=True)
class DispositionSet:
    """The dispositions in force for a program: the standard set plus configured ones."""

    by_code: Mapping[str, Disposition]

    @classmethod
    def standard(cls) -> DispositionSet:
        return cls({d.code: d for d in STANDARD})

    def extended(self, extra: Iterable[Disposition]) -> DispositionSet:
        merged = dict(self.by_code)
        merged.update({d.code: d for d in extra})
        return DispositionSet(merged)

    def get(self, code: str) -> Disposition:
        key = code.strip().upper()
        found = self.by_code.get(key)
        if found is None:
            known = ", ".join(sorted(self.by_code))
            raise DispositionError(f"unknown disposition {code!r}; use one of {known}")
        return found

    def __iter__(self) -> Any:
        return iter(self.by_code.values())


@dataclass(frozen=True)
class ValidatedEntry:
    """What an agent documented, checked: normalised field values, verified flag, the note."""

    disposition: Disposition
    fields: dict[str, Any]
    verified: bool | None
    notes: str | None
    record: str
    callback_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_yes_no(value: str, name: str) -> bool:
    text = value.strip().lower()
    if text in YES:
        return True
    if text in NO:
        return False
    raise DispositionError(f"field {name}: {value!r} is not yes or no")


def _normalise(spec: FieldSpec, raw: str, code: str) -> Any:
    value = raw.strip()
    if spec.kind == "choice":
        lowered = value.lower()
        if lowered not in spec.choices:
            raise DispositionError(
                f"{code} field {spec.name}: {value!r} is not allowed; use one of "
                f"{', '.join(spec.choices)}"
            )
        return lowered
    if spec.kind == "yes_no":
        return "yes" if parse_yes_no(value, f"{code} {spec.name}") else "no"
    if spec.kind == "number":
        try:
            number = float(value)
        except ValueError:
            raise DispositionError(f"{code} field {spec.name}: {value!r} is not a number") from None
        return str(int(number)) if number.is_integer() else str(number)
    if spec.kind == "datetime":
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise DispositionError(
                f"{code} field {spec.name}: {value!r} is not a date-time; use ISO 8601 with an "
                "offset, e.g. 2026-03-03T10:00-05:00"
            ) from None
        if parsed.tzinfo is None:
            raise DispositionError(
                f"{code} field {spec.name}: {value!r} has no UTC offset; add one, e.g. -05:00"
            )
        return parsed.astimezone(UTC).isoformat()
    if spec.kind == "date":
        try:
            return datetime.strptime(value, "%Y-%m-%d").date().isoformat()
        except ValueError:
            raise DispositionError(
                f"{code} field {spec.name}: {value!r} is not a date; use YYYY-MM-DD"
            ) from None
    if not value:
        raise DispositionError(f"{code} field {spec.name} is empty")
    return value


NOTE_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@functools.lru_cache(maxsize=256)
def _note_template(source: str) -> Template:
    """Compiled once per note text: compiling costs more than a whole call log otherwise."""
    return NOTE_ENV.from_string(source)


@functools.lru_cache(maxsize=4096)
def _note_body(source: str, code: str, fields: tuple[tuple[str, Any], ...]) -> str:
    """A note rendered once per template and fields: most calls of a dialer file are a few
    dispositions with the same fields (no answer, voicemail, busy), and rendering is pure."""
    return _note_template(source).render(fields=_Fields(fields), code=code)


def render_note(disposition: Disposition, fields: Mapping[str, Any], notes: str | None) -> str:
    """The standard call record: '<CODE> - <label>. <note from the template>[ Notes: ...]'."""
    try:
        try:
            key = tuple(fields.items())  # in their order: a template may loop over them
            hash(key)
        except TypeError:  # a value that cannot be a key: rendered as it is
            body = _note_template(disposition.note).render(
                fields=_Fields(fields), code=disposition.code
            )
        else:
            body = _note_body(disposition.note, disposition.code, key)
    except TemplateError as exc:
        raise DispositionError(f"{disposition.code}: the note template fails: {exc}") from exc
    text = f"{disposition.code} - {disposition.label}."
    if body.strip():
        text += " " + body.strip()
    if notes and notes.strip():
        text += " Notes: " + notes.strip()
    return text


class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        return None


def problems_mention(problems: list[str], field_name: str) -> bool:
    """Whether a problem already says that ``field_name`` is required (say it once)."""
    return any(f"requires field {field_name}" in p for p in problems)


def check_entry(
    disposition: Disposition,
    raw_fields: Mapping[str, str],
    *,
    verified: bool | None,
    notes: str | None,
    at: datetime,
) -> tuple[ValidatedEntry | None, list[str]]:
    """Check a log entry against ``disposition``'s documentation template: the entry, or
    EVERY problem found (a dialer's rejects file lists them all; ``calls log`` joins them).

    Problems: a missing required field, a value outside the allowed ones, a field the template
    does not have, a contact disposition without the verified flag, a callback time that is
    not after the call.
    """
    code = disposition.code
    problems: list[str] = []
    known = {spec.name for spec in disposition.fields}
    allowed = ", ".join(sorted(known)) or "none"
    for name in sorted(set(raw_fields) - known):
        problems.append(
            f"{code} has no field {name!r} (fields: {allowed}); put free text in --notes"
        )
    values: dict[str, Any] = {}
    for spec in disposition.fields:
        raw = raw_fields.get(spec.name)
        if raw is None or not str(raw).strip():
            if spec.required:
                hint = f" ({spec.help})" if spec.help else ""
                choices = f"; one of {', '.join(spec.choices)}" if spec.choices else ""
                problems.append(
                    f"{code} requires field {spec.name}{hint}{choices}: add --field {spec.name}=..."
                )
            elif spec.default is not None:
                values[spec.name] = spec.default
            continue
        try:
            values[spec.name] = _normalise(spec, str(raw), code)
        except DispositionError as exc:
            problems.append(str(exc))
    if code == "VERIFICATION_FAILED":
        verified = False
    elif not disposition.human_contact:
        verified = None
    elif disposition.asks_verified and verified is None:
        problems.append(
            f"{code} requires field verified: was the identity verified? add --verified yes|no"
        )
    if (
        disposition.requires_verified
        and not verified
        and not problems_mention(problems, "verified")
    ):
        problems.append(
            f"{code} requires field verified=yes: the account cannot be changed on a call "
            "without verifying the identity (log VERIFICATION_FAILED instead)"
        )
    callback_at: datetime | None = None
    if disposition.effect == "callback" and "callback_at" in values:
        callback_at = datetime.fromisoformat(values["callback_at"])
        if callback_at <= at:
            problems.append(
                f"{code} field callback_at: {callback_at.isoformat()} is not in the future"
            )
    if (
        disposition.effect == "escalate"
        and not str(values.get("team", "")).strip()
        and not problems_mention(problems, "team")
    ):
        problems.append(f"{code} requires field team")
    if problems:
        return None, problems
    try:
        record = render_note(disposition, values, notes)
    except DispositionError as exc:
        return None, [str(exc)]
    entry = ValidatedEntry(
        disposition=disposition,
        fields=values,
        verified=verified,
        notes=notes.strip() if notes and notes.strip() else None,
        record=record,
        callback_at=callback_at,
    )
    return entry, []


def validate_entry(
    disposition: Disposition,
    raw_fields: Mapping[str, str],
    *,
    verified: bool | None,
    notes: str | None,
    at: datetime,
) -> ValidatedEntry:
    """:func:`check_entry`, refusing (DispositionError naming every problem) a bad entry."""
    entry, problems = check_entry(disposition, raw_fields, verified=verified, notes=notes, at=at)
    if entry is None:
        raise DispositionError("; ".join(problems))
    return entry


def with_recycle(disposition: Disposition, delay: timedelta) -> Disposition:
    return replace(disposition, recycle_after=delay)
