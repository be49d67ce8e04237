"""Alert hysteresis (pipeline/alerting.py's judge): fire at the threshold, clear only below it less
RESOLVE_MARGIN, hold in between — with the edges exact for rates made of counts."""

from __future__ import annotations

import pytest

from blogimg.pipeline.alerting import RESOLVE_MARGIN, Verdict, judge


@pytest.mark.parametrize(("failed", "calls", "expected"), [
    (10, 50, Verdict.FIRE),  # 20%: at the threshold
    (9, 50, Verdict.HOLD),  # 18%: on the margin, not below it (0.2 × 0.9 is 0.18000000000000002)
    (89, 500, Verdict.CLEAR),  # 17.8%: below it
    (19, 100, Verdict.HOLD),
])
def test_a_rate_fires_at_the_threshold_and_clears_only_below_the_margin(failed: int, calls: int,
                                                                         expected: Verdict) -> None:
    assert RESOLVE_MARGIN == 0.1  # the cases above are placed around 18%
    assert judge(failed / calls, 0.2) is expected


def test_a_rule_that_may_not_fire_holds_or_clears_and_above_means_strictly_above() -> None:
    assert judge(0.5, 0.2, may_fire=False) is Verdict.HOLD
    assert judge(0.1, 0.2, may_fire=False) is Verdict.CLEAR
    assert judge(0.2, 0.2, above=True) is Verdict.HOLD
    assert judge(0.21, 0.2, above=True) is Verdict.FIRE
