"""Message rendering: Jinja2 in a sandbox, strict about undefined names, with locale fallback.

The contract for the context and the file names is docs/campaign-format.md ("Templates").
Every template file is compiled once per Renderer and cached together with the outcome of its
locale fallback, so rendering a message touches neither the file system nor the parser: the
sender calls this for every message (DESIGN.md floor: ~25k renders/s per core).

What the renderer guarantees whatever the template says:

- marketing email carries the unsubscribe link and the postal address (a compliance footer is
  appended to the html and text parts that lack either) and the RFC 8058 one-click headers;
- the first SMS of a campaign says how to opt out (" Reply STOP to opt out." is appended);
- a missing variable, a forbidden attribute or a syntax error is a ``TemplateError`` naming the
  template file and line, never an empty string in a sent message.

Templates see plain values only (``message_context``), never ORM objects.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from engine.errors import EngineError
from engine.locales import (
    display_name,
    format_currency,
    format_date,
    format_number,
    primary_language,
)
from engine.locales import label as word_for

CHANNEL_FOLDERS = {"email": "email", "sms": "sms", "call": "calls"}
EMAIL_PARTS = ("subject", "html", "txt")
SENDGRID_TEMPLATE = re.compile(r"^sendgrid:(d-[0-9a-f]{32})$")
LIST_UNSUBSCRIBE_POST = "List-Unsubscribe=One-Click"  # RFC 8058


class TemplateError(EngineError):
    """A template cannot be rendered: carries the file, the line (when known) and the problem."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")


class UnsubscribeSigner(Protocol):
    def sign(self, participant_id: int, channel: str = "email") -> str: ...


# --------------------------------------------------------------------------- context


class Attributes(dict[str, Any]):
    """``participant.attributes``: program-specific imported columns. A column a participant
    does not have is None (like every empty field), since which columns exist is known only
    per program, not to the template checker."""

    def __missing__(self, key: str) -> Any:
        return None


class SampleAttributes(Attributes):
    """Attributes of the validate-time sample participant: every name has a sample value."""

    def __missing__(self, key: str) -> Any:
        return f"sample {key}"


@dataclass(frozen=True, slots=True)
class ParticipantData:
    external_id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    status: str | None
    locale: str | None
    tier: str | None
    points_balance: int | None
    points_expiring: int | None
    points_expire_at: date | None
    renewal_date: date | None
    attributes: Attributes

    @property
    def full_name(self) -> str:
        """The name as the member's customs write it ('Maria Garcia', '王伟')."""
        return display_name(self.first_name, self.last_name, self.locale)


@dataclass(frozen=True, slots=True)
class ProgramData:
    name: str


@dataclass(frozen=True, slots=True)
class CampaignData:
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class StepData:
    id: str


_PARTICIPANT_FIELDS = tuple(
    name for name in ParticipantData.__dataclass_fields__ if name != "attributes"
)


def _value(source: Any, name: str) -> Any:
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def participant_data(participant: Any) -> ParticipantData:
    """Plain data from an ORM Participant, a dataclass or a mapping with the documented fields."""
    values = {name: _value(participant, name) for name in _PARTICIPANT_FIELDS}
    values["external_id"] = str(values["external_id"] or "")
    attributes = _value(participant, "attributes") or {}
    return ParticipantData(**values, attributes=Attributes(attributes))


def message_context(
    participant: Any,
    program: Any,
    campaign: Any,
    step: Any,
    *,
    unsubscribe_url: str | None = None,
) -> dict[str, Any]:
    """The documented template context from plain values.

    ``program`` is anything with a ``name`` (or the name itself), ``campaign`` anything with
    ``name`` and ``description`` (e.g. a CampaignDefinition), ``step`` anything with ``id``.
    ``unsubscribe_url`` is for email (``Renderer.unsubscribe_url``); the renderer adds
    ``postal_address`` to email contexts itself.
    """
    context: dict[str, Any] = {
        "participant": participant
        if isinstance(participant, ParticipantData)
        else participant_data(participant),
        "program": ProgramData(program if isinstance(program, str) else str(program.name)),
        "campaign": CampaignData(
            str(_value(campaign, "name")), str(_value(campaign, "description") or "")
        ),
        "step": StepData(str(_value(step, "id"))),
    }
    if unsubscribe_url is not None:
        context["unsubscribe_url"] = unsubscribe_url
    return context


