from collections import Counter

import pytest

from bayling.config.synthesize import BAYLING2_MIX
from bayling.synthesize.mix import (
    achieved_mix,
    copies,
    keep_draw,
    language_report,
    merge_shards,
    mix_counts,
    plan_languages,
    plan_mix,
    temperature_factors,
)


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


ROWS = {"eng_Latn": 8000, "fra_Latn": 1000, "swh_Latn": 100, "zul_Latn": 10}


def _shares(rows: dict[str, int], factors: dict[str, float]) -> dict[str, float]:
    used = {lang: n * factors[lang] for lang, n in rows.items()}
    return {lang: v / sum(used.values()) for lang, v in used.items()}


def test_temperature_one_keeps_the_data_as_it_is():
    assert temperature_factors(ROWS, 1.0, 4.0) == {lang: 1.0 for lang in ROWS}


def test_temperature_five_gives_shares_proportional_to_n_to_the_fifth_root():
    factors = temperature_factors(ROWS, 5.0, max_repeat=1e9)
    weights = {lang: n ** 0.2 for lang, n in ROWS.items()}
    expected = {lang: w / sum(weights.values()) for lang, w in weights.items()}
    assert _shares(ROWS, factors) == pytest.approx(expected)
    assert sum(n * factors[lang] for lang, n in ROWS.items()) == pytest.approx(sum(ROWS.values()))  # the total is unchanged
    assert factors["eng_Latn"] < 1 < factors["swh_Latn"] < factors["zul_Latn"]


def test_infinite_temperature_is_uniform():
    factors = temperature_factors(ROWS, float("inf"), max_repeat=1e9)
    assert _shares(ROWS, factors) == pytest.approx({lang: 0.25 for lang in ROWS})


def test_repetition_is_capped_and_the_rest_goes_to_the_others():
    factors = temperature_factors(ROWS, float("inf"), max_repeat=3.0)
    assert factors["zul_Latn"] == pytest.approx(3.0) and factors["swh_Latn"] == pytest.approx(3.0)
    # 9,110 rows, 2,277.5 each wanted: zul and swh hit the cap, then fra (4,390 of the rest > 3,000); eng takes what is left
    assert factors["fra_Latn"] == pytest.approx(3.0) and factors["eng_Latn"] * 8000 == pytest.approx(9110 - 30 - 300 - 3000)
    assert sum(n * factors[lang] for lang, n in ROWS.items()) == pytest.approx(sum(ROWS.values()))
    assert temperature_factors(ROWS, float("inf"), max_repeat=1.0)["zul_Latn"] == pytest.approx(1.0)  # 1: never up-sample


def test_copies_repeat_deterministically_with_the_expected_mean():
    draws = [copies(3, f"id{i}", 2.4) for i in range(4000)]
    assert set(draws) == {2, 3} and draws == [copies(3, f"id{i}", 2.4) for i in range(4000)]
    assert sum(draws) / 4000 == pytest.approx(2.4, abs=0.05)
    assert [copies(3, f"id{i}", 0.3) for i in range(50)] == [int(keep_draw(3, f"id{i}", 0.3)) for i in range(50)]


def test_languages_are_balanced_inside_their_cell_and_merged_with_unique_ids(tmp_path):
    import json

    def chat(i, tgt, family="translation", group="cross"):
        return {"id": f"c{tgt}{i}", "messages": [], "meta": {"family": family, "group": group, "tgt_lang": tgt}}

    rows = [chat(i, "fra_Latn") for i in range(90)] + [chat(i, "swh_Latn") for i in range(10)]
    rows += [chat(i, "zho_Hans", "general", "zh") for i in range(5)]
    shard = tmp_path / "shard.jsonl"
    shard.write_text("".join(json.dumps(r) + "\n" for r in rows))
    counts = dict(mix_counts([shard])[0])
    languages = plan_languages(counts, BAYLING2_MIX, float("inf"), max_repeat=4.0)
    assert languages.factors[("translation", "cross", "swh_Latn")] == pytest.approx(4.0)  # 50 wanted, 40 allowed
    assert languages.factors[("general", "zh", "zho_Hans")] == 1.0  # alone in its cell
    out = tmp_path / "train.jsonl"
    with open(out, "w") as handle:
        kept = merge_shards([shard], handle, languages.factors, seed=1)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len({r["id"] for r in written}) == len(written) == sum(kept.values())
    assert kept[("translation", "cross", "swh_Latn")] == 40 and "cswh_Latn0#4" in {r["id"] for r in written}
    report = language_report(counts, dict(kept))
    assert report["swh_Latn"] == {"available": 10, "used": 40, "repeat": 4.0} and report["zho_Hans"]["repeat"] == 1.0


