"""Load campaign definition files, with every mistake reported as ``file:line field: message``.

How line numbers are found: the YAML text is composed into a node tree (PyYAML SafeLoader),
each key and list item's path (``("steps", 1, "delay")``) is mapped to its 1-based line, and
the plain data built from the same tree is validated with pydantic. Each pydantic error's
``loc`` is walked alongside the schema types, which tells a YAML key from a discriminator tag
or a union member label that pydantic inserts (``('audience', 'all', 'all', 0, 'field',
'older_than')`` is the YAML path ``audience.all[0].older_than``); the error is then reported at
the nearest line that exists (a missing field: the line of the mapping that lacks it).

A launched run stores ``LoadedDefinition.source`` and ``content_hash`` so editing a file later
never changes what an old run did.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from engine.definitions.schema import CampaignDefinition
from engine.definitions.stored import IMPLICIT_RESOLVERS
from engine.errors import DefinitionError, DefinitionErrors, InputError, NotFoundError

YamlPath = tuple[str | int, ...]
SUFFIX = ".yaml"
# A campaign file is a few hundred nodes. These bounds refuse a file that would exhaust the
# machine: aliases that expand exponentially ("billion laughs": 480 bytes, 10^9 nodes) and
# nesting deep enough to overflow the recursive walks of the loader, pydantic and the audience.
MAX_NODES = 20_000  # counted with every alias expanded
MAX_DEPTH = 40


@dataclass(frozen=True)
class LoadedDefinition:
    """A validated definition with the exact text it came from and that text's sha256."""

    path: Path
    definition: CampaignDefinition
    source: str
    content_hash: str
    # Line of each key / list item, for later checks (templates) that report file:line.
    lines: Mapping[YamlPath, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.definition.name

    def line_of(self, path: YamlPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor present in the file."""
        return _nearest_line(self.lines, path)


def raise_errors(errors: Sequence[DefinitionError]) -> None:
    """Raise nothing, the one error, or the aggregate (in file and line order)."""
    errors = sorted(errors, key=lambda error: (error.path, error.line or 0))
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise DefinitionErrors(errors)


def error_list(exc: DefinitionError | DefinitionErrors) -> list[DefinitionError]:
    return exc.errors if isinstance(exc, DefinitionErrors) else [exc]


# --------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader without base-60 numbers, and with bad timestamps reported at their line."""

    def construct_yaml_timestamp(self, node: yaml.Node) -> Any:
        try:
            return super().construct_yaml_timestamp(node)  # type: ignore[arg-type]
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a valid date or time ({exc})", node.start_mark
            ) from exc


# SafeLoader's resolvers without base-60 numbers (shared with engine/definitions/stored.py).
_Loader.yaml_implicit_resolvers = IMPLICIT_RESOLVERS
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


def _check_size(root: yaml.Node, where: str) -> None:
    """Refuse a node graph that is too deep or, with its aliases expanded, too large, before
    anything walks it recursively. Iterative, and it stops at the first bound crossed."""
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    visited = 0
    while stack:
        node, depth = stack.pop()
        visited += 1
        line = node.start_mark.line + 1
        if depth > MAX_DEPTH:
            raise DefinitionError(
                where,
                line,
                "",
                f"nested too deeply (a campaign file nests at most {MAX_DEPTH} levels)",
            )
        if visited > MAX_NODES:
            raise DefinitionError(
                where,
                line,
                "",
                f"too large once its aliases are expanded (more than {MAX_NODES:,} values); "
                "a campaign file needs no aliases that repeat other aliases",
            )
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, depth + 1) for item in node.value)


def _line_map(node: yaml.Node) -> dict[YamlPath, int]:
    """Path -> 1-based line of every key and list item (the root is its first line)."""
    lines: dict[YamlPath, int] = {(): node.start_mark.line + 1}

    def walk(current: yaml.Node, path: YamlPath) -> None:
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                child = (*path, key_node.value)
                lines.setdefault(child, key_node.start_mark.line + 1)
                walk(value_node, child)
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                child = (*path, index)
                lines[child] = item.start_mark.line + 1
                walk(item, child)

    walk(node, ())
    return lines


def _duplicate_keys(node: yaml.Node, path: YamlPath = ()) -> Iterable[tuple[YamlPath, int, int]]:
    """(path, line, first line) of every key given twice in one mapping (PyYAML keeps the last
    silently, which would hide a typo or a half-edited block)."""
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in first_seen:
                yield (*path, key_node.value), line, first_seen[key_node.value]
            else:
                first_seen[key_node.value] = line
            yield from _duplicate_keys(value_node, (*path, key_node.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, index))