# Twilio refuses a body longer than 1,600 characters (error 21617), i.e. about 10 segments.
SMS_MAX_CHARACTERS = 1600
SMS_MAX_SEGMENTS = 10

SAMPLE_PUBLIC_URL = "https://campaigns.example.com"
SAMPLE_POSTAL_ADDRESS = "Example Rewards, 100 Main Street, Springfield, IL 62701, USA"
_SAMPLE_NAMES = {
    "en": ("Maria", "Garcia"),
    "es": ("José", "Martínez"),
    "zh": ("伟", "王"),
}


def sample_context(channel: str, locale: str | None = None) -> dict[str, Any]:
    """A realistic fake participant with every documented field set, for `campaign validate`:
    a template that renders against this renders for a real participant with the same fields."""
    first, last = _SAMPLE_NAMES.get(primary_language(locale) or "en", _SAMPLE_NAMES["en"])
    participant = ParticipantData(
        external_id="M0012345",
        first_name=first,
        last_name=last,
        email="maria.garcia@example.com",
        phone="+12025550143",
        status="active",
        locale=locale,
        tier="Gold",
        points_balance=12_480,
        points_expiring=2_500,
        points_expire_at=date(2026, 4, 15),
        renewal_date=date(2026, 5, 1),
        attributes=SampleAttributes(),
    )
    context = message_context(
        participant,
        "Northwind Rewards",
        {"name": "sample-campaign", "description": "A sample campaign for template checks"},
        {"id": f"{channel}-1"},
        unsubscribe_url=f"{SAMPLE_PUBLIC_URL}/u/1.email.c2FtcGxlLXNpZ25hdHVyZQ"
        if channel == "email"
        else None,
    )
    if channel == "email":
        context["postal_address"] = SAMPLE_POSTAL_ADDRESS
    return context


# Edge members `campaign validate` also renders every template for (issue #16): what real
# imports hold, not only the tidy sample: blank optional fields, the longest names, huge
# numbers. A template that fails or renders empty/too long for one of them would skip real
# members at send time.
_LONG_FIRST = "Maximiliana-Alexandrina Wilhelmina"
BLANK_FIELDS = "blank fields"
# Fields an import may leave empty whose absence leaves a hole in a sentence ("due for
# renewal on ."). Not tier: "your membership" still reads; not the points, never empty
# (0 by default in the database).
HOLE_FIELDS = ("first_name", "last_name", "points_expire_at", "renewal_date")
_LONG_LAST = "Featherstonehaugh-Cholmondeley-Marjoribanks"


