"""Which time zones a recipient may be in.

The answer is a list of candidate IANA zones, and the window logic requires the window to hold
in all of them. In order of trust:

1. the zone on the participant record;
2. the zones of the phone number's area (``phonenumbers``); a number can map to several zones
   (Indiana area codes, Russian mobiles, or every zone of +1 for a toll-free number), and then
   every one of them counts;
3. the program's default zone;
4. nothing known: every zone of the program's region (from tzdata's ``zone.tab``).

A zone name that is not a valid IANA key is treated as unknown and the next source is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ZoneSource = Literal["participant", "phone", "program", "region"]


@dataclass(frozen=True)
class ZoneResolution:
    """The candidate zones (never empty) and which source they came from."""

    zones: tuple[str, ...]
    source: ZoneSource


def candidate_zones(
    *,
    participant_zone: str | None = None,
    phone: str | None = None,
    program_zone: str | None = None,
    region: str | None = None,
) -> ZoneResolution:
    """Resolve a recipient's candidate zones; see the module docstring for the order.

    ``region`` (ISO 3166 alpha-2, e.g. ``"US"``) is also the default region for parsing a phone
    number written without ``+``. Raises ValueError when nothing at all is known.
    """
    if participant_zone and is_zone(participant_zone):
        return ZoneResolution((participant_zone,), "participant")
    if phone:
        from_phone = zones_for_phone(phone, region)
        if from_phone:
            return ZoneResolution(from_phone, "phone")
    if program_zone and is_zone(program_zone):
        return ZoneResolution((program_zone,), "program")
    if region:
        from_region = zones_for_region(region)
        if from_region:
            return ZoneResolution(from_region, "region")
    raise ValueError(
        "cannot tell the recipient's time zone: no participant zone, no usable phone number, "
        f"no program zone and no known region (region={region!r})"
    )


def zones_for_phone(phone: str, region: str | None = None) -> tuple[str, ...]:
    """The zones of a phone number's area; empty when the number is invalid or unplaceable."""
    # Imported here: phonenumbers' metadata costs a command that places no number ~50 ms (#18).
    import phonenumbers
    from phonenumbers import timezone as phone_timezone

    try:
        number = phonenumbers.parse(phone, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        return ()
    if not phonenumbers.is_valid_number(number):
        return ()
    # phonenumbers answers ("Etc/Unknown",) when it cannot place a number.
    return tuple(
        sorted(zone for zone in phone_timezone.time_zones_for_number(number) if is_zone(zone))
    )


def zones_for_region(region: str) -> tuple[str, ...]:
    """Every zone tzdata lists for an ISO 3166 country code (``"US"`` -> 29 zones)."""
    return _region_zones().get(region.upper(), ())


def is_zone(name: str) -> bool:
    """Is ``name`` an IANA zone key this machine's tzdata knows?"""
    return _is_zone(name)


@cache
def _is_zone(name: str) -> bool:
    if name == "Etc/Unknown":  # phonenumbers' placeholder, not a real zone
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@cache
def _region_zones() -> dict[str, tuple[str, ...]]:
    # zone.tab (not zone1970.tab) because it lists zones per single country code, so a region
    # gets exactly its own zones. It ships in the tzdata package this project depends on.
    text = (resources.files("tzdata") / "zoneinfo" / "zone.tab").read_text(encoding="utf-8")
    by_region: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) >= 3 and _is_zone(columns[2]):
            by_region.setdefault(columns[0], []).append(columns[2])
    return {code: tuple(sorted(zones)) for code, zones in by_region.items()}
