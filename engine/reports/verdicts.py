"""Every comparison said in words, so that a manager reads the same thing the numbers say.

The verdict follows the 95% interval of the difference that the tables show (Newcombe's, see
stats.py): above 0, the first group is better; below 0, the second; across 0, "not
conclusive" (or "no detectable difference" when the estimate itself is 0.0 pp). When the data
cannot tell, the sentence adds the smallest difference groups of these sizes would have
detected (95%, 80% power), so a 14-member holdout is never read as evidence of no effect.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.reports.stats import Comparison

BETTER, WORSE, NOT_CONCLUSIVE, NO_DIFFERENCE, NO_DATA = (
    "better",
    "worse",
    "not conclusive",
    "no detectable difference",
    "no data",
)


@dataclass(frozen=True)
class Verdict:
    outcome: str  # BETTER | WORSE | NOT_CONCLUSIVE | NO_DIFFERENCE | NO_DATA (for group a)
    text: str
    # The smallest difference these group sizes detect (95%, 80% power), as a rate difference.
    detectable_difference: float | None


def _pp(value: float) -> str:
    return f"{value * 100:.1f}"


def verdict(
    comparison: Comparison,
    *,
    a: str = "treatment",
    b: str = "holdout",
    verb: str = "converts",
    detectable: str = "this holdout could only detect a lift of {mde} pp or more (80% power)",
    too_small: str = "this holdout is too small to detect any lift (80% power)",
) -> Verdict:
    """The plain sentence for ``a`` against ``b``. When the data cannot tell, ``detectable``
    words the minimum detectable effect ({mde} is replaced by it, in pp), or ``too_small``
    when that is more than the base rate leaves room for (no lift could be seen)."""
    mde = comparison.detectable_difference
    if comparison.a.total == 0 or comparison.b.total == 0:
        empty = a if comparison.a.total == 0 else b
        return Verdict(NO_DATA, f"no comparison: {empty} has no members", mde)
    if comparison.a.count == 0 and comparison.b.count == 0:
        return Verdict(NO_DATA, f"no comparison yet: nobody in {a} or {b} has converted", mde)
    difference, ci = comparison.difference, comparison.difference_ci
    assert difference is not None and ci is not None  # both groups have members
    interval = f"95% interval {_pp(ci.low)} to {_pp(ci.high)}"
    more = "more" if difference >= 0 else "less"
    moved = f"{a} {verb} {_pp(abs(difference))} pp {more} than {b}, {interval}"
    if ci.low > 0:
        return Verdict(BETTER, f"{moved}: {a} is better", mde)
    if ci.high < 0:
        return Verdict(WORSE, f"{moved}: {b} is better", mde)
    if _pp(abs(difference)) == "0.0":
        outcome, text = NO_DIFFERENCE, f"no detectable difference at 95% ({interval} pp)"
    else:
        outcome, text = NOT_CONCLUSIVE, f"{moved}: not conclusive"
    if mde is not None:
        a_rate, b_rate = comparison.a, comparison.b
        room = 1 - (a_rate.count + b_rate.count) / (a_rate.total + b_rate.total)
        text += "; " + (detectable.format(mde=_pp(mde)) if mde <= room else too_small)
    return Verdict(outcome, text, mde)
