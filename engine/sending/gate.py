"""Gate: whether each claimed message may go now, decided just before its batch is sent.

:func:`load_facts` reads what the gate needs of a claimed batch (consents, suppressions by
address hash, the contacts ledger with unknown messages, run definitions, program zones,
deadlines) on the claiming thread; :func:`decide_batch` takes the decisions from them, with no
database, at the instant the batch is about to go (:func:`gate_decision`: the policy under
the global and the campaign's frequency caps). While the batch is sent,
:func:`suppressed_among` reads its remaining recipients' suppressions again (at most every
:data:`SUPPRESSION_RECHECK_SECONDS`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import String, select
from sqlalchemy.orm import Session

from engine.consent.defaults import defaulted
from engine.consent.suppression_lookup import suppressed_hashes_query
from engine.consent.suppressions import email_hash, hash_normalised
from engine.db.models import CampaignRun, Consent, Program, Suppression
from engine.db.queries import any_of
from engine.definitions.loader import parse_definition
from engine.definitions.schema import CampaignDefinition
from engine.errors import EngineError
from engine.policy import (
    FrequencyCap,
    ParticipantFacts,
    SendNow,
    Skip,
    WaitUntil,
    candidate_zones,
    decide,
)
from engine.policy.decide import Decision
from engine.sending import outbox_status as st
from engine.sending.contact_ledger import contact_times
from engine.sending.deadlines import send_time_refusals
from engine.sending.record import ClaimedRow, Outcome
from engine.sending.shared import Shared, is_postgres, now

log = logging.getLogger(__name__)

# A batch claimed ahead whose gate facts (consents, suppressions, contacts) are older than
# this when its turn comes has them read again: a slow batch before it (a rate limit holds a
# batch for seconds) must not let a suppression made meanwhile go unseen.
FACTS_MAX_AGE_SECONDS = 1.0
# While a batch is sent (at 1 SMS/s, ten seconds of it), its remaining recipients'
# suppressions are read again when the last read is older than this, right before a request:
# a STOP or an unsubscribe committed meanwhile stops the next message (#16).
SUPPRESSION_RECHECK_SECONDS = 0.25
# Each re-check reads the next this many recipients (a recipient it did not cover gets one of
# its own before its request): reading every remaining one (up to a batch of 1,000) each time
# cost the sending thread most of a request per message at low rates.
SUPPRESSION_RECHECK_AHEAD = 256


def gate_decision(
    channel: str,
    facts: ParticipantFacts,
    at: datetime,
    *,
    definition: CampaignDefinition,
    global_cap: FrequencyCap,
) -> Decision:
    """:func:`engine.policy.decide` under two caps: the global one and the campaign's own.

    ``decide`` takes one cap, so the two are chained: each answer's instant is asked again
    under the other until both agree (the instants only move forward; a few rounds suffice).
    """
    caps: list[FrequencyCap] = [global_cap]
    if definition.frequency_cap is not None:
        caps.append(FrequencyCap(definition.frequency_cap.max, definition.frequency_cap.per))
    when = at
    reason = "outside_window"
    for _ in range(8):
        start = when
        for cap in caps:
            answer = decide(channel, facts, when, send_window=definition.send_window, cap=cap)
            if isinstance(answer, Skip):
                return answer
            if isinstance(answer, WaitUntil):
                when, reason = answer.until, answer.reason
        if when == start:
            break
    if when == at:
        return SendNow()
    return WaitUntil(when, "frequency_cap" if reason == "frequency_cap" else "outside_window")


def _definition(shared: Shared, session: Session, run_id: int) -> CampaignDefinition:
    with shared.lock:
        cached = shared.definitions.get(run_id)
    if cached is not None:
        return cached
    source = session.scalar(select(CampaignRun.definition_source).where(CampaignRun.id == run_id))
    definition = parse_definition(source or "", f"run {run_id} (stored definition)").definition
    with shared.lock:
        shared.definitions[run_id] = definition
    return definition


def _program(shared: Shared, session: Session, program_id: int) -> tuple[str, str]:
    with shared.lock:
        cached = shared.programs.get(program_id)
    if cached is not None:
        return cached
    row = session.execute(
        select(Program.timezone, Program.region).where(Program.id == program_id)
    ).one()
    value = (str(row[0]), str(row[1]))
    with shared.lock:
        shared.programs[program_id] = value
    return value


def _address_hash(channel: str, address: str) -> str:
    return email_hash(address) if channel == "email" else hash_normalised(address)


@dataclass
class Facts:
    """What the gate reads from the database for one claimed batch (see :func:`load_facts`)."""

    consents: dict[int, str]
    suppressed: dict[str, set[str]]  # address -> the channels its suppressions cover
    contacts: dict[int, list[datetime]]
    definitions: dict[int, CampaignDefinition]
    programs: dict[int, tuple[str, str]]
    digests: dict[str, str] = field(default_factory=dict)  # address -> its suppression hash
    # engine.sending.deadlines: id -> skip reason (expired, no_longer_eligible) or wait-until
    # instant
    refused: dict[int, str | datetime] = field(default_factory=dict)
    read_at: float = field(default_factory=time.monotonic)


def load_facts(shared: Shared, rows: Sequence[ClaimedRow], channel: str) -> Facts:
    """Read what the gate needs about a claimed batch: consents, suppressions (by address
    hash), the contacts ledger within the longest cap (unknown messages included: see
    engine/sending/contact_ledger.py), run definitions and program zones.

    Read on the database thread while the previous batch is being sent; the decisions are
    taken from these facts by :func:`decide_batch` just before this batch goes. Its members have
    no message in flight elsewhere (the claim skips them), so the ledger read here already
    holds every earlier send of theirs."""
    at = now(shared)
    with shared.app.sessions() as session, session.begin():
        postgres = is_postgres(session)
        pids = sorted({row.participant_id for row in rows})
        consents: dict[int, str] = dict(
            session.execute(
                select(Consent.participant_id, Consent.status).where(
                    any_of(Consent.participant_id, pids, postgres), Consent.channel == channel
                )
            ).all()
        )
        # A program's consent default fills only a consent the member did not state.
        for pid, _ in defaulted(session, pids, [channel]):
            consents.setdefault(pid, "opted_in")
        digests = {
            address: _address_hash(channel, address)
            for row in rows
            if (address := row.email if channel == "email" else row.phone)
        }
        by_digest: dict[str, set[str]] = defaultdict(set)
        if digests:
            for digest, on in session.execute(
                select(Suppression.address_hash, Suppression.channel).where(
                    any_of(
                        Suppression.address_hash, sorted(set(digests.values())), postgres, String
                    ),
                    Suppression.channel.in_((channel, "all")),
                )
            ).all():
                by_digest[digest].add(on)
        suppressed = {
            address: by_digest[digest] for address, digest in digests.items() if digest in by_digest
        }
        definitions: dict[int, CampaignDefinition] = {}
        for run_id in sorted({row.run_id for row in rows}):
            try:
                definitions[run_id] = _definition(shared, session, run_id)
            except (EngineError, ValueError) as exc:
                log.error("run %s: stored definition does not load: %s", run_id, exc)
        programs = {
            program_id: _program(shared, session, program_id)
            for program_id in {row.program_id for row in rows}
        }
        # The longest cap any of these runs counts (decided later than `at`: a later window
        # only drops contacts from the front).
        lookback = max(
            [shared.global_cap.per]
            + [d.frequency_cap.per for d in definitions.values() if d.frequency_cap]
        )
        # The ledger and the members' unknown messages (they may have gone: see
        # engine/sending/contact_ledger.py).
        contacts: dict[int, list[datetime]] = defaultdict(list)
        for pid, when in session.execute(
            contact_times(lambda column: any_of(column, pids, postgres), at - lookback)
        ).all():
            contacts[pid].append(when)
        refused = send_time_refusals(session, rows, at, definitions)
    return Facts(consents, suppressed, contacts, definitions, programs, digests, refused=refused)


def suppressed_among(shared: Shared, channel: str, digests: Sequence[str]) -> set[str]:
    """Those of ``digests`` (address hashes) suppressed on ``channel`` now: one indexed read
    (the unique (channel, address_hash) index), made on the sending thread between requests."""
    if not digests:
        return set()
    with shared.app.sessions() as session:
        values = {"hashes": sorted(set(digests)), "channels": [channel, "all"]}
        return set(session.scalars(suppressed_hashes_query(is_postgres(session)), values))


def decide_batch(
    shared: Shared, rows: Sequence[ClaimedRow], facts: Facts, channel: str
) -> tuple[list[tuple[ClaimedRow, str]], list[Outcome]]:
    """The gate, at the instant the batch is about to be sent: (messages to send now with
    their address, outcomes of the others). Pure: no database (see :func:`load_facts`)."""
    at = now(shared)
    ready: list[tuple[ClaimedRow, str]] = []
    outcomes: list[Outcome] = []
    contacts = facts.contacts
    for row in rows:
        definition = facts.definitions.get(row.run_id)
        if definition is None:
            outcomes.append(Outcome(row, st.FAILED, "definition_error", error="stored definition"))
            continue
        if row.enrollment_state == "converted":
            outcomes.append(Outcome(row, st.SKIPPED, "converted"))
            continue
        late = facts.refused.get(row.id)
        if late is not None:
            outcomes.append(
                Outcome(row, st.SKIPPED, late)
                if isinstance(late, str)
                else Outcome(row, st.QUEUED, "waiting: spacing", max(late, at))
            )
            continue
        address = row.email if channel == "email" else row.phone
        zone, region = facts.programs[row.program_id]
        try:
            zones = candidate_zones(
                participant_zone=row.timezone,
                phone=row.phone,
                program_zone=zone,
                region=region,
            ).zones
        except ValueError:
            zones = ()
        person = ParticipantFacts(
            address=address,
            consent=facts.consents.get(row.participant_id),  # type: ignore[arg-type]
            zones=zones,
            suppressed_channels=facts.suppressed.get(address or "", set()),
            contact_times=tuple(contacts[row.participant_id]),
        )
        answer = gate_decision(
            channel, person, at, definition=definition, global_cap=shared.global_cap
        )
        if isinstance(answer, Skip):
            outcomes.append(Outcome(row, st.SKIPPED, answer.reason))
        elif isinstance(answer, WaitUntil):
            outcomes.append(Outcome(row, st.QUEUED, f"waiting: {answer.reason}", answer.until))
        else:
            assert address is not None  # the gate refuses a missing address
            ready.append((row, address))
            # A second message to the same person in this batch sees this one.
            contacts[row.participant_id].append(at)
    return ready, outcomes
