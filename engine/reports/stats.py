"""Pure statistics for the reports: rates of two independent groups and how they differ.

Methods (chosen because they behave well at the small counts and low rates campaigns see):

- A rate's 95% interval: the Wilson score interval (no continuity correction).
- The absolute lift (treatment rate - holdout rate): Newcombe's hybrid score interval
  (Newcombe 1998, method 10), built from the two Wilson intervals. Unlike the Wald interval it
  stays inside [-1, 1] and keeps its coverage near 0% and 100%.
- The p-value: the two-sided two-proportion z test with the pooled rate under H0 (equal
  rates), i.e. the usual chi-square test of a 2x2 table without continuity correction.
- The relative lift (treatment rate / holdout rate - 1): the Katz log interval of the risk
  ratio, exp(log r +- z * sqrt(1/x1 - 1/n1 + 1/x2 - 1/n2)) - 1. Undefined (None) when either
  group has no conversion.
- The smallest detectable difference (minimum detectable effect) of two groups of these sizes
  at 95% confidence (two-sided) and 80% power, by the normal approximation with the pooled
  rate as the base rate: (z(0.975) + z(0.8)) * sqrt(p (1 - p) (1/n1 + 1/n2)). A small holdout
  can only ever show a large lift; this says how large, so "no detectable difference" is not
  read as "no effect".

No scipy at run time: the normal tail comes from math.erfc. tests/reports/test_stats.py checks
every function against scipy and statsmodels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The 97.5% quantile of the standard normal distribution (scipy.stats.norm.ppf(0.975)).
Z95 = 1.959963984540054
# The 80% quantile (scipy.stats.norm.ppf(0.8)): the z of 80% power.
Z80 = 0.8416212335729143


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class Rate:
    count: int
    total: int
    rate: float | None
    ci: Interval | None  # Wilson 95%


@dataclass(frozen=True)
class Comparison:
    """Group a (treatment, or a variant) against group b (holdout, or the first variant)."""

    a: Rate
    b: Rate
    difference: float | None  # a.rate - b.rate: the absolute lift
    difference_ci: Interval | None  # Newcombe hybrid score, 95%
    p_value: float | None  # two-sided pooled z test
    relative_lift: float | None  # a.rate / b.rate - 1
    relative_lift_ci: Interval | None  # Katz log, 95%
    # The smallest difference these group sizes detect (95%, 80% power); None when undefined.
    detectable_difference: float | None = None


def normal_two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def wilson(count: int, total: int, z: float = Z95) -> Interval | None:
    """Wilson score interval of count/total; None when total is 0."""
    _check(count, total)
    if total == 0:
        return None
    p = count / total
    z2 = z * z
    centre = (count + z2 / 2) / (total + z2)
    half = z * math.sqrt(total) / (total + z2) * math.sqrt(p * (1 - p) + z2 / (4 * total))
    # At 0 and at total the bounds are exactly 0 and 1; floating point would miss by 1e-17.
    low = 0.0 if count == 0 else max(0.0, centre - half)
    high = 1.0 if count == total else min(1.0, centre + half)
    return Interval(low, high)


def rate(count: int, total: int) -> Rate:
    _check(count, total)
    return Rate(count, total, count / total if total else None, wilson(count, total))


def newcombe_difference(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> Interval | None:
    """Newcombe's hybrid score interval of p1 - p2; None when a group is empty."""
    w1, w2 = wilson(x1, n1, z), wilson(x2, n2, z)
    if w1 is None or w2 is None:
        return None
    p1, p2 = x1 / n1, x2 / n2
    d = p1 - p2
    low = d - math.sqrt((p1 - w1.low) ** 2 + (w2.high - p2) ** 2)
    high = d + math.sqrt((w1.high - p1) ** 2 + (p2 - w2.low) ** 2)
    return Interval(low, high)


def pooled_z_p_value(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """Two-sided p-value of H0 p1 == p2 (pooled z test); None when it is undefined (an empty
    group, or no variance at all: nobody or everybody converted in both)."""
    _check(x1, n1)
    _check(x2, n2)
    if n1 == 0 or n2 == 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return None
    return normal_two_sided_p((x1 / n1 - x2 / n2) / math.sqrt(variance))


def katz_ratio(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> Interval | None:
    """Katz log interval of the risk ratio p1/p2; None when a count or group is 0."""
    _check(x1, n1)
    _check(x2, n2)
    if x1 == 0 or x2 == 0:
        return None
    ratio = (x1 / n1) / (x2 / n2)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2)
    return Interval(ratio * math.exp(-z * se), ratio * math.exp(z * se))


def detectable_difference(
    n1: int, n2: int, base_rate: float, *, z_alpha: float = Z95, z_power: float = Z80
) -> float | None:
    """The minimum detectable effect (absolute, as a rate difference) of groups of n1 and n2
    at a base rate, 95% two-sided and 80% power; None for an empty group or a base rate of 0
    or 1 (no variance: nothing can be said yet)."""
    if n1 <= 0 or n2 <= 0 or not 0 < base_rate < 1:
        return None
    return (z_alpha + z_power) * math.sqrt(base_rate * (1 - base_rate) * (1 / n1 + 1 / n2))


def compare(x1: int, n1: int, x2: int, n2: int) -> Comparison:
    """Everything a report shows about group 1 against group 2."""
    a, b = rate(x1, n1), rate(x2, n2)
    difference = a.rate - b.rate if a.rate is not None and b.rate is not None else None
    relative = None
    if a.rate is not None and b.rate:
        relative = a.rate / b.rate - 1
    ratio = katz_ratio(x1, n1, x2, n2)
    return Comparison(
        a=a,
        b=b,
        difference=difference,
        difference_ci=newcombe_difference(x1, n1, x2, n2),
        p_value=pooled_z_p_value(x1, n1, x2, n2),
        relative_lift=relative,
        relative_lift_ci=Interval(ratio.low - 1, ratio.high - 1) if ratio else None,
        detectable_difference=detectable_difference(n1, n2, (x1 + x2) / (n1 + n2))
        if n1 and n2
        else None,
    )


def _check(count: int, total: int) -> None:
    if total < 0 or count < 0 or count > total:
        raise ValueError(f"a rate needs 0 <= count <= total (got {count} of {total})")
