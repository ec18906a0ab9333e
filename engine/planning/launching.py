"""``launch`` (a run and its enrollments, in one INSERT ... SELECT) and ``launch_due`` (the
tick's and the scheduler's: every scheduled campaign whose fire has come, with the misfire
grace of engine/schedules.py and the caller's refusal check)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import BigInteger, Integer, String, case, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine import sampling
from engine.calls.claim_form import claim_form_of
from engine.clock import ensure_utc
from engine.db.models import CampaignRun, Enrollment, Participant
from engine.db.session import take_write_lock
from engine.db.types import UTCDateTime
from engine.definitions.loader import LoadedDefinition
from engine.definitions.schema import CampaignDefinition
from engine.errors import EngineError, InputError
from engine.planning.rules import (
    ONE_OFF_KEY,
    GlobalCap,
    Rules,
    existing_run,
    fire_key,
    program_of,
    tune,
)
from engine.schedules import first_seen, local_fire, record_skip, skip_reason
from engine.settings import Settings


@dataclass(frozen=True)
class LaunchResult:
    run_id: int
    campaign: str
    fire_key: str
    created: bool
    status: str
    launched_at: datetime
    enrolled: int
    treatment: int
    holdout: int

    @property
    def message(self) -> str:
        if self.created:
            return (
                f"Launched run {self.run_id} of {self.campaign}: {self.enrolled:,} enrolled "
                f"({self.treatment:,} treatment, {self.holdout:,} holdout)."
            )
        which = "" if self.fire_key == ONE_OFF_KEY else f" for the fire time {self.fire_key}"
        return (
            f"{self.campaign} was already launched{which} as run {self.run_id} "
            f"on {self.launched_at.isoformat()} (status {self.status}); nobody new was enrolled."
        )


@dataclass(frozen=True)
class DueLaunch:
    campaign: str
    result: LaunchResult | None = None
    error: str | None = None
    # A fire time not launched (late past the grace, or before its schedule was known).
    skipped: str | None = None
    # Due but refused by the caller's check (a real program still on the demo's sender
    # identity): said on every tick until fixed, and launched at the first tick after that.
    refused: str | None = None


# The daemon's and the tick's default misfire grace (Settings.scheduler_misfire_grace_seconds).
DEFAULT_MISFIRE_GRACE = timedelta(
    seconds=Settings.model_fields["scheduler_misfire_grace_seconds"].default
)


def _serialise(session: Session, name: str) -> None:
    """Take the per-campaign launch lock for the rest of the transaction.

    PostgreSQL: a transaction-level advisory lock, so concurrent launches of one campaign (two
    cron jobs, a fat finger) run one after the other and the second sees the first's run.
    SQLite: the database's write lock (take_write_lock); it must be the first statement of the
    transaction, so a reader never has to upgrade a stale snapshot.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(sampling.salt(f"launch:{name}"))))
    else:
        take_write_lock(session)


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def launch(
    session: Session,
    loaded: LoadedDefinition,
    *,
    at: datetime,
    global_cap: GlobalCap | None = None,
) -> LaunchResult:
    """Create the run and its enrollments in the caller's transaction, in SQL.

    Idempotent: a second (or concurrent) launch of the same one-off campaign, or of the same
    cron fire time, returns the existing run and enrolls nobody. On SQLite call it first in its
    transaction (see _serialise).
    """
    at = ensure_utc(at)
    definition = loaded.definition
    _serialise(session, definition.name)
    program = program_of(session, definition)
    key, not_now = fire_key(definition, at)
    if key is None or not_now is not None:
        raise InputError(
            f"campaign {definition.name} cannot be launched at {at.isoformat()}: {not_now}"
        )
    insert = _insert(session)
    run_id = session.execute(
        insert(CampaignRun)
        .values(
            campaign=definition.name,
            program_id=program.id,
            definition_hash=loaded.content_hash,
            definition_source=loaded.source,
            fire_key=key,
            status="active",
            launched_at=at,
            enrolled_count=0,
            holdout_count=0,
            claim_form=claim_form_of(definition),
        )
        .on_conflict_do_nothing(index_elements=["campaign", "fire_key"])
        .returning(CampaignRun.id)
    ).scalar_one_or_none()
    if run_id is None:
        existing = existing_run(session, definition.name, key)
        assert existing is not None
        return LaunchResult(
            run_id=existing.id,
            campaign=existing.campaign,
            fire_key=existing.fire_key,
            created=False,
            status=existing.status,
            launched_at=existing.launched_at,
            enrolled=existing.enrolled_count,
            treatment=existing.enrolled_count - existing.holdout_count,
            holdout=existing.holdout_count,
        )

    rules = Rules(definition, program, at, global_cap or GlobalCap.default())
    tune(session)
    group = rules.group()
    when = literal(at, UTCDateTime())
    rows = rules.from_audience(
        select(
            literal(run_id, BigInteger()),
            literal(definition.name, String()),
            Participant.id,
            group,
            when,
            literal("active", String()),
            case((group == "treatment", when)),
            literal(0, Integer()),
        )
    ).where(rules.not_excluded())
    # The ORDER BY makes PostgreSQL compute every row before inserting the first: otherwise
    # the already-enrolled / re-entry checks probe `enrollments` while this very statement
    # fills it, and with the statistics of an empty table (seq scan "free") that is quadratic
    # (15 s instead of 3 s for 40,000 members). It also inserts in key order.
    rows = rows.order_by(Participant.id)
    session.execute(
        insert(Enrollment)
        .from_select(
            [
                "run_id",
                "campaign",
                "participant_id",
                "group",
                "enrolled_at",
                "state",
                "next_action_at",
                "next_step_index",
            ],
            rows,
        )
        .on_conflict_do_nothing(index_elements=["run_id", "participant_id"])
    )
    groups = dict(
        session.execute(
            select(Enrollment.group, func.count())
            .where(Enrollment.run_id == run_id)
            .group_by(Enrollment.group)
        ).all()
    )
    treatment, holdout = int(groups.get("treatment", 0)), int(groups.get("holdout", 0))
    session.execute(
        update(CampaignRun)
        .where(CampaignRun.id == run_id)
        .values(enrolled_count=treatment + holdout, holdout_count=holdout)
    )
    return LaunchResult(
        run_id=run_id,
        campaign=definition.name,
        fire_key=key,
        created=True,
        status="active",
        launched_at=at,
        enrolled=treatment + holdout,
        treatment=treatment,
        holdout=holdout,
    )


