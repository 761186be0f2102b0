"""Rebuild the embedded CC0 sample corpus from a TICO-19 checkout (provenance: data/sample/tico19/README.md).

    python tools/make_sample.py ../shared/data/parallel/tico19

Takes the TICO-19 test set (en-XX line-aligned bitexts), keeps line numbers whose English side is
identical across the chosen pairs, 4 to 24 words long, outside the block where the French side is
misaligned, and takes every k-th such line until ROWS rows.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROWS = 300
PAIRS = {"fra_Latn": "en-fr/test.fr", "zho_Hans": "en-zh/test.zh", "swh_Latn": "en-sw/test.sw"}
# In this copy the French side of lines 425-810 belongs to other sentences (checked by hand:
# e.g. line 806 is about Vladimir Putin in English and about animal coronaviruses in French).
MISALIGNED = range(424, 810)  # 0-based indices of lines 425..810
OUT = Path(__file__).resolve().parent.parent / "data" / "sample" / "tico19"


def main(tico: Path) -> None:
    english = {code: (tico / rel).parent.joinpath("test.en").read_text("utf-8").splitlines() for code, rel in PAIRS.items()}
    targets = {code: (tico / rel).read_text("utf-8").splitlines() for code, rel in PAIRS.items()}
    first = next(iter(english.values()))
    eligible = [
        i for i in range(len(first))
        if i not in MISALIGNED
        and all(english[c][i] == first[i] for c in PAIRS)
        and 4 <= len(first[i].split()) <= 24
        and all(targets[c][i].strip() for c in PAIRS)
        and '"' not in first[i]
    ]
    step = max(1, len(eligible) // ROWS)
    chosen = eligible[::step][:ROWS]
    OUT.mkdir(parents=True, exist_ok=True)
    columns = {"eng_Latn": first, **targets}
    for code, lines in columns.items():
        (OUT / f"tico19.{code}.txt").write_text("".join(lines[i].strip() + "\n" for i in chosen), "utf-8")
    (OUT / "lines.txt").write_text("".join(f"{i + 1}\n" for i in chosen), "utf-8")
    print(f"{len(chosen)} rows from {len(eligible)} eligible lines; languages: {', '.join(columns)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