def test_resample_repeats_a_small_cell_instead_of_shrinking_the_others():
    available = {("general", "zh"): 270, ("general", "en"): 270, ("translation", "cross"): 3510}
    down = plan_mix(available, BAYLING2_MIX, "downsample")
    up = plan_mix(available, BAYLING2_MIX, "resample", max_repeat=4.0)
    used = {cell: n * up.keep_probability[cell] for cell, n in available.items()}
    total = sum(used.values())
    assert up.keep_probability[("general", "zh")] == pytest.approx(4.0)  # the scarcest cell at its cap
    assert used[("general", "en")] / total == pytest.approx(0.262) and used[("translation", "cross")] / total == pytest.approx(0.306)
    assert total == pytest.approx(4 * sum(n * p for n, p in zip(available.values(), down.keep_probability.values())))
    assert plan_mix(available, BAYLING2_MIX, "resample", max_repeat=1.0) == down


def test_no_row_is_written_more_than_max_repeat_times_and_the_modes_keep_their_word():
    from bayling.synthesize.mix import combined_factors

    language = {("general", "zh", "zho_Hant"): 3.5, ("general", "zh", "zho_Hans"): 0.9, ("translation", "cross", "swh_Latn"): 0.5}
    cell = {("general", "zh"): 4.0, ("translation", "cross"): 0.2}
    resample = combined_factors(language, cell, "resample", 4.0)
    assert resample[("general", "zh", "zho_Hant")] == 4.0 and resample[("general", "zh", "zho_Hans")] == pytest.approx(3.6)
    assert resample[("translation", "cross", "swh_Latn")] == pytest.approx(0.1)
    assert max(combined_factors(language, cell, "downsample", 4.0).values()) == 1.0  # downsample never repeats
    assert set(combined_factors(language, cell, "report", 4.0).values()) == {1.0}  # report keeps every row once


def test_resample_never_repeats_the_cell_richest_for_its_share():
    only_cross = plan_mix({("translation", "cross"): 300}, BAYLING2_MIX, "resample", max_repeat=4.0)
    assert only_cross.keep_probability == {("translation", "cross"): pytest.approx(1.0)}
    # zh is short but needs only 2x to reach its share: nothing is repeated more than the balance needs
    near = plan_mix({("general", "zh"): 216, ("general", "en"): 262, ("translation", "cross"): 306}, BAYLING2_MIX, "resample", 4.0)
    assert near.keep_probability[("general", "zh")] == pytest.approx(2.0) and near.keep_probability[("general", "en")] == pytest.approx(1.0)


def test_shares_of_supervised_tokens_weigh_each_conversation_by_its_replies(tmp_path):
    """Long general chats and short translations: planned in supervised tokens, the kept tokens reach the requested
    shares (within the per-conversation draws' noise), while counting conversations would leave them far off."""
    import json

    from bayling.synthesize.mix import achieved_mix, shard_weights

    def chat(i, family, group, reply_tokens):
        return {"id": f"{group}{i}", "messages": [{"role": "assistant", "content": "x" * reply_tokens}],
                "meta": {"family": family, "group": group, "tgt_lang": {"zh": "zho_Hans", "en": "eng_Latn"}.get(group, "fra_Latn")}}

    rows = [chat(i, "general", "zh", 200) for i in range(300)] + [chat(i, "general", "en", 100) for i in range(300)]
    rows += [chat(i, "translation", "cross", 20) for i in range(3000)]
    shard = tmp_path / "shard.jsonl"
    shard.write_text("".join(json.dumps(r) + "\n" for r in rows))
    weights = shard_weights([shard], lambda conversations: [len(c[0]["content"]) for c in conversations])
    assert weights[shard][:2] == [200, 200] and weights[shard][-1] == 20
    conversations, weighed = mix_counts([shard], weights)
    tokens = dict(weighed)
    assert conversations == mix_counts([shard])[0] == mix_counts([shard])[1]  # counts and tokens at once
    assert tokens[("general", "zh", "zho_Hans")] == 60000 and tokens[("translation", "cross", "fra_Latn")] == 60000
    plan = plan_mix({slot[:2]: n for slot, n in tokens.items()}, BAYLING2_MIX, "resample", max_repeat=4.0)
    factors = {slot: plan.keep_probability[slot[:2]] for slot in tokens}
    with open(tmp_path / "train.jsonl", "w") as handle:
        kept = merge_shards([shard], handle, factors, seed=3, weights=weights, kept_weight=(kept_tokens := Counter()))
    by_cell_tokens = {slot[:2]: n for slot, n in kept_tokens.items()}
    by_cell_conversations = {slot[:2]: n for slot, n in kept.items()}
    achieved = achieved_mix(by_cell_tokens, BAYLING2_MIX)
    assert all(abs(achieved[cell] - share) < 0.015 for cell, share in {"any.zh": 0.432, "any.en": 0.262, "any.cross": 0.306}.items())
    assert achieved_mix(by_cell_conversations, BAYLING2_MIX)["any.cross"] > 0.6  # the same data in conversations
