"""Claim-next obeys the calling window in the recipient's zone, across zones and DST changes
(hypothesis). The oracle reads the wall clock with zoneinfo directly."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from calls_helpers import campaign_source, make_run, make_world, unit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.app import App
from engine.calls.listing import list_calls
from engine.calls.tasks import claim_next
from engine.db.models import CallTask

ZONES = [
    "America/New_York",  # DST 8 March / 1 November 2026
    "America/Los_Angeles",
    "America/Phoenix",  # no DST
    "Europe/London",  # DST 29 March / 25 October 2026
    "Australia/Sydney",  # southern hemisphere DST
    "Asia/Kolkata",  # +05:30
    "Pacific/Chatham",  # +12:45 / +13:45
]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Instants clustered around the 2026 DST changes, plus anywhere in the year.
DST_EDGES = [
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2026, 3, 29, 1, tzinfo=UTC),
    datetime(2026, 4, 5, 16, tzinfo=UTC),
    datetime(2026, 10, 4, 16, tzinfo=UTC),
    datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
]
instants = st.one_of(
    st.builds(
        lambda edge, minutes: edge + timedelta(minutes=minutes),
        st.sampled_from(DST_EDGES),
        st.integers(-36 * 60, 36 * 60),
    ),
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
    ),
)
windows = st.one_of(
    st.none(),
    st.builds(
        lambda start, end, days: {
            "start": f"{start:02d}:00",
            "end": f"{end:02d}:30",
            "days": sorted(days, key=DAYS.index),
        },
        st.integers(6, 12),
        st.integers(13, 22),
        st.sets(st.sampled_from(DAYS), min_size=1),
    ),
)


def inside(instant: datetime, zone: str, window: dict | None) -> bool:  # type: ignore[type-arg]
    local = instant.astimezone(ZoneInfo(zone))
    start, end, days = time(8), time(21), set(DAYS)
    if window is not None:
        start = max(start, time.fromisoformat(window["start"]))
        end = min(end, time.fromisoformat(window["end"]))
        days = set(window["days"])
    return DAYS[local.weekday()] in days and start <= local.time().replace(tzinfo=None) < end


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(zone=st.sampled_from(ZONES), instant=instants, window=windows)
def test_claim_only_inside_the_recipients_calling_window(
    app: App,
    zone: str,
    instant: datetime,
    window: dict | None,  # type: ignore[type-arg]
) -> None:
    instant = instant.replace(second=0, microsecond=0)
    w = make_world(app) if not _world else _world[0]
    _world[:] = [w]
    if "ana" not in _agents:
        w.agent("ana")
        _agents.add("ana")
    fields = {"call_window": window} if window else {}
    run_id = make_run(app, w.program_id, campaign_source(f"c{len(_runs)}", **fields))
    _runs.append(run_id)
    task = w.task(w.member(timezone=zone), due_at=instant - timedelta(hours=1), run_id=run_id)
    with unit(app) as s:
        claim = claim_next(s, "ana", at=instant)
    expected = inside(instant, zone, window)
    assert (claim is not None) == expected, (zone, instant, window)
    if claim is None:
        with unit(app) as s:
            listed = {r.task_id: r for r in list_calls(s, at=instant, agent="ana")}
        opens = listed[task].callable_at
        if opens is not None:  # None: a window that never opens within the horizon
            assert opens > instant and inside(opens, zone, window)
            # and not a minute earlier
            assert not inside(opens - timedelta(minutes=1), zone, window) or (
                opens - timedelta(minutes=1) <= instant
            )
    with unit(app) as s:
        row = s.get(CallTask, task)
        assert row is not None
        row.status = "closed"


_world: list = []  # type: ignore[type-arg]
_agents: set[str] = set()
_runs: list[int] = []


def setup_function() -> None:
    _world.clear()
    _agents.clear()
    _runs.clear()
