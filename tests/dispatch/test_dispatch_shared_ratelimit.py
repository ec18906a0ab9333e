"""The send rate shared through PostgreSQL by every dispatcher of a sender (#4).

- the reservation statement: blocks reserved at once on two connections never overlap, and a
  bucket left idle saves up no slots;
- the mapping from the database's clock onto a process's own;
- two buckets on two connections, one on a clock an hour ahead, never hand out more than
  ``rate * T + burst`` slots between them in a window; a caller slower than the rate holds no
  timeline it cannot use; two callers far below the rate go side by side, not in turns; a
  connection the server dropped is opened again;
- end to end: two dispatcher processes sending SMS through the fake Twilio at 20/s: what the
  server received from both, merged, never beats the rate in any window and comes within 5%
  of it.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from dispatch_helpers import queue_messages
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.pool import NullPool

from engine.app import App, build_app
from engine.channels.sendgrid import SendGridChannel
from engine.channels.twilio import TwilioChannel
from engine.clock import FrozenClock
from engine.db.models import RateLimitSlot
from engine.db.session import make_engine
from engine.sending.dispatch import dispatch
from engine.sending.shared_ratelimit import Reservation, SharedTokenBucket, reserve_slots, to_local
from engine.settings import Settings
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_twilio import FakeTwilio
from engine.testing.fakes import (
    make_consent,
    make_outbox_message,
    make_participant,
    make_program,
    make_run,
)

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York: inside the SMS window
SENDER = "+12025550100"
KEY = f"sms:twilio:{SENDER}"


@pytest.fixture
def pg_app(postgres_url: str, tmp_path: Path) -> Iterator[App]:
    settings = Settings(
        database_url=postgres_url,
        outbox_dir=tmp_path / "outbox",
        email_from="Rewards Team <Rewards@Example.com>",
        dispatch_email_rate=1000,
        dispatch_sms_rate=1000,
    )
    application = build_app(settings, clock=FrozenClock(NOW))
    yield application
    application.close()


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    built = make_engine(postgres_url, poolclass=NullPool)
    yield built
    built.dispose()


def _max_in_window(times: list[float], width: float) -> int:
    """The most of ``times`` (sorted) in any half-open interval of length ``width``."""
    best, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


# --------------------------------------------------------------------------- the statement


@pytest.mark.postgres
def test_blocks_reserved_at_once_on_two_connections_never_overlap(engine: Engine) -> None:
    # 10/s: the timeline runs ahead of the clock from the first block on, so every block must
    # start exactly where the one before it (whoever reserved it) ended.
    barrier = threading.Barrier(2)
    lock = threading.Lock()
    found: list[Reservation] = []

    def reserve(seed: int) -> None:
        rng = random.Random(seed)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            barrier.wait()
            for _ in range(150):
                reservation = reserve_slots(connection, KEY, rng.randint(1, 5), 10.0)
                with lock:
                    found.append(reservation)

    threads = [threading.Thread(target=reserve, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found.sort(key=lambda r: r.start)
    assert len(found) == 300
    assert found[0].start <= found[0].db_now  # the first starts at the database's now
    for before, after in itertools.pairwise(found):
        assert after.start == before.end, (before, after)
    assert sum(r.end - r.start for r in found) == found[-1].end - found[0].start


@pytest.mark.postgres
def test_a_bucket_left_idle_saves_up_no_slots(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        first = reserve_slots(connection, KEY, 1, 100.0)
        time.sleep(0.05)
        second = reserve_slots(connection, KEY, 1, 100.0)
    assert first.end - first.start == Decimal("0.01")
    # The 40 ms nobody used are gone: the next block starts at the database's now, not where
    # the timeline was left (that would let a burst through after every idle spell).
    assert second.start > first.end + Decimal("0.03")
    assert second.start <= second.db_now


def test_the_database_clock_maps_onto_the_local_one_by_the_middle_of_the_round_trip() -> None:
    reservation = Reservation(
        start=Decimal("1795552227.250"),
        end=Decimal("1795552227.300"),
        db_now=Decimal("1795552227.200"),
    )
    # The database read its clock while the statement was out, local 1000.000 to 1000.004:
    # taken as 1000.002, so the block starts 50 ms later on the local clock.
    assert to_local(reservation.start, reservation, 1000.0, 1000.004) == pytest.approx(
        1000.052, abs=1e-9
    )
    # A machine whose clock reads an hour ahead gets the same instant, an hour ahead.
    assert to_local(reservation.end, reservation, 4600.0, 4600.004) == pytest.approx(
        4600.102, abs=1e-9
    )


def test_a_shared_bucket_needs_postgresql() -> None:
    sqlite = create_engine("sqlite://")
    with pytest.raises(ValueError, match="needs PostgreSQL"):
        SharedTokenBucket(sqlite, KEY, 10)
    sqlite.dispose()


# --------------------------------------------------------------------------- the bucket


@pytest.mark.postgres
def test_two_processes_never_get_more_than_rate_t_plus_burst_between_them(
    engine: Engine,
) -> None:
    rate, burst, each = 100.0, 1.5, 80
    skew = 3600.0  # the second "machine's" clock reads an hour ahead

    def ahead() -> float:
        return time.monotonic() + skew

    buckets = [
        SharedTokenBucket(engine, KEY, rate, burst=burst),
        SharedTokenBucket(engine, KEY, rate, burst=burst, clock=ahead),
    ]
    clocks, offsets = [time.monotonic, ahead], [0.0, skew]
    granted: list[list[float]] = [[], []]
    barrier = threading.Barrier(2)

    def send(i: int) -> None:
        rng = random.Random(i)
        barrier.wait()
        for _ in range(each):
            slot = buckets[i].reserve()
            wait = slot - clocks[i]()
            if wait > 0:
                time.sleep(wait)
            granted[i].append(slot - offsets[i])  # on the first machine's clock
            # The send itself: sometimes quick, sometimes slower than a slot (late callers
            # lose slots; none may crowd the next one).
            time.sleep(rng.choice([0.0, 0.0, 0.002, 0.006, 0.015]))

    threads = [threading.Thread(target=send, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for bucket in buckets:
        bucket.close()
    merged = sorted(granted[0] + granted[1])
    assert len(merged) == 2 * each
    for width in (0.25, 1.0):
        assert _max_in_window(merged, width) <= rate * width + burst, width
    # At the scale of one slot the bound holds up to the two approximations the module states
    # (engine/sending/shared_ratelimit.py: each process knows the database's clock to within half a
    # round trip, and a block's first slot goes when the reservation comes back): on a busy
    # 2-core machine that is a slot per process, seen as 4 grants in 10 ms about one run in
    # six (before this change as well). The wider windows above stay exact.
    assert _max_in_window(merged, 1 / rate) <= rate / rate + burst + len(buckets)
    # Alone, each would have had the whole rate: together they had it once.
    assert (len(merged) - 1) / (merged[-1] - merged[0]) <= rate * 1.01


def _take_side_by_side(
    engine: Engine, rate: float, pauses: Sequence[float], seconds: float
) -> list[list[float]]:
    """One bucket per pause, each in a thread taking slots for ``seconds`` (started together)
    and pausing that long after each, as a send would; the instants each was granted a slot."""
    buckets = [SharedTokenBucket(engine, KEY, rate, burst=1.5) for _ in pauses]
    granted: list[list[float]] = [[] for _ in pauses]
    barrier = threading.Barrier(len(pauses))

    def take(index: int) -> None:
        barrier.wait()
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            buckets[index].acquire()
            granted[index].append(time.monotonic())
            time.sleep(pauses[index])

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(pauses))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for bucket in buckets:
        bucket.close()
    return granted


@pytest.mark.postgres
def test_a_slow_caller_leaves_the_rest_of_the_rate_to_a_fast_one(engine: Engine) -> None:
    rate = 200.0  # blocks of up to 10 slots
    # One keeps up with the rate, the other has a provider's latency.
    fast, slow = _take_side_by_side(engine, rate, (0.0, 0.02), 1.0)
    # While the fast one holds the timeline, the slow one reserves only slots it uses (with
    # blocks of 10 slots, most of them lost, the two had about 65% of the rate here), so
    # together they have nearly all of it (93% here).
    granted = sorted(fast + slow)
    assert len(granted) - 1 >= 0.8 * rate * (granted[-1] - granted[0]), len(granted)


@pytest.mark.postgres
def test_a_caller_far_slower_than_the_rate_runs_a_statement_per_few_ms_not_per_message(
    engine: Engine,
) -> None:
    bucket = SharedTokenBucket(engine, KEY, 1e9, burst=1.5)  # "no limit"
    for _ in range(2000):
        bucket.acquire()
    bucket.close()
    # Nobody else wants the timeline: this caller (a few µs a call) uses its blocks as windows
    # of 50 round trips, doubling them as it uses them up: a statement per window, not per
    # message.
    assert bucket.reservations <= 100


@pytest.mark.postgres
def test_callers_far_slower_than_the_rate_do_not_take_turns(engine: Engine) -> None:
    # A rate no dispatcher reaches (a high email rate): two of them must each go at their own
    # speed, as if alone, not hold the timeline in turns while the other waits.
    rate, seconds, pause = 1e6, 0.6, 0.001  # each caller: under 1,000 a second

    def per_second(callers: int) -> float:
        granted = _take_side_by_side(engine, rate, [pause] * callers, seconds)
        return sum(map(len, granted)) / seconds

    alone = per_second(1)
    together = per_second(2)
    assert together >= 1.6 * alone, (alone, together)


@pytest.mark.postgres
def test_a_caller_that_keeps_up_reserves_whole_blocks(engine: Engine) -> None:
    bucket = SharedTokenBucket(engine, KEY, 200.0, burst=1.5)  # blocks of up to 10 slots
    for _ in range(100):
        bucket.acquire()
    bucket.close()
    # 1, 1, 2, 4, 8, then 10 at a time: 14 statements when no wake-up comes late.
    assert bucket.reservations <= 30


@pytest.mark.postgres
def test_a_connection_the_server_dropped_is_opened_again(engine: Engine) -> None:
    bucket = SharedTokenBucket(engine, KEY, 1000.0)
    bucket.acquire()
    with engine.connect() as admin:
        killed = admin.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert killed == 1
    time.sleep(0.01)  # another slot's time: the next acquire needs a block of its own
    bucket.acquire()
    bucket.close()
    assert bucket.reservations == 2


# --------------------------------------------------------------------------- dispatch


def _buckets(app: App) -> set[str]:
    with app.sessions() as session:
        return set(session.scalars(select(RateLimitSlot.bucket)))


@pytest.mark.postgres
def test_dispatch_keys_each_limit_by_channel_and_sender(pg_app: App) -> None:
    app = pg_app
    queue_messages(app, 2, "sms", "America/New_York")
    with app.sessions() as session, session.begin():
        program = make_program(session, at=NOW, key="other")
        run = make_run(session, program, at=NOW, campaign="emails")
        member = make_participant(session, program, at=NOW)
        make_consent(session, member, channel="email", status="opted_in", at=NOW)
        make_outbox_message(session, run, member, at=NOW, channel="email")
    with FakeSendGrid() as sendgrid, FakeTwilio() as twilio:
        email = SendGridChannel(sendgrid.api_key, host=sendgrid.url)
        sms = TwilioChannel(
            twilio.account_sid,
            twilio.auth_token,
            messaging_service_sid="MG" + "0" * 31 + "7",
            base_url=twilio.url,
        )
        try:
            summary = dispatch(app, {"email": email, "sms": sms}, worker="keys")
        finally:
            email.close()
            sms.close()
    assert summary.sent == 3
    # The From address; the messaging service, not a number (Twilio sends through it).
    assert _buckets(app) == {
        "email:sendgrid:rewards@example.com",
        f"sms:twilio:MG{'0' * 31}7",
    }


DISPATCHER = """
import json, sys
from datetime import datetime
from engine.app import build_app
from engine.channels.twilio import TwilioChannel
from engine.clock import FrozenClock
from engine.sending.dispatch import dispatch
from engine.settings import Settings

