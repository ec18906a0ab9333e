"""Deterministic sampling for holdout groups and A/B variants.

Every participant carries a ``sample_key`` derived from (program key, external id) at import,
so the same member lands in the same group on every machine and database. Assignment is plain
integer arithmetic on that key, which SQLite and PostgreSQL evaluate identically in SQL.
"""

from __future__ import annotations

import hashlib

SAMPLE_KEY_BITS = 31  # fits a signed 32-bit integer on every backend
BUCKETS = 10_000  # basis points: a percentage with two decimals


def sample_key(program_key: str, external_id: str) -> int:
    digest = hashlib.sha256(f"{program_key}\x1f{external_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & ((1 << SAMPLE_KEY_BITS) - 1)


def salt(name: str) -> int:
    """A per-campaign (or per-step) salt, so groups are independent across campaigns."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:4], "big") & ((1 << SAMPLE_KEY_BITS) - 1)


def bucket(key: int, salt_value: int) -> int:
    """0..BUCKETS-1. SQL twin: ((sample_key + salt) * 40503) % 2147483647 % 10000.

    (key + salt) < 2**32 and the product < 2**48, so no backend overflows a 64-bit integer.
    Multiplying by a constant modulo the Mersenne prime 2**31-1 mixes neighbouring keys.
    """
    return ((key + salt_value) * 40503) % 2147483647 % BUCKETS
