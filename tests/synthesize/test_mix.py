import pytest

from bayling.config.synthesize import BAYLING2_MIX
from bayling.synthesize.mix import achieved_mix, keep_draw, plan_mix


def test_mix_plan_downsamples_to_the_requested_shares():
    plan = plan_mix({("general", "zh"): 1000, ("general", "en"): 50000, ("translation", "cross"): 3000}, BAYLING2_MIX, "downsample")
    kept = {
        cell: n * plan.keep_probability[cell]
        for cell, n in {("general", "zh"): 1000, ("general", "en"): 50000, ("translation", "cross"): 3000}.items()
    }
    total = sum(kept.values())
    assert kept[("general", "zh")] == pytest.approx(1000)
    assert kept[("general", "en")] / total == pytest.approx(0.262)
    assert kept[("translation", "cross")] / total == pytest.approx(0.306)


def test_mix_plan_renormalises_over_cells_with_data_and_reports():
    plan = plan_mix({("translation", "cross"): 300, ("interactive", "cross"): 30}, BAYLING2_MIX, "downsample")
    assert plan.keep_probability == {("translation", "cross"): pytest.approx(1.0), ("interactive", "cross"): pytest.approx(1.0)}
    assert plan.requested["any.zh"] == pytest.approx(0.432) and plan.available == {"any.cross": 330}
    report = plan_mix({("general", "other"): 5}, BAYLING2_MIX, "report")
    assert report.keep_probability == {("general", "other"): 1.0}
    assert report.available == {"general.other (not requested)": 5}
    assert achieved_mix({("general", "zh"): 1, ("translation", "cross"): 3}, BAYLING2_MIX) == {"any.cross": 0.75, "any.zh": 0.25}


def test_keep_draw_is_deterministic_and_calibrated():
    draws = [keep_draw(7, f"id{i}", 0.3) for i in range(5000)]
    assert draws == [keep_draw(7, f"id{i}", 0.3) for i in range(5000)]
    assert abs(sum(draws) / 5000 - 0.3) < 0.03
