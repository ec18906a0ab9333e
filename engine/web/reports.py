"""The manager's reports served live (`/reports`), for supervisors, managers and coordinators.

Each report's filters, build and title come from engine/reports/catalog.py, the declarations
`campaign report` is made of, and it is rendered by engine/reports/render.py as `--html` and
`--csv` render it:

    GET /reports                   the list of reports
    GET /reports/NAME?filters      the report in the console's layout, with its filter form
    GET /reports/NAME.html?...     the standalone page, byte for byte what --html writes
    GET /reports/NAME.csv?...      what --csv prints, as a download

Filters are a GET form, so a report's URL can be shared. A wrong value (an unknown program,
campaign or run, a bad period) is shown on the page in the words of `campaign report`."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from engine.errors import EngineError
from engine.reports.catalog import BY_NAME, COMMON_FILTERS, REPORTS, BuiltReport, Filter, build
from engine.reports.render import CSS, report_body, to_csv, to_html
from engine.web.auth import Visitor, guard, visitor

if TYPE_CHECKING:
    from engine.web.app import Console

REPORT_ROLES = ("supervisor", "manager", "coordinator")
# The standalone page keeps --html's inline stylesheet: allowed by its hash on that route only,
# nothing else inline and nothing from another origin.
STANDALONE_CSP = (
    "default-src 'none'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()}'; "
    "frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    help: str
    value: str
    choices: tuple[str, ...]
    required: bool


def _fields(filters: tuple[Filter, ...], values: dict[str, str]) -> list[FormField]:
    return [
        FormField(
            f.name,
            f.argument or f.name,
            f.help,
            values.get(f.name, ""),
            f.choices,
            f.argument is not None,
        )
        for f in filters
    ]


def _values(request: Request, filters: tuple[Filter, ...]) -> dict[str, str]:
    """The filters given in the query, blanks left out (an empty field means no filter)."""
    values = {}
    for f in filters:
        raw = request.query_params.get(f.name, "").strip()
        if raw:
            values[f.name] = raw
    return values


def _build(console: Console, name: str, values: dict[str, str]) -> BuiltReport:
    spec = BY_NAME[name]
    own: dict[str, Any] = {}
    for f in spec.filters:
        value = values.get(f.name, f.default)
        own[f.name] = f.check(value) if value is not None else None
    at = console.app.clock.now()
    return console.read(
        lambda s: build(
            spec,
            s,
            console.app.settings,
            at=at,
            period=values.get("period"),
            program=values.get("program"),
            own=own,
        )
    )


def _missing(name: str, values: dict[str, str]) -> str | None:
    """What the form must say before anything is built (the CLI's required argument)."""
    for f in BY_NAME[name].filters:
        if f.argument is not None and f.name not in values:
            return f"Give {f.argument}: {f.help[0].lower()}{f.help[1:]}"
    return None


async def _reader(console: Console, request: Request) -> tuple[Visitor, Response | None]:
    who = await visitor(console, request)
    return who, guard(console, who, request, *REPORT_ROLES)


async def reports_index(console: Console, request: Request) -> Response:
    who, refused = await _reader(console, request)
    if refused is not None:
        return refused
    return console.page(who, "reports.html", reports=REPORTS, spec=None)


async def report_page(console: Console, request: Request) -> Response:
    who, refused = await _reader(console, request)
    if refused is not None:
        return refused
    name = request.path_params["name"]
    if name not in BY_NAME:
        return _unknown(console, who, name)
    spec = BY_NAME[name]
    values = _values(request, (*spec.filters, *COMMON_FILTERS))
    query = urlencode(values)
    context: dict[str, Any] = {
        "reports": REPORTS,
        "spec": spec,
        "own_fields": _fields(spec.filters, values),
        "common_fields": _fields(COMMON_FILTERS, values),
        "query": query,
        "body": None,
        "error": None,
        "prompt": _missing(name, values),
    }
    if context["prompt"] is not None:
        return console.page(who, "reports.html", **context)
    try:
        built = await run_in_threadpool(_build, console, name, values)
    except EngineError as exc:
        return console.page(who, "reports.html", status=400, **{**context, "error": str(exc)})
    report = built.report
    verdicts = report.verdicts() if hasattr(report, "verdicts") else []
    body = report_body(
        built.title, report.tables(), report.charts(), meta=built.meta, verdicts=verdicts
    )
    return console.page(who, "reports.html", **{**context, "body": body, "title": built.title})


async def report_file(console: Console, request: Request, kind: str) -> Response:
    """NAME.csv (what --csv prints) or NAME.html (what --html writes)."""
    who, refused = await _reader(console, request)
    if refused is not None:
        return refused
    name = request.path_params["name"]
    if name not in BY_NAME:
        return _unknown(console, who, name)
    spec = BY_NAME[name]
    values = _values(request, (*spec.filters, *COMMON_FILTERS))
    problem = _missing(name, values)
    built = None
    if problem is None:
        try:
            built = await run_in_threadpool(_build, console, name, values)
        except EngineError as exc:
            problem = str(exc)
    if built is None:
        assert problem is not None
        return console.page(who, "message.html", status=400, title="Report", message=problem)
    report = built.report
    if kind == "csv":
        stamp = console.app.clock.now().strftime("%Y%m%dT%H%M")
        response: Response = Response(
            to_csv(report.tables()),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'},
        )
        return console.finish(who, response)
    verdicts = report.verdicts() if hasattr(report, "verdicts") else []
    page = to_html(
        built.title, report.tables(), report.charts(), meta=built.meta, verdicts=verdicts
    )
    response = HTMLResponse(page)
    response.headers["Content-Security-Policy"] = STANDALONE_CSP
    return console.finish(who, response)


def _unknown(console: Console, who: Visitor, name: str) -> Response:
    known = ", ".join(spec.name for spec in REPORTS)
    return console.page(
        who,
        "message.html",
        status=404,
        title="No such report",
        message=f"no report {name!r}; the reports are {known}",
    )
