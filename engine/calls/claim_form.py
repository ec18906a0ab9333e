"""A run's claim form: what claiming a call and showing its call sheet read of the run's
campaign definition, worked out once at launch and stored with the run
(``campaign_runs.claim_form``, migration 0036).

A claim used to parse the run's definition with pydantic to read four things: about 110 ms in
a fresh `calls next` that meets a task (#18). The form holds those four as plain JSON, read
back into plain values here without pydantic:

- each step's ``priority`` keys (the serving order within a call step, engine/calls/priority.py);
- the campaign's ``call_window`` (narrows the legal calling hours at claim time);
- the campaign's ``frequency_cap`` (checked beside the global one, engine/calls/rules.py);
- the standing filter (engine/definitions/standing.py): the audience conditions a member must
  still match, compiled to SQL by the audience compiler, which reads any tree of the filter's
  shape (engine/filter_shape.py);
- for the call sheet (engine/calls/scripts.py): each step's ``script``, ``talking_points``,
  ``offer`` and ``cross_sell``, and the campaign's ``name`` and ``description`` (the script's
  ``campaign`` context), so a fresh `calls next` that takes a task imports no pydantic either.

A run whose form is missing or of another :data:`FORM_VERSION` (a database migrated while the
code's form changed since, a run inserted bare by a test) has it worked out from its stored
definition instead, as claims did before: slower, the same answer. A form of version 1 (0036's
backfill, launches before the call sheet's fields) still serves claims; the call sheet of its
run reads the definition (:meth:`ClaimForms.for_sheet`), as sheets did before.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import select

from engine.db.reading import row_by_id
from engine.db.tables.runs import campaign_runs
from engine.filter_shape import ALL, ANY, FIELD, NOT

if TYPE_CHECKING:
    from engine.db.reading import Reader
    from engine.definitions.schema import CampaignDefinition

# Raised when what the form holds (or how it spells it) changes: older forms are then
# worked out again from their runs' definitions. 2: the call sheet's step and campaign fields.
FORM_VERSION = 2
# The versions a claim reads: 1 holds all a claim reads, only not the call sheet's fields.
_CLAIM_VERSIONS = (1, FORM_VERSION)


# --------------------------------------------------------------------------- plain values

# NamedTuples, not frozen dataclasses: a dataclass compiles its methods from text when its
# module is imported, ~1 ms each, and every `calls next` imports these nine (#18).


class PriorityKey(NamedTuple):
    field: str
    order: str  # "asc" | "desc"


class StepForm(NamedTuple):
    id: str
    priority: tuple[PriorityKey, ...]
    # What the call sheet shows of the step (as the definition's Step spells them).
    script: str | None = None
    talking_points: tuple[str, ...] = ()
    offer: str | None = None
    cross_sell: str | None = None


class CallWindow(NamedTuple):
    """Shaped like the definition's ``call_window`` (engine/policy/windows.py WindowSpec)."""

    start: time
    end: time
    days: tuple[str, ...]


class FrequencyCap(NamedTuple):
    max: int
    per: timedelta


class AllOf(NamedTuple):
    all: tuple[Any, ...]

    @property
    def kind(self) -> str:
        return ALL


class AnyOf(NamedTuple):
    any: tuple[Any, ...]

    @property
    def kind(self) -> str:
        return ANY


class Not(NamedTuple):
    not_: Any

    @property
    def kind(self) -> str:
        return NOT


class FieldCondition(NamedTuple):
    field: str
    operator: str
    operand: Any

    @property
    def kind(self) -> str:
        return FIELD

    @property
    def is_null(self) -> bool | None:
        return bool(self.operand) if self.operator == "is_null" else None


class ClaimForm(NamedTuple):
    steps: Mapping[str, StepForm]
    call_window: CallWindow | None
    frequency_cap: FrequencyCap | None
    standing: Any  # a filter tree of plain nodes, or None: nothing to re-check
    name: str = ""  # the campaign's, for the call script's context
    description: str = ""
    sheet: bool = True  # holds the call sheet's fields (name, description, steps' script...)

    def step(self, step_id: str) -> StepForm:
        """The step with this id (KeyError if none), as CampaignDefinition.step."""
        return self.steps[step_id]


# --------------------------------------------------------------------------- the stored form