url, twilio_url, sid, token, now, name = sys.argv[1:7]
settings = Settings(database_url=url, dispatch_sms_rate=20, dispatch_batch_size=5)
app = build_app(settings, clock=FrozenClock(datetime.fromisoformat(now)))
channel = TwilioChannel(sid, token, from_number="+12025550100", base_url=twilio_url)
print("ready", flush=True)
sys.stdin.readline()  # go, both at once
summary = dispatch(app, {"sms": channel}, worker=name)
channel.close()
app.close()
print(json.dumps({"sent": summary.sent, "handled": summary.handled}), flush=True)
"""


@pytest.mark.postgres
def test_two_dispatcher_processes_send_sms_at_the_configured_rate_together(
    pg_app: App, postgres_url: str, tmp_path: Path
) -> None:
    rate, burst, count = 20.0, 1.5, 100
    queue_messages(pg_app, count, "sms", "America/New_York")
    script = tmp_path / "dispatcher.py"
    script.write_text(DISPATCHER)
    with FakeTwilio(validate=False) as twilio:
        command = [sys.executable, str(script), postgres_url, twilio.url]
        command += [twilio.account_sid, twilio.auth_token, NOW.isoformat()]
        dispatchers = [
            subprocess.Popen(
                [*command, f"dispatcher-{i}"],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        try:
            for dispatcher in dispatchers:
                assert dispatcher.stdout is not None
                assert dispatcher.stdout.readline().strip() == "ready"
            for dispatcher in dispatchers:
                assert dispatcher.stdin is not None
                dispatcher.stdin.write("go\n")
                dispatcher.stdin.flush()
            outputs = [dispatcher.communicate(timeout=120)[0] for dispatcher in dispatchers]
        finally:
            for dispatcher in dispatchers:
                if dispatcher.poll() is None:
                    dispatcher.kill()
                    dispatcher.wait()
        stamps = sorted(r.received_at for r in twilio.requests if r.path == twilio.messages_path())
    assert [d.returncode for d in dispatchers] == [0, 0]
    sent = [json.loads(out.strip().splitlines()[-1])["sent"] for out in outputs]
    assert sum(sent) == count == len(stamps)
    assert min(sent) >= count // 5, sent  # both really sent, side by side
    # What Twilio saw from both, merged: never more than the rate (+ the burst) in any window,
    # and over the run within 5% of it.
    for width in (0.5, 1.0, 2.0):
        assert _max_in_window(stamps, width) <= rate * width + burst, width
    # At the scale of one slot, Twilio sees the arrival times, not the slots: a request whose
    # process was not scheduled at its slot (a busy 2-core machine) arrives with the next
    # one. Allowed: one such late request per process, as in the limiter test above.
    assert _max_in_window(stamps, 1 / rate) <= 1 + burst + len(dispatchers)
    achieved = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert abs(achieved - rate) <= 0.05 * rate, achieved
    assert _buckets(pg_app) == {KEY}
