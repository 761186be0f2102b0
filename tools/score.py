"""Score a hypothesis file the way the official WMT tables do: BLEU with the target language's tokenizer,
chrF2 and chrF2++ (sacreBLEU), with their signatures.

    python -m tools.score --hyp FILE --ref FILE [--ref FILE ...] --target-lang LANG [--json]

References are used in the order given. With --json the last line is one JSON object
(bleu, chrf, chrf_pp, signatures).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    from bayling.core.errors import PipelineError
    from bayling.core.languages import get_language
    from bayling.evaluate.metrics import score_files

    parser = argparse.ArgumentParser(
        prog="python -m tools.score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hyp", required=True, help="hypothesis file, one segment per line")
    parser.add_argument("--ref", required=True, action="append", help="reference file (repeat for several, used in this order)")
    parser.add_argument("--target-lang", required=True, help="FLORES-200 code of the target language, e.g. zho_Hans")
    parser.add_argument("--json", action="store_true", help="end with one JSON line: bleu, chrf, chrf_pp, signatures")
    args = parser.parse_args(argv)
    try:
        get_language(args.target_lang)
        scores = score_files(args.hyp, args.ref, args.target_lang)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in scores.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"BLEU {scores.bleu:.2f}  chrF {scores.chrf:.2f}  chrF++ {scores.chrf_pp:.2f}  ({scores.n} segments)")
    for metric, signature in scores.signatures.items():
        print(f"  {metric}: {signature}")
    if args.json:
        print(json.dumps({"bleu": scores.bleu, "chrf": scores.chrf, "chrf_pp": scores.chrf_pp, "signatures": scores.signatures}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `... | head`: the reader has gone, and that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
