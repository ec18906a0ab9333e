"""Program-specific dispositions from a YAML file (CAMPAIGN_DISPOSITIONS_FILE), validated with
``file:line field: message`` errors like campaign files.

    dispositions:               # added for every program
      - code: RENEWAL_QUOTED
        label: Quoted a renewal price
        human_contact: true
        final: false
        recycle_after: 2d
        effect: follow_up
        fields:
          - {name: price, kind: number}
          - {name: plan, kind: choice, choices: [basic, plus]}
        note: "Quoted {{ fields.price }} for the {{ fields.plan }} plan."
    programs:                   # only for one program (by key)
      demo:
        - code: CARD_EXPIRED
          ...

A configured code that is also a standard one replaces it (say, to add a field or change the
recycle delay); its effect must stay the standard one, because the engine acts on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateSyntaxError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.calls.dispositions import (
    NOTE_ENV,
    STANDARD,
    Disposition,
    DispositionSet,
    Effect,
    FieldKind,
    FieldSpec,
)
from engine.definitions.durations import Duration
from engine.errors import DefinitionError, DefinitionErrors, InputError

_STANDARD = {d.code: d for d in STANDARD}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldConfig(_Model):
    name: str
    kind: FieldKind = "text"
    required: bool = True
    choices: list[str] = Field(default_factory=list)
    help: str = ""
    default: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(r"^[a-z][a-z0-9_]{0,63}$", value):
            raise ValueError(f"{value!r} is not a field name; use lower case letters, digits, _")
        if value == "consent_basis":  # engine/calls/log.py CONSENT_BASIS: the engine's own
            raise ValueError("'consent_basis' is reserved: the caller log records it itself")
        return value


class DispositionConfig(_Model):
    code: str
    label: str
    human_contact: bool
    final: bool
    counts_as_attempt: bool = True
    effect: Effect = "none"
    recycle_after: Duration | None = None
    fields: list[FieldConfig] = Field(default_factory=list)
    note: str = ""
    requires_verified: bool = False

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not re.match(r"^[A-Z][A-Z0-9_]{1,31}$", value):
            raise ValueError(
                f"{value!r} is not a disposition code; use 2-32 upper-case letters, digits"
                " and _, e.g. RENEWAL_QUOTED"
            )
        return value

    @field_validator("note")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            NOTE_ENV.parse(value)
        except TemplateSyntaxError as exc:
            raise ValueError(f"the note template does not parse: {exc.message}") from exc
        return value

    def to_disposition(self) -> Disposition:
        return Disposition(
            code=self.code,
            label=self.label,
            human_contact=self.human_contact,
            final=self.final,
            counts_as_attempt=self.counts_as_attempt,
            effect=self.effect,
            recycle_after=self.recycle_after,
            fields=tuple(
                FieldSpec(
                    f.name,
                    f.kind,
                    f.required,
                    tuple(c.lower() for c in f.choices),
                    f.help,
                    f.default,
                )
                for f in self.fields
            ),
            note=self.note,
            asks_verified=self.human_contact,
            requires_verified=self.requires_verified,
        )


class DispositionsFile(_Model):
    dispositions: list[DispositionConfig] = Field(default_factory=list)
    programs: dict[str, list[DispositionConfig]] = Field(default_factory=dict)


Path_ = tuple[str | int, ...]


def _lines(node: yaml.Node, path: Path_ = ()) -> dict[Path_, int]:
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            lines[child] = key.start_mark.line + 1
            for sub, line in _lines(value, child).items():
                lines.setdefault(sub, line)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_lines(item, (*path, index)))
    return lines


def _nearest(lines: dict[Path_, int], path: Path_) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def read_yaml(text: str, where: str) -> tuple[yaml.Node | None, Any]:
    """The YAML's node tree (for line numbers) and its data; a syntax error names its line."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise DefinitionError(where, line, "", f"YAML syntax error: {exc.problem}") from exc


def parse_dispositions(text: str, where: str) -> DispositionsFile:
    node, data = read_yaml(text, where)
    if node is None or data is None:
        return DispositionsFile()
    lines = _lines(node)
    if not isinstance(data, dict):
        raise DefinitionError(where, 1, "", "expected a mapping with dispositions: and programs:")
    try:
        parsed = DispositionsFile.model_validate(data)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            loc = tuple(str(p) if isinstance(p, str) else p for p in error["loc"])
            name = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in loc).lstrip(".")
            message = error["msg"].removeprefix("Value error, ")
            errors.append(DefinitionError(where, _nearest(lines, loc), name, message))
        raise (errors[0] if len(errors) == 1 else DefinitionErrors(errors)) from exc
    problems: list[DefinitionError] = []
    groups: list[tuple[Path_, list[DispositionConfig]]] = [(("dispositions",), parsed.dispositions)]
    groups += [(("programs", key), items) for key, items in parsed.programs.items()]
    for prefix, items in groups:
        seen: set[str] = set()
        for index, item in enumerate(items):
            at = (*prefix, index)
            if item.code in seen:
                problems.append(
                    DefinitionError(
                        where,
                        _nearest(lines, (*at, "code")),
                        "code",
                        f"{item.code} is defined twice",
                    )
                )
            seen.add(item.code)
            standard = _STANDARD.get(item.code)
            if standard is not None and standard.effect != item.effect:
                problems.append(
                    DefinitionError(
                        where,
                        _nearest(lines, (*at, "effect")),
                        "effect",
                        f"{item.code} is a standard disposition with effect {standard.effect}; "
                        "its effect cannot change",
                    )
                )
            names = [f.name for f in item.fields]
            for f_index, spec in enumerate(item.fields):
                if spec.kind == "choice" and not spec.choices:
                    problems.append(
                        DefinitionError(
                            where,
                            _nearest(lines, (*at, "fields", f_index)),
                            "choices",
                            f"field {spec.name} is a choice without choices",
                        )
                    )
                if names.count(spec.name) > 1:
                    problems.append(
                        DefinitionError(
                            where,
                            _nearest(lines, (*at, "fields", f_index)),
                            "name",
                            f"field {spec.name} is listed twice",
                        )
                    )
            if item.effect == "callback" and "callback_at" not in names:
                problems.append(
                    DefinitionError(
                        where,
                        _nearest(lines, at),
                        "fields",
                        "a callback disposition needs a callback_at datetime field",
                    )
                )
            if item.effect == "escalate" and "team" not in names:
                problems.append(
                    DefinitionError(
                        where,
                        _nearest(lines, at),
                        "fields",
                        "an escalate disposition needs a team field",
                    )
                )
            if item.effect == "complaint" and "category" not in names:
                problems.append(
                    DefinitionError(
                        where,
                        _nearest(lines, at),
                        "fields",
                        "a complaint disposition needs a category field",
                    )
                )
    if problems:
        raise problems[0] if len(problems) == 1 else DefinitionErrors(problems)
    return parsed


def load_dispositions(path: Path | None, program: str | None = None) -> DispositionSet:
    """The standard set, extended by ``path`` (global entries, then ``program``'s)."""
    result = DispositionSet.standard()
    if path is None:
        return result
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(
            f"{path}: dispositions file not found (CAMPAIGN_DISPOSITIONS_FILE)"
        ) from None
    parsed = parse_dispositions(text, str(path))
    extra: list[Any] = [d.to_disposition() for d in parsed.dispositions]
    if program is not None:
        extra += [d.to_disposition() for d in parsed.programs.get(program, [])]
    return result.extended(extra)
