"""A program's case rules: the service level per category and the root causes a case is
resolved with. Defaults below; a YAML file (CAMPAIGN_CASES_FILE) changes them for every
program or for one, validated with ``file:line field: message`` errors like campaign files:

    due_within:                 # business days per category, for every program
      billing: 2
      privacy: 1
    default_due_within: 2       # any other category
    root_causes: [billing_error, points_not_credited, ...]
    programs:
      demo:                     # only this program (by key); what it names replaces the above
        due_within: {points: 3}
        root_causes: [...]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.calls.config import _lines, _nearest, read_yaml
from engine.calls.dispositions import COMPLAINT_CATEGORIES
from engine.errors import DefinitionError, DefinitionErrors, InputError

# A case opened from an ESCALATED call, and one from an inbound SMS asking for help.
ESCALATION = "escalation"
HELP = "help"
DEFAULT_DUE_WITHIN = 2.0  # business days
DEFAULT_DUE: dict[str, float] = {"privacy": 1.0}  # a data-protection request waits no longer
DEFAULT_ROOT_CAUSES: tuple[str, ...] = (
    "billing_error",
    "points_not_credited",
    "redemption_failed",
    "communication_unclear",
    "contacted_too_often",
    "agent_conduct",
    "system_outage",
    "policy_misunderstood",
    "product_defect",
    "data_request",
    "no_fault_found",
    "other",
)
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _check_code(value: str, what: str) -> str:
    if not _CODE.match(value):
        raise ValueError(f"{value!r} is not a {what}; use lower-case letters, digits and _")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Rules(_Model):
    due_within: dict[str, float] = Field(default_factory=dict)
    default_due_within: float | None = Field(default=None, gt=0)
    root_causes: list[str] | None = None

    @field_validator("due_within")
    @classmethod
    def _days(cls, value: dict[str, float]) -> dict[str, float]:
        for category, days in value.items():
            _check_code(category, "category")
            if days <= 0:
                raise ValueError(f"{category}: {days} business days must be more than 0")
        return value

    @field_validator("root_causes")
    @classmethod
    def _causes(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("root_causes may not be empty")
            for code in value:
                _check_code(code, "root cause code")
        return value


class CasesFile(_Rules):
    programs: dict[str, _Rules] = Field(default_factory=dict)


@dataclass(frozen=True)
class CaseRules:
    """The case rules in force for one program."""

    due_within: dict[str, float]  # business days per category
    default_due_within: float
    root_causes: tuple[str, ...]

    @property
    def categories(self) -> tuple[str, ...]:
        known = [*COMPLAINT_CATEGORIES, ESCALATION, HELP]
        return tuple(dict.fromkeys([*known, *sorted(self.due_within)]))

    def business_days(self, category: str) -> float:
        return self.due_within.get(category, self.default_due_within)

    def check_category(self, category: str) -> str:
        value = category.strip().lower()
        if value not in self.categories:
            raise InputError(
                f"unknown case category {category!r}; use one of {', '.join(self.categories)}"
            )
        return value

    def check_root_cause(self, code: str) -> str:
        value = code.strip().lower()
        if value not in self.root_causes:
            raise InputError(
                f"root cause {code!r} is not on the program's list; use one of "
                f"{', '.join(self.root_causes)} (CAMPAIGN_CASES_FILE sets the list)"
            )
        return value


DEFAULT_RULES = CaseRules(dict(DEFAULT_DUE), DEFAULT_DUE_WITHIN, DEFAULT_ROOT_CAUSES)


def parse_cases_file(text: str, where: str) -> CasesFile:
    node, data = read_yaml(text, where)
    if node is None or data is None:
        return CasesFile()
    if not isinstance(data, dict):
        raise DefinitionError(where, 1, "", "expected a mapping (due_within:, root_causes:...)")
    lines = _lines(node)
    try:
        return CasesFile.model_validate(data)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            loc = tuple(str(p) if isinstance(p, str) else p for p in error["loc"])
            name = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in loc).lstrip(".")
            message = error["msg"].removeprefix("Value error, ")
            errors.append(DefinitionError(where, _nearest(lines, loc), name, message))
        raise (errors[0] if len(errors) == 1 else DefinitionErrors(errors)) from exc


def _merge(base: CaseRules, layer: _Rules) -> CaseRules:
    return CaseRules(
        {**base.due_within, **layer.due_within},
        layer.default_due_within or base.default_due_within,
        tuple(layer.root_causes) if layer.root_causes is not None else base.root_causes,
    )


def load_case_rules(path: Path | None, program: str) -> CaseRules:
    """The defaults, changed by ``path`` (its global rules, then ``program``'s)."""
    if path is None:
        return DEFAULT_RULES
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: cases file not found (CAMPAIGN_CASES_FILE)") from None
    parsed = parse_cases_file(text, str(path))
    rules = _merge(DEFAULT_RULES, parsed)
    own = parsed.programs.get(program)
    return _merge(rules, own) if own is not None else rules


def rules_for(settings: Any, program: str) -> CaseRules:
    return load_case_rules(getattr(settings, "cases_file", None), program)
