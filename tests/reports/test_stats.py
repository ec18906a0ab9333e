"""The report statistics against scipy and statsmodels (test-only dependencies)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats  # the test extra: a missing reference fails, never skips
from statsmodels.stats import proportion

from engine.reports import stats

CASES = [
    (120, 1000, 80, 1000),
    (30, 250, 11, 240),
    (5, 40, 0, 12),
    (0, 50, 3, 60),
    (49, 50, 40, 50),
    (1, 1, 0, 1),
    (3456, 90000, 312, 10000),
]


def test_z95_is_the_normal_quantile() -> None:
    assert pytest.approx(scipy_stats.norm.ppf(0.975), abs=1e-12) == stats.Z95
    for z in (0.0, 0.5, 1.96, 3.3, 7.0):
        assert stats.normal_two_sided_p(z) == pytest.approx(
            2 * scipy_stats.norm.sf(z), rel=1e-9, abs=1e-300
        )


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), CASES)
def test_against_statsmodels(x1: int, n1: int, x2: int, n2: int) -> None:
    low, high = proportion.proportion_confint(x1, n1, alpha=0.05, method="wilson")
    wilson = stats.wilson(x1, n1)
    assert wilson is not None
    assert (wilson.low, wilson.high) == pytest.approx((low, high), abs=1e-9)

    low, high = proportion.confint_proportions_2indep(
        x1, n1, x2, n2, method="newcomb", compare="diff", alpha=0.05
    )
    diff = stats.newcombe_difference(x1, n1, x2, n2)
    assert diff is not None
    assert (diff.low, diff.high) == pytest.approx((low, high), abs=1e-9)

    p = stats.pooled_z_p_value(x1, n1, x2, n2)
    if x1 + x2 in (0, n1 + n2):
        assert p is None
    else:
        _, expected = proportion.proportions_ztest([x1, x2], [n1, n2])
        assert p == pytest.approx(expected, rel=1e-9)
        # The same test as the chi-square of the 2x2 table without continuity correction.
        table = [[x1, n1 - x1], [x2, n2 - x2]]
        chi2 = scipy_stats.chi2_contingency(table, correction=False)
        assert p == pytest.approx(chi2.pvalue, rel=1e-7)

    ratio = stats.katz_ratio(x1, n1, x2, n2)
    if x1 == 0 or x2 == 0:
        assert ratio is None
    else:
        low, high = proportion.confint_proportions_2indep(
            x1, n1, x2, n2, method="log", compare="ratio", alpha=0.05
        )
        assert ratio is not None
        assert (ratio.low, ratio.high) == pytest.approx((low, high), rel=1e-9)


def test_compare_by_hand() -> None:
    # 120/1000 vs 80/1000: difference 0.04, relative lift 0.5.
    c = stats.compare(120, 1000, 80, 1000)
    assert c.a.rate == 0.12 and c.b.rate == 0.08
    assert c.difference == pytest.approx(0.04)
    assert c.relative_lift == pytest.approx(0.5)
    # z = 0.04 / sqrt(0.1 * 0.9 * 0.002) = 2.9814; p = 0.00287
    assert c.p_value == pytest.approx(2 * scipy_stats.norm.sf(0.04 / math.sqrt(0.00018)))
    assert c.p_value == pytest.approx(0.00287, abs=1e-5)
    # Katz: se = sqrt(1/120 - 1/1000 + 1/80 - 1/1000) = 0.13844; 1.5 * exp(+-1.96 se) - 1
    se = math.sqrt(1 / 120 - 1 / 1000 + 1 / 80 - 1 / 1000)
    assert c.relative_lift_ci is not None
    assert c.relative_lift_ci.low == pytest.approx(1.5 * math.exp(-stats.Z95 * se) - 1)
    assert c.relative_lift_ci.high == pytest.approx(1.5 * math.exp(stats.Z95 * se) - 1)


def test_empty_and_degenerate_groups() -> None:
    c = stats.compare(0, 0, 3, 10)
    assert c.a.rate is None and c.difference is None and c.p_value is None
    assert c.difference_ci is None and c.relative_lift is None
    c = stats.compare(4, 10, 0, 10)
    assert c.relative_lift is None and c.relative_lift_ci is None
    assert c.difference == pytest.approx(0.4) and c.difference_ci is not None
    with pytest.raises(ValueError, match="count <= total"):
        stats.rate(5, 4)


@settings(max_examples=200, deadline=None)
@given(
    n1=st.integers(1, 5000),
    n2=st.integers(1, 5000),
    f1=st.floats(0, 1),
    f2=st.floats(0, 1),
)
def test_intervals_contain_their_estimates(n1: int, n2: int, f1: float, f2: float) -> None:
    x1, x2 = round(f1 * n1), round(f2 * n2)
    c = stats.compare(x1, n1, x2, n2)
    assert c.a.ci is not None and c.difference_ci is not None and c.difference is not None
    assert 0.0 <= c.a.ci.low <= x1 / n1 <= c.a.ci.high <= 1.0
    assert -1.0 <= c.difference_ci.low <= c.difference + 1e-12
    assert c.difference - 1e-12 <= c.difference_ci.high <= 1.0
    if c.relative_lift_ci is not None and c.relative_lift is not None:
        assert c.relative_lift_ci.low <= c.relative_lift + 1e-9 <= c.relative_lift_ci.high + 2e-9