def claim_form_of(definition: CampaignDefinition) -> dict[str, Any]:
    """The form of a definition, as JSON, to store with its run (at launch, or 0036's
    backfill)."""
    from engine.definitions.standing import standing_filter

    window, cap = definition.call_window, definition.frequency_cap
    standing = standing_filter(definition)
    return {
        "version": FORM_VERSION,
        "name": definition.name,
        "description": definition.description,
        "steps": [
            {
                "id": step.id,
                "priority": [[key.field, key.order] for key in step.priority],
                "script": step.script,
                "talking_points": list(step.talking_points),
                "offer": step.offer,
                "cross_sell": step.cross_sell,
            }
            for step in definition.steps
        ],
        "call_window": None
        if window is None
        else {
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
            "days": list(window.days),
        },
        "frequency_cap": None if cap is None else {"max": cap.max, "per": _encode(cap.per)},
        "standing": None if standing is None else _encode_filter(standing),
    }


def store_claim_forms(bind: Any, *, older_than: int | None = None) -> int:
    """Store the form of each run's stored definition (migrations 0036 and 0037). With
    ``older_than``, only runs whose stored form is of an older version are rewritten; a run
    without a form, or whose text no longer validates, keeps what it has (a claim works it out,
    and reports the error, as before). Returns how many runs got a form.

    The table is named here with only the columns this reads and writes, so a migration that
    calls this sees the schema of its own revision."""
    from sqlalchemy import BigInteger, String, Text, column, table, update

    from engine.db.types import JSONDocument
    from engine.definitions.stored import stored_definition
    from engine.errors import InputError

    runs = table(
        "campaign_runs",
        column("id", BigInteger()),
        column("campaign", String()),
        column("definition_source", Text()),
        column("claim_form", JSONDocument()),
    )
    stored = 0
    found = bind.execute(
        select(runs.c.id, runs.c.campaign, runs.c.definition_source, runs.c.claim_form)
    )
    for run_id, campaign, source, form in found.all():
        if older_than is not None and not _older(form, older_than):
            continue
        try:
            definition = stored_definition(source, f"run {run_id}: {campaign}.yaml")
        except InputError:
            continue
        bind.execute(
            update(runs).where(runs.c.id == run_id).values(claim_form=claim_form_of(definition))
        )
        stored += 1
    return stored


def _older(form: Any, version: int) -> bool:
    found = form.get("version") if isinstance(form, Mapping) else None
    return isinstance(found, int) and found < version


def read_claim_form(stored: Any) -> ClaimForm | None:
    """The form a run stored, or None when it stored none a claim reads (:data:`FORM_VERSION`
    or 1, without the call sheet's fields)."""
    if not isinstance(stored, Mapping) or stored.get("version") not in _CLAIM_VERSIONS:
        return None
    sheet = stored["version"] == FORM_VERSION
    steps: dict[str, StepForm] = {}
    for step in stored["steps"]:
        keys = tuple(PriorityKey(name, order) for name, order in step["priority"])
        form = (
            StepForm(
                step["id"],
                keys,
                step["script"],
                tuple(step["talking_points"]),
                step["offer"],
                step["cross_sell"],
            )
            if sheet
            else StepForm(step["id"], keys)
        )
        steps.setdefault(step["id"], form)  # the first, as .step() finds
    window, cap = stored["call_window"], stored["frequency_cap"]
    return ClaimForm(
        steps=steps,
        call_window=None
        if window is None
        else CallWindow(
            time.fromisoformat(window["start"]),
            time.fromisoformat(window["end"]),
            tuple(window["days"]),
        ),
        frequency_cap=None if cap is None else FrequencyCap(cap["max"], _decode(cap["per"])),
        standing=None if stored["standing"] is None else _decode_filter(stored["standing"]),
        name=stored["name"] if sheet else "",
        description=stored["description"] if sheet else "",
        sheet=sheet,
    )


def _encode_filter(node: Any) -> dict[str, Any]:
    if node.kind == ALL:
        return {"all": [_encode_filter(child) for child in node.all]}
    if node.kind == ANY:
        return {"any": [_encode_filter(child) for child in node.any]}
    if node.kind == NOT:
        return {"not": _encode_filter(node.not_)}
    if node.kind == FIELD:
        return {"field": node.field, "op": node.operator, "value": _encode(node.operand)}
    # Standing filters read participant fields only (engine/definitions/standing.py).
    raise ValueError(f"a claim form holds no {node.kind} condition")