def edge_sample_contexts(
    channel: str, locale: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(label, context) of the edge members: ``blank fields`` and ``longest values``."""
    url = f"{SAMPLE_PUBLIC_URL}/u/1.email.c2FtcGxlLXNpZ25hdHVyZQ" if channel == "email" else None
    blank = ParticipantData(
        external_id="M0000001",
        first_name=None,
        last_name=None,
        email="a@example.com",
        phone="+12025550100",
        status="active",
        locale=locale,
        tier=None,
        points_balance=None,
        points_expiring=None,
        points_expire_at=None,
        renewal_date=None,
        attributes=Attributes(),
    )
    longest = ParticipantData(
        external_id="M" + "9" * 31,
        first_name=_LONG_FIRST,
        last_name=_LONG_LAST,
        email="maximiliana.featherstonehaugh-cholmondeley@rewards-members.example.com",
        phone="+12025550199",
        status="active",
        locale=locale,
        tier="Platinum Elite Lifetime",
        points_balance=999_999_999,
        points_expiring=99_999_999,
        points_expire_at=date(2026, 12, 31),
        renewal_date=date(2026, 12, 31),
        attributes=SampleAttributes(),
    )
    contexts = []
    for label, participant in ((BLANK_FIELDS, blank), ("longest values", longest)):
        context = message_context(
            participant,
            "Northwind Rewards",
            {"name": "sample-campaign", "description": "A sample campaign for template checks"},
            {"id": f"{channel}-1"},
            unsubscribe_url=url,
        )
        if channel == "email":
            context["postal_address"] = SAMPLE_POSTAL_ADDRESS
        contexts.append((label, context))
    return contexts


# --------------------------------------------------------------------------- filters


FORMAT_LOCALE = "_format_locale"  # set by the Renderer for each template it renders


def _locale_of(context: Context) -> str | None:
    if FORMAT_LOCALE in context:
        return context[FORMAT_LOCALE]
    return getattr(context.get("participant"), "locale", None)


def format_locale(template_locale: str | None, member_locale: str | None) -> str:
    """The locale a template's dates and numbers are written in: the member's when the
    template is in their language (es-MX's own customs in the es template), else the
    template's own (an English sentence for a fr member says "April 15, 2026", never
    "15 avril 2026"). Templates without a locale suffix are English."""
    language = template_locale or "en"
    if primary_language(member_locale) == primary_language(language):
        return member_locale or language
    return language


@jinja2.pass_context
def number_filter(context: Context, value: Any) -> str:
    """1234 -> '1,234' in the member's locale (CLDR: '1.234' for es); None -> ''."""
    if value is None:
        _note_blank()
    return format_number(value, _locale_of(context))


@jinja2.pass_context
def date_filter(context: Context, value: Any, style: str = "long") -> str:
    """A date in the member's locale: 'March 2, 2026' (en and no locale), '2 de marzo de 2026'
    (es), '2026年3月2日' (zh); ``date('medium')`` etc. for other CLDR widths, ``date('iso')``
    for ISO 8601; None -> ''."""
    if value is None:
        _note_blank()
    return format_date(value, _locale_of(context), style)


@jinja2.pass_context
def currency_filter(context: Context, value: Any, code: str = "USD") -> str:
    """An amount of money in the member's locale: ``12.5 | currency('USD')`` -> '$12.50'."""
    if value is None:
        _note_blank()
    return format_currency(value, code, _locale_of(context))


@jinja2.pass_context
def tier_filter(context: Context, value: Any) -> str:
    """The tier's name in the member's language ('gold' -> '金卡' for zh)."""
    if value is None:
        _note_blank()
    return word_for("tier", None if value is None else str(value), _locale_of(context))


@jinja2.pass_context
def status_filter(context: Context, value: Any) -> str:
    """The status's word in the member's language ('lapsed' -> 'vencida' for es)."""
    if value is None:
        _note_blank()
    return word_for("status", None if value is None else str(value), _locale_of(context))


# --------------------------------------------------------------------------- SMS length

_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
_GSM7_ALL = _GSM7 | _GSM7_EXTENDED


@dataclass(frozen=True)
class SmsSize:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int
    units: int  # septets (GSM-7, extension characters count 2) or UTF-16 code units
    segments: int


def sms_size(text: str) -> SmsSize:
    """Encoding and segment count: GSM-7 160 / 153 per part, else UCS-2 70 / 67 per part.
    One character outside the GSM-7 tables makes the whole message UCS-2."""
    # Set and codec operations (C speed): every SMS of a million-member step comes here.
    if _GSM7_ALL.issuperset(text):
        encoding, single, multi = "GSM-7", 160, 153
        units = len(text) + sum(text.count(char) for char in _GSM7_EXTENDED)
    else:
        encoding, single, multi = "UCS-2", 70, 67
        units = len(text.encode("utf-16-le", "surrogatepass")) // 2  # past U+FFFF: two units
    segments = 1 if units <= single else -(-units // multi)
    return SmsSize(encoding, len(text), units, segments)


# Carriers act on the keyword STOP in any language; the sentence around it is localised.
_OPT_OUT_NOTICE = {
    "en": " Reply STOP to opt out.",
    "es": " Responda STOP para no recibir más.",
    "zh": " 回复STOP退订。",
}
_STOP_WORD = re.compile(r"(?<![A-Za-z])STOP(?![A-Za-z])")


def has_opt_out_wording(body: str) -> bool:
    return _STOP_WORD.search(body) is not None


def opt_out_sentence(locale: str | None) -> str:
    return _OPT_OUT_NOTICE.get(primary_language(locale) or "en", _OPT_OUT_NOTICE["en"])


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class RenderedEmail:
    subject: str | None
    html: str | None
    text: str | None
    headers: dict[str, str]
    # A SendGrid dynamic template: no local parts, the data goes to SendGrid instead.
    template_id: str | None = None
    dynamic_template_data: dict[str, Any] | None = None
    footer_added: bool = False


@dataclass(frozen=True)
class RenderedSms:
    body: str
    encoding: str
    segments: int
    characters: int
    notice_added: bool = False


_FOOTER = {
    "en": ("You are receiving this email as a member of {program}.", "Unsubscribe"),
    "es": ("Recibe este correo como socio de {program}.", "Darse de baja"),
    "zh": ("您收到此邮件是因为您是{program}的会员。", "退订"),
}


def locale_candidates(locale: str | None) -> tuple[str, ...]:
    """'zh-Hant-TW' -> ('zh-Hant-TW', 'zh-Hant', 'zh'); the default file comes after these."""
    if not locale:
        return ()
    parts = re.split(r"[-_]", locale)
    return tuple("-".join(parts[:n]) for n in range(len(parts), 0, -1))


def dynamic_template_data(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context as JSON-ready data for a SendGrid dynamic template (dates in ISO 8601)."""

    def plain(value: Any) -> Any:
        if isinstance(value, ParticipantData | ProgramData | CampaignData | StepData):
            data = {name: plain(getattr(value, name)) for name in value.__dataclass_fields__}
            if isinstance(value, ParticipantData):
                data["full_name"] = value.full_name
            return data
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, Decimal):
            return str(value)
        return value

    return {key: plain(value) for key, value in context.items()}


_CONTEXT_FIELDS: dict[type, frozenset[str]] = {
    cls: frozenset(cls.__dataclass_fields__)
    for cls in (ParticipantData, ProgramData, CampaignData, StepData)
}
_CONTEXT_FIELDS[ParticipantData] |= {"full_name"}  # the one computed field


# `campaign validate` counts the blanks a render prints where the member's record has no value
# (a None printed, or handed to a formatting filter), to find sentences with a hole ("due for
# renewal on ."). None outside validate: sending pays one lookup per blank printed.
_blanks_printed: ContextVar[list[int] | None] = ContextVar("blanks_printed", default=None)


def _note_blank() -> None:
    counter = _blanks_printed.get()
    if counter is not None:
        counter[0] += 1


def count_blanks(render: Callable[[], object]) -> int:
    """How many blanks ``render()`` printed in place of a missing value."""
    counter = [0]
    token = _blanks_printed.set(counter)
    try:
        render()
    finally:
        _blanks_printed.reset(token)
    return counter[0]


def _blank_none(value: Any) -> Any:
    if value is None:
        _note_blank()
        return ""
    return value


# Bounds that keep a template from exhausting the machine: no message is near them (Gmail
# clips an email at 102 KB), a template written to blow up (`'a' * 10**8`) is refused.
MAX_RENDERED_CHARS = 1_000_000
# `campaign validate` renders each template within this (a loop of 20,000 x 20,000 is refused).
VALIDATE_RENDER_SECONDS = 2.0


def _bounded(chunks: Iterator[str]) -> Iterator[str]:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_RENDERED_CHARS:
            raise SecurityError(f"the output is longer than {MAX_RENDERED_CHARS:,} characters")
        yield chunk


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox with a fast path for our own context objects: a field of them is safe by
    construction. Checking each access generically cost half the render time of an email.
    Repetition (``*``) is bounded like the output."""

    intercepted_binops = frozenset({"*"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                too_long = (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_RENDERED_CHARS
                )
                if too_long:
                    raise SecurityError(
                        f"repeating a value {times:,} times makes more than "
                        f"{MAX_RENDERED_CHARS:,} characters"
                    )
        return super().call_binop(context, operator, left, right)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        fields = _CONTEXT_FIELDS.get(type(obj))
        if fields is not None:
            return attr in fields
        return bool(super().is_safe_attribute(obj, attr, value))

    def getattr(self, obj: Any, attribute: str) -> Any:
        # A data field of our context objects (plain str/int/date values, never a method)
        # needs none of the generic checks; every `participant.x` in a template comes here.
        if attribute in _CONTEXT_FIELDS.get(type(obj), ()):
            return getattr(obj, attribute)
        return super().getattr(obj, attribute)


class Renderer:
    """Renders emails, SMS and call scripts from ``templates_dir``; one per process is enough
    (compiled templates are cached for its lifetime; files edited meanwhile are not re-read).
    ``reload``: for a renderer kept by a long-lived process (the console's call sheets): each
    render looks at the files again (a stat per candidate file), so an edited file is compiled
    again and a locale's file added meanwhile is found; unchanged files stay compiled."""

    def __init__(
        self,
        templates_dir: Path | str,
        *,
        postal_address: str,
        public_url: str,
        unsubscribe_signer: UnsubscribeSigner | None = None,
        reload: bool = False,
    ) -> None:
        self.templates_dir = Path(templates_dir)
        self.reload = reload
        self.postal_address = postal_address
        self.public_url = public_url.rstrip("/")
        self.signer = unsubscribe_signer
        self.env = _Sandbox(
            loader=jinja2.FileSystemLoader(str(self.templates_dir)),
            undefined=jinja2.StrictUndefined,
            # Only HTML is escaped: a name with '<' stays as typed in text, subject and SMS.
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html.j2",), default_for_string=False, default=False
            ),
            # Without reload, no stat() per message: a Renderer sees files as they were.
            auto_reload=reload,
            cache_size=-1,
            keep_trailing_newline=False,
            # A field the member's record leaves empty prints as nothing, never as "None".
            finalize=_blank_none,
        )
        self.env.filters["number"] = number_filter
        self.env.filters["date"] = date_filter
        self.env.filters["currency"] = currency_filter
        self.env.filters["tier"] = tier_filter
        self.env.filters["status"] = status_filter
        # The globals every template sees, as one plain dict (see _render).
        self._globals: dict[str, Any] = dict(self.env.globals)
        # (channel, name, locale, part) -> the template that file resolution picked.
        self._resolved: dict[tuple[str, str, str | None, str], jinja2.Template] = {}
        self._template_locales: dict[str, str] = {}  # template name -> its locale suffix

    # ---------------------------------------------------------------- files

    def unsubscribe_url(self, participant_id: int, channel: str = "email") -> str:
        if self.signer is None:
            raise EngineError(
                "this renderer has no unsubscribe signer (see engine.consent.unsubscribe)"
            )
        return f"{self.public_url}/u/{self.signer.sign(participant_id, channel)}"

    def template_path(self, channel: str, name: str, part: str, locale: str | None = None) -> Path:
        infix = f".{locale}" if locale else ""
        return self.templates_dir / CHANNEL_FOLDERS[channel] / f"{name}{infix}.{part}.j2"

    def resolve(self, channel: str, name: str, locale: str | None, part: str) -> jinja2.Template:
        """The compiled template for this locale, falling back zh-Hant -> zh -> default."""
        if self.reload:  # which file, and whether it changed, asked of the disk each time
            return self._find(channel, name, locale, part)
        key = (channel, name, locale, part)
        template = self._resolved.get(key)
        if template is None:
            template = self._find(channel, name, locale, part)
            self._resolved[key] = template
        return template

    def _find(self, channel: str, name: str, locale: str | None, part: str) -> jinja2.Template:
        if channel not in CHANNEL_FOLDERS:
            raise TemplateError(str(self.templates_dir), None, f"unknown channel {channel!r}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            raise TemplateError(str(self.templates_dir), None, f"bad template name {name!r}")
        for candidate in (*locale_candidates(locale), None):
            path = self.template_path(channel, name, part, candidate)
            if path.is_file():
                return self.compile(path)
        raise TemplateError(
            str(self.template_path(channel, name, part)), None, "template not found"
        )

    def compile(self, path: Path) -> jinja2.Template:
        """The compiled template of one file under templates_dir (cached by the environment)."""
        name = path.relative_to(self.templates_dir).as_posix()
        try:
            return self.env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                str(path), exc.lineno, f"template syntax error: {exc.message}"
            ) from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(str(path), None, "template not found") from exc

    def render_template(self, template: jinja2.Template, context: Mapping[str, Any]) -> str:
        """Render, turning every template mistake into a TemplateError at file:line."""
        return self._render(template, {**self._globals, **context})

    def _render(self, template: jinja2.Template, parent: dict[str, Any]) -> str:
        """What ``Template.render`` does, with ``parent`` (the globals and the context) used
        as is: render() copies the context twice and walks the template's ChainMap of globals
        each time, a third of the cost of a small template. Jinja never writes to a
        context's parent, so the parts of one email share one."""
        env = self.env
        parent[FORMAT_LOCALE] = format_locale(
            self._template_locale(template), getattr(parent.get("participant"), "locale", None)
        )
        try:
            try:
                context = env.context_class(env, parent, template.name, template.blocks)
                return env.concat(_bounded(template.root_render_func(context)))
            except Exception:
                env.handle_exception()  # re-raised with template file:line in the traceback
        except jinja2.UndefinedError as exc:
            raise _error(template, exc, f"undefined: {_readable(exc.message)}") from None
        except jinja2.exceptions.SecurityError as exc:
            raise _error(template, exc, f"not allowed in a template: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise _error(template, exc, str(exc.message)) from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise _error(template, exc, f"{type(exc).__name__}: {exc}") from None

    def _template_locale(self, template: jinja2.Template) -> str | None:
        """'zh' for email/renewal_due.zh.subject.j2; None for a file without a locale."""
        name = template.name or ""
        found = self._template_locales.get(name)
        if found is None:
            parts = name.rsplit("/", 1)[-1].split(".")
            found = self._template_locales[name] = parts[1] if len(parts) == 4 else ""
        return found or None

    def render_file(self, path: Path, context: Mapping[str, Any]) -> str:
        return self.render_template(self.compile(path), context)

    def render_file_within(self, path: Path, context: Mapping[str, Any], seconds: float) -> str:
        """``render_file``, refused (TemplateError) past ``seconds``: for `validate`, which
        must not hang on a template that loops for hours. A trace function checks the clock
        as the template's code runs (slow, so never on the sending path)."""
        template = self.compile(path)
        deadline = time.monotonic() + seconds

        def tracer(frame: Any, event: str, arg: Any) -> Any:
            if time.monotonic() > deadline:
                raise SecurityError(f"rendering takes longer than {seconds:g} s")
            return tracer

        previous = sys.gettrace()
        sys.settrace(tracer)
        try:
            return self.render_template(template, context)
        finally:
            sys.settrace(previous)

    # ---------------------------------------------------------------- channels

    def render_email(
        self, template_name: str, context: Mapping[str, Any], locale: str | None
    ) -> RenderedEmail:
        url = context.get("unsubscribe_url")
        if not url:
            raise EngineError(
                f"email {template_name}: the context has no unsubscribe_url; "
                "every marketing email carries one"
            )
        headers = {
            "List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": LIST_UNSUBSCRIBE_POST,
        }
        full = {**context, "postal_address": self.postal_address}
        dynamic = SENDGRID_TEMPLATE.match(template_name)
        if dynamic:
            return RenderedEmail(
                None, None, None, headers, dynamic.group(1), dynamic_template_data(full)
            )
        parent = {**self._globals, **full}  # shared by the three parts
        subject_template = self.resolve("email", template_name, locale, "subject")
        subject = self._render(subject_template, parent).strip()
        if "\n" in subject or "\r" in subject:
            raise TemplateError(
                str(subject_template.filename), None, "the subject renders to more than one line"
            )
        html = self._render(self.resolve("email", template_name, locale, "html"), parent)
        text = self._render(self.resolve("email", template_name, locale, "txt"), parent)
        program = getattr(full.get("program"), "name", "")
        html_footer = not (str(escape(url)) in html and str(escape(self.postal_address)) in html)
        text_footer = not (url in text and self.postal_address in text)
        if html_footer:
            html = self._html_footer(html, url, program, locale)
        if text_footer:
            text = self._text_footer(text, url, program, locale)
        return RenderedEmail(subject, html, text, headers, footer_added=html_footer or text_footer)

    def _footer_words(self, locale: str | None) -> tuple[str, str]:
        return _FOOTER.get(primary_language(locale) or "en", _FOOTER["en"])

    def _html_footer(self, html: str, url: str, program: str, locale: str | None) -> str:
        reason, unsubscribe = self._footer_words(locale)
        footer = Markup(
            '\n<hr>\n<p style="font-size:12px;color:#666">{reason}\n'
            '<a href="{url}">{unsubscribe}</a><br>\n{address}</p>\n'
        ).format(
            reason=reason.format(program=program),
            url=url,
            unsubscribe=unsubscribe,
            address=self.postal_address,
        )
        # str(): adding Markup to a str would escape the str, i.e. the whole rendered email.
        footer_html, index = str(footer), html.lower().rfind("</body>")
        if index < 0:
            return html + footer_html
        return html[:index] + footer_html + html[index:]

    def _text_footer(self, text: str, url: str, program: str, locale: str | None) -> str:
        reason, unsubscribe = self._footer_words(locale)
        return (
            f"{text.rstrip()}\n\n--\n{reason.format(program=program)}\n"
            f"{unsubscribe}: {url}\n{self.postal_address}\n"
        )

    def render_sms(
        self,
        template_name: str,
        context: Mapping[str, Any],
        locale: str | None,
        *,
        first_in_campaign: bool,
        opt_out_notice: bool = True,
    ) -> RenderedSms:
        template = self.resolve("sms", template_name, locale, "txt")
        return self.finish_sms(
            self.render_template(template, context),
            locale,
            first_in_campaign=first_in_campaign,
            opt_out_notice=opt_out_notice,
        )

    def finish_sms(
        self, body: str, locale: str | None, *, first_in_campaign: bool, opt_out_notice: bool
    ) -> RenderedSms:
        body = body.strip()
        added = first_in_campaign and opt_out_notice and not has_opt_out_wording(body)
        if added:
            body += opt_out_sentence(locale)
        size = sms_size(body)
        return RenderedSms(body, size.encoding, size.segments, size.characters, added)

    def render_call_script(
        self, script_name: str, context: Mapping[str, Any], locale: str | None
    ) -> str:
        return self.render_template(self.resolve("call", script_name, locale, "txt"), context)


def _error(template: jinja2.Template, exc: BaseException, problem: str) -> TemplateError:
    filename = template.filename or template.name or "<template>"
    return TemplateError(filename, _template_line(exc.__traceback__, filename), problem)


def _template_line(tb: TracebackType | None, filename: str) -> int | None:
    """The innermost line of ``filename`` in a traceback Jinja rewrote to template lines."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


_TYPE_NAMES = {
    "ParticipantData": "participant",
    "ProgramData": "program",
    "CampaignData": "campaign",
    "StepData": "step",
    "Attributes": "participant.attributes",
}


def _readable(message: str | None) -> str:
    """'engine.templates.ParticipantData object' has no attribute 'x' -> 'participant' has..."""
    return re.sub(
        r"'engine\.templates\.(\w+) object'",
        lambda m: repr(_TYPE_NAMES.get(m.group(1), m.group(1))),
        message or "undefined variable",
    )


__all__ = [
    "RenderedEmail",
    "RenderedSms",
    "Renderer",
    "SmsSize",
    "TemplateError",
    "message_context",
    "sample_context",
    "sms_size",
]