def launch_due(
    session: Session,
    definitions: Sequence[LoadedDefinition],
    *,
    at: datetime,
    global_cap: GlobalCap | None = None,
    grace: timedelta = DEFAULT_MISFIRE_GRACE,
    refuse: Callable[[CampaignDefinition], str | None] | None = None,
) -> list[DueLaunch]:
    """For the scheduler's tick: launch every scheduled campaign whose time has come (one-off
    ``start`` reached, or a cron fire time) and that has no run for it yet. Campaigns without
    a schedule are launched by hand only. One campaign's error does not stop the others.

    A cron fire later than ``grace``, or older than its schedule, is skipped instead and
    reported once (engine/schedules.py). ``refuse`` (the tick's sender-identity check) says
    why a due campaign must not launch now; it is asked only about a fire that would launch,
    so the refusal is repeated at each tick while it holds, and the fire launches at the first
    tick after it is lifted (a cron fire only while within the grace; a one-off however late).
    """
    at = ensure_utc(at)
    _serialise(session, "launch_due")
    results: list[DueLaunch] = []
    for loaded in definitions:
        definition = loaded.definition
        schedule = definition.schedule
        if schedule is None:
            continue
        key, not_now = fire_key(definition, at)
        if key is None or not_now is not None:
            continue
        if existing_run(session, definition.name, key) is not None:
            continue
        if schedule.cron is not None:
            try:
                with session.begin_nested():
                    skipped = _skipped(session, definition, key, at=at, grace=grace)
            except EngineError as exc:
                results.append(DueLaunch(definition.name, error=str(exc)))
                continue
            if skipped is not False:
                if skipped is not None:
                    results.append(DueLaunch(definition.name, skipped=skipped))
                continue
        refusal = refuse(definition) if refuse is not None else None
        if refusal is not None:
            results.append(DueLaunch(definition.name, refused=refusal))
            continue
        try:
            with session.begin_nested():
                result = launch(session, loaded, at=at, global_cap=global_cap)
        except EngineError as exc:
            results.append(DueLaunch(definition.name, error=str(exc)))
            continue
        results.append(DueLaunch(definition.name, result=result))
    return results


def _skipped(
    session: Session, definition: CampaignDefinition, key: str, *, at: datetime, grace: timedelta
) -> str | Literal[False] | None:
    """False: launch this fire. Otherwise it is skipped: the message when the skip is new,
    None when it was reported before."""
    fire = datetime.fromisoformat(key)
    seen = first_seen(session, definition, at=at)
    reason = skip_reason(fire, at=at, first_seen=seen, grace=grace)
    if reason is None:
        return False
    if not record_skip(session, definition.name, fire=fire, key=key, at=at, reason=reason):
        return None
    timezone = definition.schedule.timezone if definition.schedule else None
    return f"skipped fire {local_fire(fire, timezone)} of {definition.name}: {reason}"
