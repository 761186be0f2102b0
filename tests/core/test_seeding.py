"""Seeded draws: order-independent, and the same values the pipeline has always drawn (so outputs stay byte-identical)."""

import hashlib
import random

from bayling.core.seeding import coin, rank_key, row_rng, seeded_digest, unit_draw


def test_draws_depend_only_on_seed_and_keys():
    assert row_rng(3, "r:1", "x").random() == row_rng(3, "r:1", "x").random()
    assert row_rng(3, "r:1", "x").random() != row_rng(3, "r:2", "x").random() != row_rng(4, "r:1", "x").random()
    assert unit_draw(1, "a", "b") == unit_draw(1, "a", "b") and 0 <= unit_draw(1, "a", "b") < 1
    assert rank_key(7, "k") != rank_key(8, "k")


def test_the_formulas_the_data_was_made_with():
    # row generators, mix coins, general-chat split, split order and test-set order, as first written
    assert row_rng(13, "t:5", "translate:a-b").random() == random.Random(hashlib.sha256(b"13\x00translate:a-b\x00t:5").digest()).random()
    mix = int.from_bytes(hashlib.sha256(b"13\x00mix\x00c:9").digest()[:8], "big") / 2**64
    assert unit_draw(13, "mix", "c:9") == mix
    assert rank_key(13, "r:4") == hashlib.sha256(b"13\x00r:4").hexdigest()
    assert seeded_digest(0, "") == hashlib.sha256(b"0\x00").digest()


def test_coin_is_calibrated_and_certain_at_the_ends():
    draws = [coin(5, 0.25, "c", str(i)) for i in range(4000)]
    assert abs(sum(draws) / 4000 - 0.25) < 0.03
    assert all(coin(5, 1.0, str(i)) for i in range(50)) and not any(coin(5, 0.0, str(i)) for i in range(50))
