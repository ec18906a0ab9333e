"""`campaign validate`: everything that can be checked about campaign files without a database.

Per file: the schema (through the loader, with file:line errors); every referenced template
exists (all three email parts for the default locale) and parses as Jinja2 in the same
sandbox the sender uses; templates use only the variables the sender provides; marketing
email carries the unsubscribe link and postal address; every template file (each locale
variant) RENDERS, with the sender's renderer (``engine.templates``), for a sample participant
with every documented field set, so a misspelt attribute fails here with file and line and
never at send time; the audience and exclusion filters compile to SQL for SQLite and
PostgreSQL (``engine.audience.compile_audience``).

Warnings (printed, never failing): a locale variant that lacks some email parts (those parts
fall back to the default locale), an SMS whose fixed text alone already exceeds
``sms_max_segments``, or one that does when rendered for the sample participant (with the
opt-out notice the renderer adds to a first SMS unless the campaign's program turns it off;
sizes are kept in ``FileReport.sms``), a first SMS without opt-out wording.

The one fact from a database: each program's ``sms_opt_out_notice``, passed in by the caller
(``sms_opt_out_notices``, read by :func:`engine.programs.stored_sms_opt_out_notices`). A program
not in it (no database yet, or a program not created yet) gets the default: the notice is on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from engine.definitions.filters import AllOf, AnyOf, Filter, Not, fields_required
from engine.definitions.loader import (
    DefinitionErrors,
    LoadedDefinition,
    YamlPath,
    campaign_paths,
    error_list,
    load_definition,
    render_path,
)
from engine.definitions.schema import SENDGRID_TEMPLATE, Step
from engine.errors import DefinitionError, EngineError
from engine.programs import opt_out_notice_of
from engine.sender_identity import sender_identity_problem
from engine.templates import (
    BLANK_FIELDS,
    HOLE_FIELDS,
    SAMPLE_POSTAL_ADDRESS,
    SAMPLE_PUBLIC_URL,
    SMS_MAX_CHARACTERS,
    SMS_MAX_SEGMENTS,
    VALIDATE_RENDER_SECONDS,
    Renderer,
    TemplateError,
    count_blanks,
    edge_sample_contexts,
    sample_context,
    sms_size,
)

EMAIL_PARTS = ("subject", "html", "txt")
LOCALE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?$")
# What the sender puts in every template's context (docs/campaign-format.md, "Templates").
CONTEXT_VARIABLES = {
    "email": {"participant", "program", "campaign", "step", "unsubscribe_url", "postal_address"},
    "sms": {"participant", "program", "campaign", "step"},
    "call": {"participant", "program", "campaign", "step"},
}
# Marketing email must carry these (CAN-SPAM / RFC 8058 unsubscribe; postal address).
EMAIL_REQUIRED_VARIABLES = ("unsubscribe_url", "postal_address")
CHANNEL_FOLDERS = {"email": "email", "sms": "sms", "call": "calls"}
OPT_OUT_WORDS = ("STOP",)


@dataclass(frozen=True)
class TemplateSet:
    """The files of one template name: parts of the default locale and of each locale."""

    channel: str
    name: str
    default: dict[str, Path]
    locales: dict[str, dict[str, Path]]

    def located(self) -> list[tuple[str | None, Path]]:
        """(locale or None for the default, file) of every file, default first."""
        files: list[tuple[str | None, Path]] = [(None, p) for p in self.default.values()]
        for locale, parts in sorted(self.locales.items()):
            files.extend((locale, p) for p in parts.values())
        return files

    def all_files(self) -> list[Path]:
        files = list(self.default.values())
        for parts in self.locales.values():
            files.extend(parts.values())
        return files


def template_parts(channel: str) -> tuple[str, ...]:
    return EMAIL_PARTS if channel == "email" else ("txt",)


def find_templates(templates_dir: Path, channel: str, name: str) -> TemplateSet:
    """Locate ``<name>.<part>.j2`` and ``<name>.<locale>.<part>.j2`` under the channel folder."""
    folder = templates_dir / CHANNEL_FOLDERS[channel]
    default: dict[str, Path] = {}
    locales: dict[str, dict[str, Path]] = {}
    for part in template_parts(channel):
        path = folder / f"{name}.{part}.j2"
        if path.is_file():
            default[part] = path
        for candidate in sorted(folder.glob(f"{name}.*.{part}.j2")):
            locale = candidate.name[len(name) + 1 : -len(f".{part}.j2")]
            if LOCALE.match(locale):
                locales.setdefault(locale, {})[part] = candidate
    return TemplateSet(channel, name, default, locales)


@dataclass(frozen=True)
class SmsReport:
    """An SMS template's size when rendered for the sample participant."""

    path: str
    locale: str | None
    characters: int
    encoding: str
    segments: int


