"""The window search walks stretches of constant UTC offset up to a day long and assumes a zone
never changes its offset twice within 24 hours (engine/policy/windows.py, _PROBE). Check that
against every zone of the installed tzdata, so a tzdata upgrade that broke it would fail here.

The transition lists come from the pure-Python zoneinfo implementation (a private stdlib
module, ``zoneinfo._zoneinfo``); the test skips loudly if a future Python drops it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from policy_helpers import ALL_ZONES

pure = pytest.importorskip("zoneinfo._zoneinfo", reason="pure-Python zoneinfo not available")


def test_no_zone_changes_its_offset_twice_within_a_day() -> None:
    crowded: list[str] = []
    for key in ALL_ZONES:
        zone = pure.ZoneInfo.no_cache(key)
        changes: list[int] = []
        for moment in getattr(zone, "_trans_utc", ()):
            if not -(2**40) < moment < 2**40:
                continue
            instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=moment)
            if (
                instant.astimezone(zone).utcoffset()
                != (instant - timedelta(seconds=1)).astimezone(zone).utcoffset()
            ):
                changes.append(moment)
        crowded += [
            f"{key} at {datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=first)}"
            for first, second in pairwise(changes)
            if second - first <= 24 * 3600
        ]
    assert not crowded, crowded
    assert len(ALL_ZONES) > 300  # the loop really ran over tzdata