# --------------------------------------------------------------------------- loading


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_definition_file(path: Path, kind: str) -> tuple[str, bytes]:
    """The text and bytes of a definition file (``kind``: what it is, for the errors: "campaign
    file", "report subscription file"); one clear error when it is missing, unreadable or not
    UTF-8."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(f"{path}: no such {kind}") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror})") from exc
    try:
        return data.decode("utf-8"), data
    except UnicodeDecodeError as exc:
        raise DefinitionError(str(path), None, "", f"not UTF-8 text ({exc.reason})") from exc


def load_definition(path: Path | str) -> LoadedDefinition:
    """Read and validate one campaign file; raise DefinitionError(s) naming file:line field."""
    source, data = read_definition_file(Path(path), "campaign file")
    return _parse_file(source, str(path), data)


@functools.lru_cache(maxsize=256)
def _parse_file(source: str, path: str, data: bytes) -> LoadedDefinition:
    # A tick (every minute under the scheduler) reads every campaign file; parsing unchanged
    # text again would cost tens of ms per file. Errors are raised, never cached.
    return parse_definition(source, path, expected_name=Path(path).stem, data=data)


@functools.lru_cache(maxsize=128)
def parse_stored_definition(source: str, label: str) -> LoadedDefinition:
    """The definition text a run was launched with, parsed once per process: stored text
    never changes and the result is frozen, so hot paths (claim-next) may share it."""
    return parse_definition(source, label)


def read_mapping(
    source: str, where: str, *, empty: str, fields: str, file_kind: str
) -> tuple[dict[str, Any], dict[YamlPath, int], list[DefinitionError]]:
    """The top-level mapping of a definition file (campaign or report subscription), each
    path's line, and the duplicate keys found (errors the caller reports with its own). Raises
    for what leaves nothing to validate: a syntax error, an empty file, nesting past MAX_DEPTH
    (``file_kind`` names the file there), or a document that is not a mapping (of ``fields``)."""
    loader = _Loader(source)
    try:
        node = loader.get_single_node()
        if node is None:
            raise DefinitionError(where, 1, "", f"the file is empty; {empty}")
        _check_size(node, where)
        plain = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(where, exc) from exc
    except yaml.YAMLError as exc:
        raise DefinitionError(where, None, "", f"YAML syntax error: {exc}") from exc
    except RecursionError as exc:  # the YAML composer recurses once per nesting level
        raise DefinitionError(
            where, None, "", f"nested too deeply ({file_kind} nests at most {MAX_DEPTH} levels)"
        ) from exc
    finally:
        loader.dispose()
    lines = _line_map(node)
    errors = [
        DefinitionError(
            where,
            line,
            render_path(dup),
            f"duplicate key {dup[-1]!r} (first given on line {first})",
        )
        for dup, line, first in _duplicate_keys(node)
    ]
    if not isinstance(plain, dict):
        errors.append(
            DefinitionError(
                where, lines[()], "", f"expected a mapping of {fields}, got {_kind(plain)}"
            )
        )
        raise_errors(errors)
    return plain, lines, errors


def parse_definition(
    source: str,
    path: Path | str,
    *,
    expected_name: str | None = None,
    data: bytes | None = None,
) -> LoadedDefinition:
    """Validate definition text; ``path`` is only used in messages and on the result."""
    path = Path(path)
    where = str(path)
    plain, lines, errors = read_mapping(
        source,
        where,
        empty="expected a campaign mapping",
        fields="campaign fields (name:, audience:, ...)",
        file_kind="a campaign file",
    )
    try:
        definition = CampaignDefinition.model_validate(plain)
    except ValidationError as exc:
        errors.extend(_translate(where, exc.errors(), lines))
        raise_errors(errors)
        raise AssertionError("unreachable") from exc
    if expected_name is not None and definition.name != expected_name:
        errors.append(
            DefinitionError(
                where,
                lines.get(("name",)),
                "name",
                f"{definition.name!r} must equal the file name {expected_name!r}"
                f" (rename the file or the campaign)",
            )
        )
    raise_errors(errors)
    raw = data if data is not None else source.encode("utf-8")
    return LoadedDefinition(
        path=path,
        definition=definition,
        source=source,
        content_hash=content_hash(raw),
        lines=lines,
    )


def campaign_paths(campaigns_dir: Path) -> list[Path]:
    """Every ``*.yaml`` campaign file in the folder, by name."""
    if not campaigns_dir.is_dir():
        raise NotFoundError(f"{campaigns_dir}: no campaigns folder (set CAMPAIGN_CAMPAIGNS_DIR)")
    return sorted(campaigns_dir.glob(f"*{SUFFIX}"))


def load_campaign(campaigns_dir: Path, name: str) -> LoadedDefinition:
    """The campaign called ``name`` (``<campaigns_dir>/<name>.yaml``)."""
    path = campaigns_dir / f"{name}{SUFFIX}"
    if "/" in name or "\\" in name or not path.is_file():
        available = ", ".join(p.stem for p in campaign_paths(campaigns_dir)) or "none"
        raise NotFoundError(f"no campaign {name!r} in {campaigns_dir} (available: {available})")
    return load_definition(path)


def load_all(campaigns_dir: Path) -> list[LoadedDefinition]:
    """Every campaign in the folder; raises ALL errors of ALL files together, if any."""
    loaded: list[LoadedDefinition] = []
    errors: list[DefinitionError] = []
    for path in campaign_paths(campaigns_dir):
        try:
            loaded.append(load_definition(path))
        except (DefinitionError, DefinitionErrors) as exc:
            errors.extend(error_list(exc))
    raise_errors(errors)
    return loaded


# --------------------------------------------------------------------------- errors


def _syntax_error(where: str, exc: yaml.MarkedYAMLError) -> DefinitionError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = exc.problem or "invalid YAML"
    context = f" ({exc.context} on line {exc.context_mark.line + 1})" if exc.context_mark else ""
    if exc.context and not exc.context_mark:
        context = f" ({exc.context})"
    return DefinitionError(where, line, "", f"YAML syntax error: {problem}{context}")


def render_path(path: YamlPath) -> str:
    """('steps', 1, 'delay') -> 'steps[1].delay'."""
    text = ""
    for element in path:
        if isinstance(element, int):
            text += f"[{element}]"
        else:
            text += f".{element}" if text else str(element)
    return text


def _nearest_line(lines: Mapping[YamlPath, int], path: YamlPath) -> int | None:
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


@dataclass
class _Located:
    path: YamlPath
    keys: list[str] | None  # the keys allowed where the path ends (for unknown-key hints)
    labels: list[str]  # union member labels pydantic put in loc (e.g. 'str', 'date')


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _members(tp: Any) -> list[Any] | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return [arg for arg in typing.get_args(tp) if arg is not type(None)]
    return None


def _tag_of(tp: Any) -> str | None:
    if typing.get_origin(tp) is typing.Annotated:
        for meta in tp.__metadata__:
            if type(meta).__name__ == "Tag":
                tag: str = meta.tag
                return tag
    return None


def _model_keys(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def _locate(loc: Sequence[str | int], root: type[BaseModel] = CampaignDefinition) -> _Located:
    """Walk ``loc`` alongside the schema (``root``: the file's model): keep YAML keys and
    indexes, drop the tags and union labels pydantic inserts."""
    current: Any = root
    path: list[str | int] = []
    labels: list[str] = []
    keys: list[str] | None = None
    for element in loc:
        keys = None
        current = _unwrap(current)
        members = _members(current)
        while members is not None and len(members) == 1:  # Optional[X]: pydantic adds no label
            current = _unwrap(members[0])
            members = _members(current)
        if members is not None:
            tags = {_tag_of(member): member for member in members}
            if element in tags:  # a discriminator tag: not in the YAML
                current = tags[element]
                continue
            current = None
            if isinstance(element, str):  # a smart-union member label, e.g. 'date'
                labels.append(element)
                continue
        path.append(element)
        if isinstance(current, type) and issubclass(current, BaseModel):
            known = _model_keys(current)
            info = known.get(element) if isinstance(element, str) else None
            if info is None:
                keys = sorted(known)
                current = None
            elif info.metadata:
                current = typing.Annotated[(info.annotation, *info.metadata)]
            else:
                current = info.annotation
        elif typing.get_origin(current) in (list, tuple) and isinstance(element, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        else:
            current = None
    return _Located(tuple(path), keys, labels)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, int | float):
        return f"the number {value}"
    return _short(value)


def _short(value: Any) -> str:
    text = value.isoformat() if isinstance(value, date | datetime) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_HINTS = {
    "int": "a whole number",
    "float": "a number",
    "decimal": "a number",
    "bool": "true or false",
    "string": "text",
    "str": "text",
    "list": "a list",
    "dict": "a mapping (key: value)",
    "model": "a mapping (key: value)",
    "date": "a date like 2026-12-01",
    "datetime": "a date-time like 2026-12-01T10:00:00-05:00",
    "time": "a time like '09:00'",
    "timedelta": "a duration like '3d'",
}


_REQUIRED_HINTS = {
    "name": "the campaign name, equal to the file name, e.g. name: winback-inactive",
    "audience": "who the campaign is for, e.g. audience: {field: status, eq: active}",
    "goal": "what counts as a conversion, e.g. goal: {events: [login], window: 30d}",
    "steps": "the list of contacts, e.g. steps: [{id: email-1, channel: email, template: x}]",
    "events": "the event types that count as a conversion, e.g. events: [login]",
    "window": "the attribution window after enrollment, e.g. window: 30d",
    "id": "a step id unique in the campaign, e.g. id: email-1",
    "channel": "email, sms or call",
    "start": "a 24-hour time, e.g. start: '09:00'",
    "end": "a 24-hour time, e.g. end: '20:00'",
    "max": "the most contacts allowed, e.g. max: 3",
    "per": "the rolling window, e.g. per: 7d",
    "after": "the minimum gap between entries, e.g. after: 90d",
    "template": "the template name, e.g. template: winback_a",
    "field": "a participant field, e.g. field: points_balance",
}

_UNION_HINTS = {
    "str": "text",
    "int": "a number",
    "float": "a number",
    "decimal": "a number",
    "bool": "true/false",
    "date": "a date (2026-12-01)",
    "datetime": "a date-time (2026-12-01T10:00:00-05:00)",
    "list[str]": "a list of names",
}


def _message(error: ErrorDetails, located: _Located) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    if kind == "definition":
        return str(ctx["message"])
    if kind == "value_error":
        return str(ctx.get("error") or error["msg"].removeprefix("Value error, "))
    if kind == "missing":
        key = located.path[-1] if located.path else ""
        hint = _REQUIRED_HINTS.get(str(key))
        return f"required field is missing{'; ' + hint if hint else ''}"
    if kind == "extra_forbidden":
        key = str(located.path[-1]) if located.path else "?"
        text = f"unknown key {key!r}"
        if located.keys:
            close = difflib.get_close_matches(key, located.keys, n=1)
            text += f"; did you mean {close[0]!r}?" if close else ";"
            text += f" Expected one of: {', '.join(located.keys)}"
        return text
    if kind == "literal_error":
        return f"{_short(value)} is not allowed; expected {ctx.get('expected')}"
    if kind in ("filter_kind", "reentry_kind"):
        got = f" (got {_kind(value)}" + (
            f" with keys {', '.join(map(str, value))})" if isinstance(value, dict) else ")"
        )
        return f"{error['msg']}{got}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s)"
    if kind == "timezone_aware":
        return f"{_short(value)} needs a UTC offset, e.g. 2026-12-01T10:00:00-05:00"
    if kind == "decimal_max_places":
        return f"{_short(value)} has too many decimals; at most {ctx.get('decimal_places')}"
    for prefix in ("greater_than", "less_than"):
        if kind.startswith(prefix):
            return f"{_short(value)}: {error['msg'][0].lower()}{error['msg'][1:]}"
    base = kind.split("_")[0]
    if kind.endswith(("_type", "_parsing")) or kind.startswith("int_from"):
        expected = _TYPE_HINTS.get(base) or _TYPE_HINTS.get(kind.removesuffix("_type"))
        if expected:
            return f"expected {expected}, got {_kind(value)}"
    return f"{error['msg']} (got {_kind(value)})"


def _translate(
    where: str,
    errors: Sequence[ErrorDetails],
    lines: Mapping[YamlPath, int],
    root: type[BaseModel] = CampaignDefinition,
) -> list[DefinitionError]:
    """pydantic errors -> DefinitionErrors at the right line, one per YAML path (``root``:
    the model of the whole file; report subscriptions reuse this with theirs)."""
    grouped: dict[YamlPath, list[tuple[ErrorDetails, _Located]]] = {}
    for error in errors:
        located = _locate(error["loc"], root)
        at = (error.get("ctx") or {}).get("at") or ()
        if at:
            located = _Located((*located.path, *at), located.keys, located.labels)
        grouped.setdefault(located.path, []).append((error, located))
    result = []
    for path, group in grouped.items():
        labels = [label for _, located in group for label in located.labels]
        if len(group) > 1 and labels:
            # A smart union failed on every member: say what any of them would accept.
            expected = dict.fromkeys(_UNION_HINTS.get(label, label) for label in labels)
            message = f"expected {' or '.join(expected)}, got {_kind(group[0][0].get('input'))}"
        else:
            message = "; ".join(dict.fromkeys(_message(e, located) for e, located in group))
        result.append(
            DefinitionError(where, _nearest_line(lines, path), render_path(path), message)
        )
    return result
