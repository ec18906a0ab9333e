"""A/B variants of a step: deterministic assignment by weight (pure, no database).

The same participant gets the same variant of a step on every machine, database and run: the
choice is engine.sampling's bucket of their ``sample_key`` with a salt per (campaign, step),
so a step's split is independent of the holdout split and of every other step. Preview and
the sequencer both call :func:`assign_variant`, so a preview shows what the sequencer sends.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.definitions.schema import Variant
from engine.sampling import BUCKETS, bucket, salt


def variant_salt(campaign: str, step_id: str) -> int:
    """Per-step salt: the A/B split of one step is independent of the holdout and other steps."""
    return salt(f"{campaign}\x1fstep\x1f{step_id}")


def assign_variant(
    variants: Sequence[Variant], sample_key: int, campaign: str, step_id: str
) -> Variant:
    """The participant's variant: buckets 0..9999 split in proportion to the weights."""
    return pick_variant(variants, bucket(sample_key, variant_salt(campaign, step_id)))


def pick_variant(variants: Sequence[Variant], point: int) -> Variant:
    """The variant owning bucket ``point`` (0..9999) when buckets are split by weight; for
    callers that compute the salt once per step and the bucket once per participant."""
    total = sum(variant.weight for variant in variants)
    upper = 0
    for variant in variants:
        upper += variant.weight
        if point * total < upper * BUCKETS:
            return variant
    return variants[-1]


__all__ = ["assign_variant", "pick_variant", "variant_salt"]
