"""A pause and a claim of the same agent racing (two browser tabs, or the CLI and a tab) are
serialised on the agent (engine/calls/agent_rows.py locked_agent): either the pause is refused
because a claim exists, or the claim ends the pause. Never a live claim and an open pause together.
Both databases; the race matters on PostgreSQL, where SQLite's write lock does not apply."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

from calls_helpers import TEST_NOW, make_world, unit
from sqlalchemy import select, update

from engine.app import App
from engine.calls.pauses import DEFAULT_CODES, NEXT_CALL, RESUMED, start_pause
from engine.calls.scripts import serve_next
from engine.db.models import AgentPause, CallTask
from engine.errors import InputError

ROUNDS = 60


class Round:
    """One race: a claim (`calls next`) and a pause of the same agent, started together."""

    def __init__(self, app: App, pause_delay: float) -> None:
        self.app = app
        self.pause_delay = pause_delay
        self.barrier = threading.Barrier(2)
        self.errors: list[BaseException] = []
        self.pause_refused = False
        self.claim_seconds = 0.0

    def claim(self) -> None:
        try:
            self.barrier.wait()
            began = time.perf_counter()
            with unit(self.app) as s:
                serve_next(s, "ana", settings=self.app.settings, at=TEST_NOW)
            self.claim_seconds = time.perf_counter() - began
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)

    def pause(self) -> None:
        try:
            self.barrier.wait()
            time.sleep(self.pause_delay)
            with unit(self.app) as s:
                start_pause(s, "ana", "break", codes=DEFAULT_CODES, at=TEST_NOW, by="ana")
        except InputError:
            self.pause_refused = True
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)

    def run(self) -> None:
        threads = [threading.Thread(target=self.claim), threading.Thread(target=self.pause)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def test_a_racing_pause_and_claim_never_leave_both_open(app: App) -> None:
    world = make_world(app)
    world.agent("ana")
    for i in range(ROUNDS):
        world.task(world.member(points_balance=i))
    rng = random.Random(19)
    claim_seconds = 0.02
    ended_by_the_claim = refused = 0
    for number in range(ROUNDS):
        # The pause starts near the end of the claim's transaction (a claim scans, locks and
        # re-checks; a pause is a few statements): the two overlapped when the pause checked
        # for a claim before the claim committed and the claim looked for a pause before the
        # pause committed.
        race = Round(app, claim_seconds * rng.uniform(0.5, 1.1))
        race.run()
        assert not race.errors, race.errors
        claim_seconds = race.claim_seconds or claim_seconds
        with unit(app) as s:
            held = list(
                s.scalars(
                    select(CallTask.id).where(
                        CallTask.status == "claimed",
                        CallTask.claimed_by == "ana",
                        CallTask.claimed_until >= TEST_NOW,
                    )
                )
            )
            pauses = list(s.scalars(select(AgentPause).where(AgentPause.agent == "ana")))
            still_open = [p.id for p in pauses if p.ended_at is None]
            assert len(held) == 1, f"round {number}: the claim got no task"
            assert not still_open, f"round {number}: task {held} claimed while paused"
            this_round = [p for p in pauses if p.end_reason == NEXT_CALL]
            assert race.pause_refused != bool(this_round), (number, race.pause_refused)
            refused += race.pause_refused
            ended_by_the_claim += len(this_round)
            # The next round from a clean state: the call is done and the pause counted.
            s.execute(update(CallTask).where(CallTask.id == held[0]).values(status="closed"))
            for p in this_round:
                p.end_reason = RESUMED
                p.ended_at = TEST_NOW + timedelta(seconds=1)
    assert refused + ended_by_the_claim == ROUNDS
