import random

from bayling.synthesize.split import split_flags


def split_rows(rows: list[dict], heldout_fraction: float, seed: int) -> dict[str, str]:
    flags = split_flags(((r["id"], list(r["texts"].values())) for r in rows), heldout_fraction, seed)
    return {row["id"]: ("heldout" if flag else "train") for row, flag in zip(rows, flags)}


def _rows(n: int, shared_every: int = 0) -> list[dict]:
    rows = []
    for i in range(n):
        english = f"sentence {i // shared_every}" if shared_every else f"sentence {i}"
        rows.append({"id": f"r:{i}", "texts": {"eng_Latn": english, "fra_Latn": f"phrase {i}"}})
    return rows


def _segments(rows, ids):
    return {" ".join(t.casefold().split()) for r in rows if r["id"] in ids for t in r["texts"].values()}


def test_split_is_seeded_and_deterministic():
    rows = _rows(200)
    first = split_rows(rows, 0.1, seed=1)
    assert first == split_rows(list(rows), 0.1, seed=1)
    assert first != split_rows(rows, 0.1, seed=2)
    assert sum(v == "heldout" for v in first.values()) == 20


def test_no_segment_appears_on_both_sides_even_when_rows_share_text():
    # Every 3 consecutive rows share their English side; case and spacing differences must not leak.
    rows = _rows(300, shared_every=3)
    rows[7]["texts"]["fra_Latn"] = "PHRASE  0"  # joins row 7's group with row 0's group
    random.Random(0).shuffle(rows)
    split = split_rows(rows, 0.2, seed=5)
    train = {rid for rid, s in split.items() if s == "train"}
    heldout = {rid for rid, s in split.items() if s == "heldout"}
    assert heldout and train and not (train & heldout)
    assert not (_segments(rows, train) & _segments(rows, heldout))
    assert abs(len(heldout) - 60) <= 3


def test_tiny_corpus_still_gets_a_heldout_row():
    split = split_rows(_rows(3), 0.1, seed=0)
    assert sorted(split.values()) == ["heldout", "train", "train"]