def _decode_filter(data: Mapping[str, Any]) -> Any:
    if "all" in data:
        return AllOf(tuple(_decode_filter(child) for child in data["all"]))
    if "any" in data:
        return AnyOf(tuple(_decode_filter(child) for child in data["any"]))
    if "not" in data:
        return Not(_decode_filter(data["not"]))
    return FieldCondition(data["field"], data["op"], _decode(data["value"]))


# An operand keeps its Python type through JSON: the compiler compares by it (a date operand
# of a text field is its ISO text, a number of an attribute compares numerically...).
def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_encode(item) for item in value]
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, timedelta):
        return {"duration": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    raise TypeError(f"a claim form cannot hold {value!r}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, Mapping):
        return value
    if "datetime" in value:
        return datetime.fromisoformat(value["datetime"])
    if "date" in value:
        return date.fromisoformat(value["date"])
    if "duration" in value:
        days, seconds, microseconds = value["duration"]
        return timedelta(days=days, seconds=seconds, microseconds=microseconds)
    return Decimal(value["decimal"])


# --------------------------------------------------------------------------- reading


_ACTIVE_RUNS = select(
    campaign_runs.c.id,
    campaign_runs.c.campaign,
    campaign_runs.c.program_id,
    campaign_runs.c.claim_form,
    campaign_runs.c.definition_source,
).where(campaign_runs.c.status == "active")


class ClaimForms:
    """The claim forms of the runs a claim meets, read once per claim. A run that stored none
    has it worked out from its definition, and only when a task of the run is met."""

    def __init__(self, session: Reader) -> None:
        self.session = session
        self._forms: dict[int, ClaimForm | None] = {}
        self._sources: dict[int, tuple[str, str]] = {}  # no form: definition text and campaign
        self.program_ids: dict[int, int] = {}  # of the runs load_active read

    def load_active(self) -> list[int]:
        """Read every active run's form with one query. Returns their ids."""
        found = self.session.execute(_ACTIVE_RUNS).all()
        for run_id, campaign, program_id, stored, source in found:
            self.program_ids[run_id] = program_id
            form = read_claim_form(stored)
            if form is not None:
                self._forms[run_id] = form
            elif run_id not in self._forms:
                self._sources[run_id] = (source, campaign)
        return [row[0] for row in found]

    def for_run(self, run_id: int | None) -> ClaimForm | None:
        if run_id is None:
            return None
        if run_id not in self._forms:
            if run_id not in self._sources:
                found = self._run(run_id)
                if found is None:
                    self._forms[run_id] = None
                    return None
                form = read_claim_form(found.claim_form)
                if form is not None:
                    self._forms[run_id] = form
                    return form
                self._sources[run_id] = (found.definition_source, found.campaign)
            source, campaign = self._sources.pop(run_id)
            self._forms[run_id] = _worked_out(source, run_id, campaign)
        return self._forms[run_id]

    def for_sheet(self, run_id: int | None) -> ClaimForm | None:
        """:meth:`for_run` with the call sheet's fields: a run whose form is of version 1 has
        its form worked out from its definition."""
        form = self.for_run(run_id)
        if run_id is None or form is None or form.sheet:
            return form
        found = self._run(run_id)
        return _worked_out(found.definition_source, run_id, found.campaign)

    def _run(self, run_id: int) -> Any:
        """The run's row (campaign, form and definition text), or None; on an ORM session from
        its identity map when it holds the run (a console page reads it with the claim)."""
        return row_by_id(self.session, campaign_runs, run_id)


def _worked_out(source: str, run_id: int, campaign: str) -> ClaimForm | None:
    """A run without a form of this version: its form from its definition (pydantic)."""
    from engine.definitions.stored import stored_definition

    definition = stored_definition(source, f"run {run_id}: {campaign}.yaml")
    return read_claim_form(claim_form_of(definition))


__all__ = [
    "FORM_VERSION",
    "CallWindow",
    "ClaimForm",
    "ClaimForms",
    "FrequencyCap",
    "PriorityKey",
    "StepForm",
    "claim_form_of",
    "read_claim_form",
]
