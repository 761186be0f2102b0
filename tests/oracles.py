"""Oracles for the evaluate stage: stand-in repliers whose right answer is known, and the truth they are
checked against, read from the raw test files by this module (never through the pipeline's own items).

A stand-in replier takes the model's place behind `bayling.evaluate.engines.replier_for` (or
`local_replier`, for a champion's re-translation). It finds each prompt in the truth table and answers
with the item's reference, its source, or its source tagged with the test set and direction it was asked
for. The tests then read what the stage wrote and compare it, file by file and number by number, with
what the raw files and sacreBLEU say.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FLORES_ARCHIVE = ROOT / "data" / "sample" / "flores200" / "flores200-devtest.tar.gz"
SHARED = ROOT.parent / "shared" / "data"
TICO = ROOT / "data" / "sample" / "tico19"
FLORES_DIRECTIONS = ["eng_Latn-fra_Latn", "fra_Latn-eng_Latn", "eng_Latn-zho_Hans", "zho_Hans-eng_Latn", "eng_Latn-swh_Latn",
                     "swh_Latn-eng_Latn"]


@dataclass(frozen=True)
class Truth:
    """One test item as the raw files have it."""

    test_set: str
    direction: str
    source: str
    references: tuple[str, ...]
    id: str | None = None  # held-out items: the conversation's id; constrained items: {test set}:{direction}:{line}
    terms: tuple[str, ...] = ()  # constrained items: the terms the translation must contain

    @property
    def target(self) -> str:
        return self.direction.split("-")[1]

    def tag(self) -> str:
        return f"[{self.test_set} {self.direction}]"


def raw_lines(data: bytes) -> list[str]:
    """Lines as a plain reader sees them: split on newline only, the final empty one dropped."""
    lines = data.decode("utf-8").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def flores_lines(code: str) -> list[str]:
    with tarfile.open(FLORES_ARCHIVE) as archive:
        member = archive.extractfile(f"devtest/{code}.devtest")
        assert member is not None
        return raw_lines(member.read())


def prompt_key(messages: Sequence[dict[str, str]]) -> str:
    return json.dumps([{"role": m["role"], "content": m["content"]} for m in messages], ensure_ascii=False, sort_keys=True)


@dataclass
class TruthTable:
    """Every prompt the evaluation may send, with the raw item it is for; per test set and direction, the items
    in the order the files give them."""

    by_prompt: dict[str, Truth] = field(default_factory=dict)
    ordered: dict[tuple[str, str], list[Truth]] = field(default_factory=dict)
    by_id: dict[str, Truth] = field(default_factory=dict)

    def add(self, messages: Sequence[dict[str, str]], truth: Truth) -> None:
        key = prompt_key(messages)
        assert key not in self.by_prompt, f"two items share a prompt: {truth} and {self.by_prompt[key]}"
        self.by_prompt[key] = truth
        self.ordered.setdefault((truth.test_set, truth.direction), []).append(truth)
        if truth.id is not None:
            self.by_id[truth.id] = truth

    def file_set(self, name: str, direction: str, sources: list[str], references: list[list[str]], limit: int) -> None:
        from bayling.core.prompts import translation_prompt

        for i, source in enumerate(sources[:limit]):
            truth = Truth(name, direction, source, tuple(stream[i] for stream in references))
            self.add([{"role": "user", "content": translation_prompt(source, truth.target, "en")}], truth)

    def flores(self, name: str, directions: Iterable[str], limit: int) -> None:
        for direction in directions:
            src, tgt = direction.split("-")
            self.file_set(name, direction, flores_lines(src), [flores_lines(tgt)], limit)

    def constrained(self, name: str, direction: str, path: Path, limit: int, instruction_language: str = "en") -> None:
        """A lexically constrained set's first `limit` rows, read with json.loads line by line, with the prompt written
        out here: BayLing's translation request, a newline, and its constraint line (ictnlp/BayLing
        scripts/constrained_translate.py) with the terms joined by ", "."""
        from bayling.core.prompts import language_name

        rows = [json.loads(line) for line in path.read_text("utf-8").split("\n") if line.strip()][:limit]
        target = direction.split("-")[1]
        for line, row in enumerate(rows, start=1):
            truth = Truth(name, direction, row["src"], (row["tgt"],), f"{name}:{direction}:{line}", tuple(row["constraint"]))
            if instruction_language == "zh":
                text = f"提供这句话的{language_name(target, 'zh')}翻译：{row['src']}\n确保包含这些词：{', '.join(truth.terms)}"
            else:
                text = (f"Provide the {language_name(target)} translation for this sentence: {row['src']}\n"
                        f"Make sure to include these words: {', '.join(truth.terms)}")
            self.add([{"role": "user", "content": text}], truth)

    def heldout(self, name: str, path: Path) -> None:
        for line in path.read_text("utf-8").splitlines():
            row = json.loads(line)
            if row["meta"]["task"] != "translate":
                continue
            messages = row["messages"]
            direction = f"{row['meta']['src_lang']}-{row['meta']['tgt_lang']}"
            self.add(messages[:-1], Truth(name, direction, messages[-2]["content"], (messages[-1]["content"],), row["id"]))

    def find(self, messages: Sequence[dict[str, str]]) -> Truth:
        key = prompt_key(messages)
        assert key in self.by_prompt, f"the evaluation sent a prompt no test item has: {messages[-1]['content'][:120]!r}"
        return self.by_prompt[key]


Answer = Callable[[Truth], str]
REFERENCE: Answer = lambda t: t.references[0]  # noqa: E731
SOURCE: Answer = lambda t: " ".join(t.source.split())  # noqa: E731  (whitespace collapsed, as evaluate cleans outputs)
TAGGED: Answer = lambda t: f"{t.tag()} {SOURCE(t)}"  # noqa: E731
SILENT: Answer = lambda t: "..."  # noqa: E731
EMPTY: Answer = lambda t: ""  # noqa: E731
ITEM_TERMS: Answer = lambda t: f"<{t.id}> " + " / ".join(t.terms)  # noqa: E731  (its own id, then its own terms)


@dataclass
class OracleReplier:
    """Stands in for a model: answers every prompt from the truth table, in input order, and counts the prompts."""

    table: TruthTable
    answer: Answer
    label: str
    asked: list[str] = field(default_factory=list)
    budgets: list[tuple[Truth, int]] = field(default_factory=list)  # each prompt's token budget, as it was asked

    def __call__(self, conversations: Sequence[Sequence[dict[str, str]]], *, max_new_tokens: int | Sequence[int],
                 first_line_only: bool = False) -> list[str]:
        out = []
        limits = [max_new_tokens] * len(conversations) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        assert len(limits) == len(conversations)
        for messages, limit in zip(conversations, limits):
            truth = self.table.find(messages)
            self.asked.append(f"{truth.test_set}/{truth.direction}")
            self.budgets.append((truth, limit))
            out.append(self.answer(truth))
        return out

    def settings(self) -> dict[str, Any]:
        return {"engine": "oracle", "label": self.label}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def sacrebleu_scores(hypotheses: list[str], references: list[list[str]], target: str) -> dict[str, float]:
    """BLEU, chrF2 and chrF2++ straight from sacreBLEU, with the tokenizer the official WMT scores use."""
    import sacrebleu

    tokenize = "zh" if target == "zho_Hans" else "13a"
    return {"bleu": sacrebleu.corpus_bleu(hypotheses, references, tokenize=tokenize).score,
            "chrf": sacrebleu.corpus_chrf(hypotheses, references).score,
            "chrf_pp": sacrebleu.corpus_chrf(hypotheses, references, word_order=2).score}


# --- an evaluation of the three kinds of test set with stand-in repliers ---------------------------------------------

FLORES_SEGMENTS, WMT_SEGMENTS, HELDOUT_SEGMENTS = 8, 6, 3  # 8 per FLORES direction, as the default run
WMT = SHARED / "wmt22" / "zh-en"


def heldout_split(path: Path) -> list[Any]:
    """A held-out split as synthesize writes it: BayLing's translation requests, every pair of four languages of
    four TICO-19 rows, written to `path`."""
    from bayling.core.records import CorpusRow
    from bayling.synthesize.translation import translation_conversations

    lines = {code: (TICO / f"tico19.{code}.txt").read_text("utf-8").splitlines()[:4]
             for code in ("eng_Latn", "fra_Latn", "zho_Hans", "swh_Latn")}
    rows = [CorpusRow(f"tico19-sample:{i + 1}", "tico19-sample", {code: lines[code][i] for code in lines}) for i in range(4)]
    conversations = [c for row in rows for c in translation_conversations(row, instruction_language={"en": 0.6, "zh": 0.4}, seed=13)]
    path.write_text("".join(json.dumps(c.to_json(), ensure_ascii=False) + "\n" for c in conversations), "utf-8")
    return conversations


@dataclass
class World:
    """A project folder with a held-out split, the models' folder (a real tokenizer, no weights: the repliers stand
    in for the model) and the truth table of FLORES (6 directions), WMT22 zh-en (2 references) and the split."""

    root: Path
    model_dir: Path
    table: TruthTable
    heldout: list[Any]

    def params(self, **overrides: Any) -> Any:
        from bayling.config.evaluate import EvaluateParams

        return EvaluateParams.model_validate({
            "test_sets": [
                {"name": "flores", "kind": "flores", "archive": str(FLORES_ARCHIVE), "dir": "devtest", "directions": FLORES_DIRECTIONS,
                 "max_segments": FLORES_SEGMENTS},
                {"name": "wmt22-zh-en", "kind": "wmt", "direction": "zho_Hans-eng_Latn", "src": str(WMT / "src.txt"),
                 "refs": [str(WMT / "refA.txt"), str(WMT / "refB.txt")], "max_segments": WMT_SEGMENTS},
                {"name": "heldout", "kind": "heldout", "max_segments": HELDOUT_SEGMENTS},
            ],
            "generation_cache": None, "compare_with_champion": False, "bootstrap_samples": 200, "seed": 13, **overrides,
        })

    def expected_directions(self) -> dict[str, set[str]]:
        directions: dict[str, set[str]] = {}
        for test_set, direction in self.table.ordered:
            directions.setdefault(test_set, set()).add(direction)
        return directions


TICO_LANGUAGES = ("eng_Latn", "fra_Latn", "zho_Hans", "swh_Latn")


def tico_corpus(path: Path) -> dict[str, list[str]]:
    """data/raw/corpus.jsonl as fetch writes it from the TICO-19 sample (where evaluate measures each language's
    token rate for the generation budgets); returns the lines per language, as the raw files have them."""
    lines = {code: (TICO / f"tico19.{code}.txt").read_text("utf-8").splitlines() for code in TICO_LANGUAGES}
    rows = [{"id": f"tico19-sample:{i + 1}", "source": "tico19-sample", "texts": {code: lines[code][i] for code in lines}}
            for i in range(len(lines["eng_Latn"]))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return lines


def make_world(root: Path, model_dir: Path) -> World:
    tico_corpus(root / "data" / "raw" / "corpus.jsonl")
    heldout = heldout_split(root / "heldout.jsonl")
    table = TruthTable()
    table.flores("flores", FLORES_DIRECTIONS, FLORES_SEGMENTS)
    table.file_set("wmt22-zh-en", "zho_Hans-eng_Latn", raw_lines((WMT / "src.txt").read_bytes()),
                   [raw_lines((WMT / "refA.txt").read_bytes()), raw_lines((WMT / "refB.txt").read_bytes())], WMT_SEGMENTS)
    table.heldout("heldout", root / "heldout.jsonl")
    return World(root, model_dir, table, heldout)


@dataclass
class Evaluation:
    """What one evaluate_to wrote into `out`, and the repliers that stood in for the models."""

    out: Path
    result: Any
    repliers: dict[str, OracleReplier]

    @property
    def metrics(self) -> dict[str, Any]:
        return json.loads((self.out / "metrics.json").read_text("utf-8"))

    @property
    def review(self) -> dict[str, Any]:
        return json.loads((self.out / "review.json").read_text("utf-8"))

    def rows(self, model: str, test_set: str, direction: str) -> list[dict[str, Any]]:
        return read_jsonl(self.out / "predictions" / model / test_set / f"{direction}.jsonl")

    def files(self, model: str) -> Iterator[tuple[str, str, Path]]:
        for path in sorted((self.out / "predictions" / model).glob("*/*.jsonl")):
            yield path.parent.name, path.stem, path


def evaluate(world: World, out: Path, final: Answer, base: Answer, params: Any = None, register: Any = None,
             tracking_uri: str = "unused") -> Evaluation:
    """The evaluate stage's library entry, `evaluate_to`, with stand-in repliers for the fine-tuned and the base model."""
    import pytest

    from bayling.config.base_model import BaseModelParams
    from bayling.config.register import RegisterParams
    from bayling.evaluate import engines
    from bayling.evaluate.run import evaluate_to

    repliers = {"final": OracleReplier(world.table, final, "final"), "base": OracleReplier(world.table, base, "base")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engines, "replier_for", lambda params, label, path, tokenizer: repliers[label])
        result, _ = evaluate_to(out, params or world.params(), BaseModelParams(source="tiny-random", path=str(world.model_dir)),
                                register or RegisterParams(), world.root, world.model_dir, iter(world.heldout), tracking_uri)
    return Evaluation(out, result, repliers)
