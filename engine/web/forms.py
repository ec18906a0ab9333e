"""The disposition form, generated from each disposition's documentation template, and the
submitted form turned back into the same CallInput `calls log` builds.

Nothing is validated here: the engine's template check (engine/calls/dispositions.py via
engine/calls/log.py) refuses a bad entry with the same messages as `calls log`. This module
only turns browser input into the values that check reads: a date-time typed in the agent's
own zone gets the zone's offset, as the CLI asks the agent to add one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from engine.calls.dispositions import Disposition, DispositionSet
from engine.calls.log import CallInput

INPUT_TYPES = {
    "text": "text",
    "choice": "select",
    "datetime": "datetime-local",
    "date": "date",
    "number": "number",
    "yes_no": "select",
}


@dataclass(frozen=True)
class FormField:
    name: str  # the form's input name: CODE.field
    field: str
    label: str
    input_type: str
    required: bool
    choices: tuple[str, ...]
    help: str
    default: str | None


@dataclass(frozen=True)
class DispositionForm:
    code: str
    label: str
    human_contact: bool
    asks_verified: bool
    requires_verified: bool
    fields: tuple[FormField, ...]


def field_name(code: str, name: str) -> str:
    return f"{code}.{name}"


def form_for(disposition: Disposition) -> DispositionForm:
    fields = []
    for spec in disposition.fields:
        choices = (
            spec.choices
            if spec.kind == "choice"
            else ("yes", "no")
            if spec.kind == "yes_no"
            else ()
        )
        fields.append(
            FormField(
                name=field_name(disposition.code, spec.name),
                field=spec.name,
                label=spec.name.replace("_", " "),
                input_type=INPUT_TYPES[spec.kind],
                required=spec.required and spec.default is None,
                choices=choices,
                # The browser's picker takes the agent's own time; no offset to type.
                help=spec.help.replace(" (ISO 8601, with offset)", "")
                if spec.kind == "datetime"
                else spec.help,
                default=spec.default,
            )
        )
    return DispositionForm(
        code=disposition.code,
        label=disposition.label,
        human_contact=disposition.human_contact,
        asks_verified=disposition.human_contact and disposition.asks_verified,
        requires_verified=disposition.requires_verified,
        fields=tuple(fields),
    )


def forms_for(dispositions: DispositionSet) -> list[DispositionForm]:
    return [form_for(d) for d in dispositions]


def _in_zone(raw: str, zone: str) -> str:
    """A browser's datetime-local value (no offset) read in the agent's zone; anything else
    (already with an offset, or not a date-time at all) is left for the template check."""
    value = raw.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        return value
    return parsed.replace(tzinfo=ZoneInfo(zone)).isoformat()


def call_input(
    form: Mapping[str, str],
    *,
    task_id: int,
    agent: str,
    agent_zone: str,
    dispositions: DispositionSet,
) -> CallInput:
    """The entry as `calls log` would receive it: only the chosen disposition's fields (the
    others' inputs may hold what was typed before the agent changed their mind)."""
    code = form.get("disposition", "").strip().upper()
    known = dispositions.by_code.get(code)
    fields: dict[str, str] = {}
    if known is not None:
        prefix = f"{code}."
        for key, value in form.items():
            if not key.startswith(prefix) or not value.strip():
                continue
            name = key[len(prefix) :]
            spec = known.field(name)
            if spec is not None and spec.kind == "datetime":
                value = _in_zone(value, agent_zone)
            fields[name] = value
    verified_raw = form.get("verified", "").strip().lower()
    verified = {"yes": True, "no": False}.get(verified_raw)
    notes = form.get("notes", "").strip() or None
    return CallInput(task_id, agent, code, fields, verified, notes)