@dataclass
class FileReport:
    """The outcome for one campaign file."""

    path: Path
    name: str | None = None
    content_hash: str | None = None
    errors: list[DefinitionError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Each SMS template rendered for the sample participant (kept out of as_dict's JSON).
    sms: list[SmsReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.name,
            "ok": self.ok,
            "content_hash": self.content_hash,
            "errors": [
                {"path": e.path, "line": e.line, "field": e.field, "message": e.detail}
                for e in self.errors
            ],
            "warnings": self.warnings,
        }


@dataclass
class ValidationReport:
    files: list[FileReport]
    audience_checked: bool

    @property
    def ok(self) -> bool:
        return all(report.ok for report in self.files)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "audience_checked": self.audience_checked,
            "files": [report.as_dict() for report in self.files],
        }


def validate_campaigns(
    paths: Sequence[Path] | None,
    *,
    campaigns_dir: Path,
    templates_dir: Path,
    at: datetime,
    sms_opt_out_notices: Mapping[str, bool] | None = None,
    sender: tuple[str, str] | None = None,
) -> ValidationReport:
    """Validate the given files, or every ``*.yaml`` in ``campaigns_dir`` when none are given.
    ``at`` is the instant relative dates in audiences are compiled for;
    ``sms_opt_out_notices`` each program's setting by key (a program not in it: on);
    ``sender`` the configured (email_from, postal_address): a real program's email campaign
    is refused while they are the demo's (engine/sender_identity.py)."""
    notices = sms_opt_out_notices or {}
    files = list(paths) if paths else campaign_paths(campaigns_dir)
    checker = _TemplateChecker(templates_dir)
    compiler = audience_compiler()
    reports = []
    for path in files:
        report = FileReport(path=path)
        try:
            loaded = load_definition(path)
        except (DefinitionError, DefinitionErrors) as exc:
            report.errors.extend(error_list(exc))
        except EngineError as exc:  # unreadable or missing file
            message = str(exc).removeprefix(f"{path}: ")
            report.errors.append(DefinitionError(str(path), None, "", message))
        else:
            report.name = loaded.name
            report.content_hash = loaded.content_hash
            checker.sms_sizes = report.sms
            checker.program = loaded.definition.program
            checker.opt_out_notice = opt_out_notice_of(loaded.definition.program, notices)
            report.errors.extend(checker.check(loaded, report.warnings))
            if sender is not None:
                report.errors.extend(check_sender(loaded, *sender))
            if compiler is not None:
                report.errors.extend(check_audience(loaded, at=at, compile_=compiler))
        reports.append(report)
    return ValidationReport(reports, audience_checked=compiler is not None)


def check_sender(
    loaded: LoadedDefinition, email_from: str, postal_address: str
) -> list[DefinitionError]:
    definition = loaded.definition
    problem = sender_identity_problem(
        program=definition.program,
        channels=definition.channels,
        email_from=email_from,
        postal_address=postal_address,
    )
    if problem is None:
        return []
    return [DefinitionError(str(loaded.path), loaded.line_of(("program",)), "program", problem)]


# --------------------------------------------------------------------------- templates


class _TemplateChecker:
    """Checks template references; each template file is parsed once per validate run."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.renderer = Renderer(
            templates_dir, postal_address=SAMPLE_POSTAL_ADDRESS, public_url=SAMPLE_PUBLIC_URL
        )
        # The sender's own environment: same sandbox, same filters (`number`, `date`).
        self.env = self.renderer.env
        self._parsed: dict[Path, DefinitionError | jinja2.nodes.Template] = {}
        self._rendered: dict[Path, DefinitionError | str] = {}
        # Rendered SMS sizes of the file being checked (reset per file by the caller), and
        # whether its program adds the opt-out notice to a first SMS.
        self.sms_sizes: list[SmsReport] = []
        self.program: str | None = None
        self.opt_out_notice = True

    def check(self, loaded: LoadedDefinition, warnings: list[str]) -> list[DefinitionError]:
        errors: list[DefinitionError] = []
        first_sms = next((s for s in loaded.definition.steps if s.channel == "sms"), None)
        for index, step in enumerate(loaded.definition.steps):
            for key, name in _references(step):
                where: YamlPath = ("steps", index, *key)
                errors.extend(self._check_one(loaded, step, where, name, warnings))
                if step is first_sms:
                    self._opt_out_warning(loaded, where, name, warnings)
        return errors

    def _check_one(
        self,
        loaded: LoadedDefinition,
        step: Step,
        where: YamlPath,
        name: str,
        warnings: list[str],
    ) -> list[DefinitionError]:
        if SENDGRID_TEMPLATE.match(name):
            return []  # a dynamic template held at SendGrid: nothing local to check
        found = find_templates(self.templates_dir, step.channel, name)
        line, field_name = loaded.line_of(where), render_path(where)
        folder = self.templates_dir / CHANNEL_FOLDERS[step.channel]
        missing = [part for part in template_parts(step.channel) if part not in found.default]
        errors = []
        if missing:
            files = ", ".join(str(folder / f"{name}.{part}.j2") for part in missing)
            errors.append(
                DefinitionError(str(loaded.path), line, field_name, f"template not found: {files}")
            )
        if step.channel == "email":
            for locale, parts in sorted(found.locales.items()):
                absent = [part for part in EMAIL_PARTS if part not in parts]
                if absent:
                    warnings.append(
                        f"{folder / name}.{locale}.*: no {', '.join(absent)} part; "
                        f"{locale} recipients get the default locale's"
                    )
        used_by = f"{loaded.path}:{line} {field_name}"
        rendered: dict[Path, str] = {}
        for file_locale, path in found.located():
            file_errors = self._check_file(path, step.channel, used_by)
            if not file_errors:
                # Render against a sample participant with every documented field, so a
                # misspelt attribute fails here with file and line, never at send time.
                outcome = self._render(path, step.channel, file_locale)
                if isinstance(outcome, DefinitionError):
                    file_errors.append(_used_by(outcome, used_by))
                else:
                    rendered[path] = outcome
            errors.extend(file_errors)
        if step.channel == "sms":
            first = step is next(s for s in loaded.definition.steps if s.channel == "sms")
            self._segment_warnings(loaded, found, warnings, rendered, first)
        required = fields_required(loaded.definition.audience)
        for file_locale, path in found.located():
            if path in rendered:
                warnings.extend(self._edge_warnings(path, step, file_locale, used_by, required))
        return errors

    def _edge_warnings(
        self, path: Path, step: Step, locale: str | None, used_by: str, required: frozenset[str]
    ) -> list[str]:
        """Render the file for the edge members too (blank fields, longest values): what
        would make the sequencer skip real members (render_error, empty_subject,
        sms_too_long, over_segment_limit), and the fields a member may lack that the file
        prints with no guard, as warnings."""
        found: list[str] = []
        for label, context in edge_sample_contexts(step.channel, locale):
            try:
                text = self.renderer.render_file_within(path, context, VALIDATE_RENDER_SECONDS)
            except TemplateError as exc:
                found.append(
                    f"{path}: fails for a member with {label} ({exc.problem}); such members "
                    f"would be skipped as render_error (used by {used_by})"
                )
                continue
            if label == BLANK_FIELDS:
                holes = [f for f in self._printed_blank(path, context) if f not in required]
                if holes:
                    names = ", ".join(holes)
                    found.append(
                        f"{path}: prints nothing where a member has no {names}, and the "
                        f"audience does not require {'it' if len(holes) == 1 else 'them'}: "
                        "such members would read a sentence with a hole; guard it with "
                        f"{{% if participant.{holes[0]} %}}...{{% endif %}} or require it in "
                        f"the audience (used by {used_by})"
                    )
            if path.name.endswith(".subject.j2") and not text.strip():
                found.append(
                    f"{path}: the subject renders empty for a member with {label}; such "
                    f"members would be skipped as empty_subject (used by {used_by})"
                )
            if step.channel == "sms":
                sms = self.renderer.finish_sms(
                    text, locale, first_in_campaign=False, opt_out_notice=False
                )
                if sms.characters > SMS_MAX_CHARACTERS or sms.segments > SMS_MAX_SEGMENTS:
                    found.append(
                        f"{path}: {sms.characters} characters for a member with {label}, more "
                        f"than Twilio takes; such members would be skipped as sms_too_long"
                    )
                elif step.sms_max_segments is not None and sms.segments > step.sms_max_segments:
                    found.append(
                        f"{path}: {sms.segments} segments for a member with {label}, over the "
                        f"step's sms_max_segments ({step.sms_max_segments}); such members "
                        "would be skipped as over_segment_limit"
                    )
        return found

    def _printed_blank(self, path: Path, blank: Mapping[str, Any]) -> list[str]:
        """The fields the file prints, unguarded, as nothing for the blank-fields member: those
        whose value, given back one at a time, removes a blank from the render."""
        template = self.renderer.compile(path)

        def blanks(context: Mapping[str, Any]) -> int:
            return count_blanks(lambda: self.renderer.render_template(template, context))

        everything_blank = blanks(blank)
        if not everything_blank:
            return []
        member = blank["participant"]
        sample = sample_context("sms", member.locale)["participant"]
        return [
            name
            for name in HOLE_FIELDS
            if blanks({**blank, "participant": replace(member, **{name: getattr(sample, name)})})
            < everything_blank
        ]

    def _render(self, path: Path, channel: str, locale: str | None) -> DefinitionError | str:
        """The file rendered for the sample participant (once per validate run)."""
        if path not in self._rendered:
            try:
                text = self.renderer.render_file_within(
                    path, sample_context(channel, locale), VALIDATE_RENDER_SECONDS
                )
                if path.name.endswith(".subject.j2") and "\n" in text.strip():
                    raise TemplateError(
                        str(path), None, "the subject renders to more than one line"
                    )
                self._rendered[path] = text
            except TemplateError as exc:
                self._rendered[path] = DefinitionError(exc.path, exc.line, "", exc.problem)
        return self._rendered[path]

    def _parse(self, path: Path) -> DefinitionError | jinja2.nodes.Template:
        if path not in self._parsed:
            source = path.read_text(encoding="utf-8")
            try:
                self._parsed[path] = self.env.parse(source, path.name, str(path))
            except jinja2.TemplateSyntaxError as exc:
                self._parsed[path] = DefinitionError(
                    str(path), exc.lineno, "", f"template syntax error: {exc.message}"
                )
        return self._parsed[path]

    def _check_file(self, path: Path, channel: str, used_by: str) -> list[DefinitionError]:
        parsed = self._parse(path)
        if isinstance(parsed, DefinitionError):
            return [_used_by(parsed, used_by)]
        source = path.read_text(encoding="utf-8")
        try:
            names = jinja2.meta.find_undeclared_variables(parsed)
        except jinja2.TemplateAssertionError as exc:  # e.g. an unknown filter
            return [
                DefinitionError(str(path), exc.lineno, "", f"{exc.message} (used by {used_by})")
            ]
        allowed = CONTEXT_VARIABLES[channel]
        errors = [
            DefinitionError(
                str(path),
                _line_of_name(source, name),
                "",
                f"unknown variable {name!r}; templates for {channel} can use "
                f"{', '.join(sorted(allowed))} (used by {used_by})",
            )
            for name in sorted(names - allowed)
        ]
        if channel == "email" and not path.name.endswith(".subject.j2"):
            for name in EMAIL_REQUIRED_VARIABLES:
                if name not in names:
                    errors.append(
                        DefinitionError(
                            str(path),
                            None,
                            "",
                            f"marketing email must show {{{{ {name} }}}} "
                            f"(unsubscribe link and sender's postal address; used by {used_by})",
                        )
                    )
        return errors

    def _segment_warnings(
        self,
        loaded: LoadedDefinition,
        found: TemplateSet,
        warnings: list[str],
        rendered: dict[Path, str],
        first_sms: bool,
    ) -> None:
        limit = loaded.definition.sms_max_segments
        for locale, path in found.located():
            text = _fixed_text(path.read_text(encoding="utf-8"))
            segments = sms_segments(text)
            if segments > limit:
                warnings.append(
                    f"{path}: the fixed text alone is {len(text)} characters, {segments} SMS "
                    f"segments (sms_max_segments is {limit})"
                )
                continue
            if path not in rendered:
                continue
            # What a sample participant would receive: with the opt-out notice, unless the
            # program turns it off.
            sms = self.renderer.finish_sms(
                rendered[path],
                locale,
                first_in_campaign=first_sms,
                opt_out_notice=self.opt_out_notice,
            )
            self.sms_sizes.append(
                SmsReport(str(path), locale, sms.characters, sms.encoding, sms.segments)
            )
            if sms.segments > limit:
                warnings.append(
                    f"{path}: rendered for a sample participant it is {sms.characters} "
                    f"characters ({sms.encoding}), {sms.segments} SMS segments "
                    f"(sms_max_segments is {limit})"
                )

    def _opt_out_warning(
        self, loaded: LoadedDefinition, where: YamlPath, name: str, warnings: list[str]
    ) -> None:
        if SENDGRID_TEMPLATE.match(name):
            return
        for path in find_templates(self.templates_dir, "sms", name).all_files():
            text = path.read_text(encoding="utf-8")
            if not any(word in text for word in OPT_OUT_WORDS):
                warning = (
                    f"{path}: the first SMS of {loaded.name} should say how to opt out "
                    f"(e.g. 'Reply STOP to opt out')"
                )
                if not self.opt_out_notice:
                    program = f"program {self.program}" if self.program else "its program"
                    warning += f"; {program} has the opt-out notice turned off, so none is added"
                warnings.append(warning)


def _references(step: Step) -> Iterable[tuple[YamlPath, str]]:
    """(YAML path below the step, template name) of every template the step uses."""
    if step.script is not None:
        yield ("script",), step.script
    if step.template is not None:
        yield ("template",), step.template
    for index, variant in enumerate(step.variants or ()):
        yield ("variants", index, "template"), variant.template


def _used_by(error: DefinitionError, used_by: str) -> DefinitionError:
    return DefinitionError(
        error.path, error.line, error.field, f"{error.detail} (used by {used_by})"
    )


def _line_of_name(source: str, name: str) -> int | None:
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    for number, line in enumerate(source.splitlines(), start=1):
        if pattern.search(line):
            return number
    return None


# --------------------------------------------------------------------------- SMS length

_EXPRESSION = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)


def _fixed_text(source: str) -> str:
    """The template's text without its Jinja expressions and tags (a lower bound on length)."""
    return _EXPRESSION.sub("", source).strip()


def sms_segments(text: str) -> int:
    """Segments an SMS of this text takes: GSM-7 160 / 153 per part, else UCS-2 70 / 67."""
    return sms_size(text).segments


# --------------------------------------------------------------------------- audience

CompileAudience = Any


def audience_compiler() -> CompileAudience | None:
    """``engine.audience.compile_audience`` when that module is present (hook for validate)."""
    try:
        from engine.audience import compile_audience
    except ImportError:
        return None
    return compile_audience


def check_audience(
    loaded: LoadedDefinition, *, at: datetime, compile_: CompileAudience
) -> list[DefinitionError]:
    """Compile the audience and each exclusion for SQLite and PostgreSQL, without a database.
    A failure is reported at the innermost condition that fails on its own."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialects = (sqlite.dialect(), postgresql.dialect())

    def fails(filter_: Filter) -> str | None:
        try:
            statement = compile_(filter_, program_id=0, at=at)
            for dialect in dialects:
                statement.compile(dialect=dialect)
        except (EngineError, ValueError, TypeError) as exc:
            return str(exc)
        return None

    errors = []
    roots: list[tuple[YamlPath, Filter]] = [(("audience",), loaded.definition.audience)]
    roots += [(("exclusions", i), f) for i, f in enumerate(loaded.definition.exclusions)]
    for root_path, root in roots:
        problem = fails(root)
        if problem is None:
            continue
        where, message = root_path, problem
        for path, node in _leaves(root, root_path):
            leaf_problem = fails(node)
            if leaf_problem is not None:
                where, message = path, leaf_problem
                break
        errors.append(
            DefinitionError(
                str(loaded.path),
                loaded.line_of(where),
                render_path(where),
                f"cannot compile: {message}",
            )
        )
    return errors


def _leaves(filter_: Filter, path: YamlPath) -> Iterable[tuple[YamlPath, Filter]]:
    if isinstance(filter_, AllOf):
        for index, child in enumerate(filter_.all):
            yield from _leaves(child, (*path, "all", index))
    elif isinstance(filter_, AnyOf):
        for index, child in enumerate(filter_.any):
            yield from _leaves(child, (*path, "any", index))
    elif isinstance(filter_, Not):
        yield from _leaves(filter_.not_, (*path, "not"))
    else:
        yield path, filter_
