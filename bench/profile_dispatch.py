"""Where one in-process ``dispatch()`` of N emails spends its CPU, thread by thread (#16).

    .venv/bin/python bench/profile_dispatch.py [--tree PATH] [--database sqlite|postgresql]
        [--messages 10000] [--profile FILE]

Sets up as bench_dispatch.py does (a scratch database, N queued emails, the local sink), runs
``dispatch()`` in this process and prints the CPU seconds of each thread (the sending thread
is the main one; ``dispatch-write`` is the writer, ``dispatch-send`` the in-flight pool), the
process's CPU per message and the statements executed (SQLAlchemy's ``before_cursor_execute``:
what the writer runs on the driver's connection is not counted). ``--profile FILE`` also runs
every thread under its own cProfile, timed in thread CPU time, and writes each thread group's
top functions to FILE (the profiler's own cost inflates the figures: compare within a run).
``--tree`` profiles another checkout (e.g. the reference of bench/README.md), whose
``bench/bench_dispatch.py`` sets up the run.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any

CPU: dict[str, float] = {}
PROFILES: list[tuple[str, cProfile.Profile]] = []
PROFILING = "--profile" in sys.argv


def _measured_run(self: threading.Thread) -> None:
    profile = cProfile.Profile(time.thread_time)
    start = time.thread_time()
    if PROFILING:
        profile.enable()
    try:
        _thread_run(self)
    finally:
        profile.disable()
        group = self.name.rsplit("_", 1)[0]  # the pool's threads together
        CPU[group] = CPU.get(group, 0.0) + time.thread_time() - start
        PROFILES.append((group, profile))


_thread_run = threading.Thread.run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    sys.path[:0] = [args.tree, f"{args.tree}/bench"]
    import bench_dispatch as setup
    from sqlalchemy import Engine, event

    from engine.app import build_app
    from engine.channels.sendgrid import SendGridChannel
    from engine.clock import FrozenClock

    if Path(args.tree, "engine/sending").is_dir():
        from engine.sending.dispatch import dispatch
    else:  # before engine/sending/ (the reference 7d079fe)
        from engine.dispatch import dispatch  # type: ignore[no-redef]

    threading.Thread.run = _measured_run  # type: ignore[method-assign]
    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    with (
        setup.sink(prefer_nginx=True) as (email_url, _, server),
        setup.scratch_database(args.database) as url,
    ):
        setup.fill(url, args.messages, "email")
        settings = setup._settings(
            url, dispatch_email_rate=1e9, dispatch_sms_rate=1e9, dispatch_batch_size=1000
        )
        app = build_app(settings, clock=FrozenClock(setup.NOW))
        channel = SendGridChannel(setup.API_KEY, host=email_url)
        event.listen(Engine, "before_cursor_execute", count)
        main_profile = cProfile.Profile(time.thread_time)
        wall, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
        if args.profile:
            main_profile.enable()
        summary = dispatch(app, {"email": channel}, worker="profile", workers=1)
        main_profile.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        CPU["MainThread"] = time.thread_time() - own
        event.remove(Engine, "before_cursor_execute", count)
        channel.close()
        app.close()
    print(
        f"{args.tree} {args.database} ({server}): sent {summary.sent} in {wall:.2f} s "
        f"({summary.sent / wall:.0f}/s), process CPU {cpu:.2f} s "
        f"({1000 * cpu / max(summary.sent, 1):.3f} ms a message), {statements[0]} statements"
    )
    for group, seconds in sorted(CPU.items(), key=lambda item: -item[1]):
        print(f"  {group}: {seconds:.2f} s CPU")
    if args.profile:
        groups: dict[str, list[cProfile.Profile]] = {"MainThread": [main_profile]}
        for group, profile in PROFILES:
            groups.setdefault(group, []).append(profile)
        with open(args.profile, "w") as out:
            for group, profiles in groups.items():
                stats = pstats.Stats(profiles[0], stream=out)
                for profile in profiles[1:]:
                    stats.add(profile)
                print(f"\n######## {group}", file=out)
                stats.sort_stats("tottime").print_stats(35)
                stats.sort_stats("cumulative").print_stats(45)


if __name__ == "__main__":
    main()
