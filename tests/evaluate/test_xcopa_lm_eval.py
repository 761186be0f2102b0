"""XCOPA posed and scored as lm-evaluation-harness does, pinned on real items and hand-computed values.

The expected strings follow lm_eval/tasks/xcopa/utils.py (doc_to_text, doc_to_choice), lm_eval/api/task.py
(target_delimiter " ", acc, acc_norm over len(choice)) and lm_eval/api/model.py _encode_pair; each was
written out by hand here, not produced by the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bayling.config.evaluate import EvaluateParams
from bayling.core.errors import PipelineError
from bayling.evaluate.xcopa import (
    ChoiceItem,
    choice_metrics,
    encode_pair,
    evaluate_sets,
    loglikelihoods,
    read_choices,
    read_xcopa,
    score_choices,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
XCOPA = SHARED / "mc" / "xcopa" / "data"


def _item(lang: str, line: int) -> ChoiceItem:
    return read_xcopa(XCOPA / lang / f"test.{lang}.jsonl", lang, limit=line)[line - 1]


# (language, line of test.<lang>.jsonl, context, choices, gold, len(choice) by hand, hand-picked log-likelihoods,
#  acc, acc_norm as lm-eval's process_results gives them for those log-likelihoods)
PINNED = [
    ("sw", 1, "Kifaa kilikuwa kimefungwa kwenye mfuko vibofu kwa sababu",
     ("kikuwa nyepesi kuvunjika.", "kilikuwa kidogo."), 0, (25, 16), (-30.0, -20.0), 0, 1),
    # "İ".lower() is "i" + U+0307: 11 characters; a Turkish-aware "i" (10) would turn acc_norm to 0
    ("tr", 6, "Kızın enerjisi tükendi bu yüzden",
     ("dama oynadı.", "i\u0307p atladı."), 1, (12, 11), (-12.0, -10.5), 1, 1),
    # acc_norm over len(choice) without the delimiter: with it (6, 5) the second choice would win
    ("zh", 1, "该物品用气泡包装纸包着 因为", ("它很易碎。", "它很小。"), 0, (5, 4), (-10.0, -8.2), 0, 1),
    # a tie goes to the first choice (np.argmax)
    ("et", 3, "Termiidid tungisid majja sisse seetõttu",
     ("termiidid kadusid majast.", "termiidid sõid läbi majas oleva puidu."), 1, (25, 38), (-20.0, -20.0), 0, 1),
    # no full stop in Thai: lm-eval drops the premise's last letter all the same
    ("th", 1, "สิ่งของถูกห่อไว้ในพลาสติ ดังนั้น", ("มันบอบบาง", "มันเล็ก"), 0, (9, 7), (-5.0, -3.0), 0, 0),
]


@pytest.mark.parametrize("lang,line,context,choices,gold,lengths,lls,acc,acc_norm", PINNED, ids=[p[0] for p in PINNED])
def test_real_items_match_lm_eval_strings_and_scores(lang, line, context, choices, gold, lengths, lls, acc, acc_norm):
    item = _item(lang, line)
    assert item.context == context and item.choices == choices and item.label == gold
    assert item.requests() == [(context, " " + choice) for choice in choices]
    assert tuple(len(c) for c in item.choices) == lengths
    assert choice_metrics([item], lls) == {"acc": acc, "acc_norm": acc_norm}


def test_pinned_items_aggregate_to_the_mean():
    items = [_item(p[0], p[1]) for p in PINNED]
    lls = [ll for p in PINNED for ll in p[6]]
    assert choice_metrics(items, lls) == {"acc": 1 / 5, "acc_norm": 4 / 5}


def test_turkish_capital_i_and_the_cause_connector():
    item = _item("tr", 98)
    assert item.context == "Evimde elektrikler kesildi bu yüzden"
    assert item.choices == ("işığı açtım.", "sigortayı yeniden açtım.")
    cause = _item("sw", 1)
    assert cause.context.endswith(" kwa sababu")


class CharTokenizer:
    """One token per character, and a BOS (id 1) it adds by default, as Llama's tokenizers do."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if text.startswith("<s>"):
            return [1] * add_special_tokens + [1] + [ord(c) for c in text[3:]]
        return [1] * add_special_tokens + [ord(c) for c in text]

    def decode(self, ids: int | list[int]) -> str:  # an int too, as Hugging Face tokenizers take
        return "".join("<s>" if i == 1 else chr(i) for i in ([ids] if isinstance(ids, int) else ids))


def test_encode_pair_follows_lm_eval_bos_and_space_rules():
    tok = CharTokenizer()
    # the tokenizer's default (lm-eval >= 0.4.9.2): BOS on both encodings, the continuation is what follows
    assert encode_pair(tok, "ab", " c") == ([1, 97, 98], [32, 99])
    # lm-eval <= 0.4.9.1 for causal models: no special tokens
    assert encode_pair(tok, "ab", " c", add_bos=False) == ([97, 98], [32, 99])
    # trailing spaces of the context move to the continuation
    assert encode_pair(tok, "ab  ", "c", add_bos=False) == ([97, 98], [32, 32, 99])
    # a context that already starts with the BOS text gets no second one
    assert encode_pair(tok, "<s>ab", " c") == ([1, 97, 98], [32, 99])
    # an empty context is the prefix token (BOS), unless the continuation starts with it
    assert encode_pair(tok, "", " c") == ([1], [32, 99])


def test_token_split_matches_lm_eval_on_the_smollm2_tokenizer(tokenizer):
    for item in [_item(p[0], p[1]) for p in PINNED]:
        for context, continuation in item.requests():
            context_enc, continuation_enc = encode_pair(tokenizer, context, continuation)
            whole = tokenizer.encode(context + continuation)
            assert context_enc == tokenizer.encode(context)
            assert continuation_enc == whole[len(context_enc) :] and continuation_enc
    # a merge across the boundary: lm-eval keeps whole[len(context_enc):], so " cat" + "s" loses its "s"
    context_enc, continuation_enc = encode_pair(tokenizer, "The cat", "s are here")
    assert tokenizer.decode(context_enc) == "The cat" and tokenizer.decode(continuation_enc) == " are here"


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def _by_hand(model, tokenizer, context: str, continuation: str, max_length: int | None = None) -> float:
    """lm-eval's _loglikelihood_tokens for one request, unbatched."""
    import torch

    context_enc, continuation_enc = encode_pair(tokenizer, context, continuation)
    tokens = context_enc + continuation_enc
    if max_length:
        tokens = tokens[-(max_length + 1) :]
    with torch.inference_mode():
        logits = model(torch.tensor([tokens[:-1]])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)[-len(continuation_enc) :]
    return float(sum(logprobs[j, t] for j, t in enumerate(continuation_enc)))


def test_loglikelihoods_equal_the_unbatched_lm_eval_computation(tiny):
    model, tokenizer = tiny
    items = [_item(p[0], p[1]) for p in PINNED]
    pairs = [pair for item in items for pair in item.requests()] + [("The cat", "s are here")]
    expected = [_by_hand(model, tokenizer, c, x) for c, x in pairs]
    assert loglikelihoods(model, tokenizer, pairs, batch_size=3) == pytest.approx(expected, abs=1e-4)
    # left truncation to max_length + 1 tokens, the last one not read
    assert all(len(sum(encode_pair(tokenizer, c, x), [])) > 13 for c, x in pairs[:2])
    assert loglikelihoods(model, tokenizer, pairs[:2], max_length=12) == pytest.approx(
        [_by_hand(model, tokenizer, c, x, max_length=12) for c, x in pairs[:2]], abs=1e-4
    )
    assert score_choices(model, tokenizer, items, batch_size=4) == choice_metrics(items, expected[: 2 * len(items)])
    with pytest.raises(PipelineError, match="no tokens"):
        loglikelihoods(model, tokenizer, [("The cat", "s")])  # " cats" is one token: lm-eval asserts the same


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


def test_generic_jsonl_reads_lm_eval_style_rows(tmp_path):
    path = _write(tmp_path / "mc.jsonl", [
        {"query": "Roof shingle removal: A man is on a roof. He", "choices": ["is using wrap.", "starts pulling up roofing."], "gold": 1},
        {"query": "Q: 2+2? A:", "choices": ["three", "four", "five"], "gold": "four"},  # the text of the right choice
        {"query": "", "choices": ["a", "b"], "gold": "1"},  # a digit string is an index, as lm-eval's doc_to_target reads it
    ])
    items = read_choices(path)
    assert items[0] == ChoiceItem("Roof shingle removal: A man is on a roof. He", ("is using wrap.", "starts pulling up roofing."), 1)
    assert items[0].requests()[1] == ("Roof shingle removal: A man is on a roof. He", " starts pulling up roofing.")
    assert items[1].label == 1 and items[2].label == 1 and len(items) == 3 and len(read_choices(path, limit=2)) == 2
    renamed = _write(tmp_path / "renamed.jsonl", [{"ctx": "x", "endings": ["y", "z"], "label": 0}])
    assert read_choices(renamed, context="ctx", choices="endings", gold="label", target_delimiter="")[0].requests() == [
        ("x", "y"), ("x", "z")]


@pytest.mark.parametrize("bad,line,field", [
    ({"query": "q", "choices": ["a", "b"], "gold": 2}, 2, "gold"),
    ({"query": "q", "choices": ["a", "b"], "gold": True}, 2, "gold"),
    ({"query": "q", "choices": ["a", "b"], "gold": "c"}, 2, "gold"),
    ({"query": "q", "choices": "a b", "gold": 0}, 2, "choices"),
    ({"query": "q", "choices": ["a", ""], "gold": 0}, 2, "choices"),
    ({"choices": ["a", "b"], "gold": 0}, 2, "query"),
])
def test_generic_jsonl_bad_row_names_file_line_and_field(tmp_path, bad, line, field):
    path = _write(tmp_path / "bad.jsonl", [{"query": "q", "choices": ["a", "b"], "gold": 0}, bad])
    with pytest.raises(PipelineError) as err:
        read_choices(path)
    assert f"{path}:{line}:" in str(err.value) and f"field '{field}'" in str(err.value)


def test_bad_json_and_bad_xcopa_rows_name_the_line(tmp_path):
    path = _write(tmp_path / "x.jsonl", [{"query": "q", "choices": ["a", "b"], "gold": 0}, "", "{not json"])
    with pytest.raises(PipelineError, match=rf"{path}:3: not JSON"):
        read_choices(path)
    row = {"premise": "P.", "choice1": "A.", "choice2": "B.", "question": "why", "label": 0}
    path = _write(tmp_path / "test.sw.jsonl", [row])
    with pytest.raises(PipelineError, match=rf"{path}:1: field 'question'"):
        read_xcopa(path, "sw")
    with pytest.raises(PipelineError, match="no XCOPA connectors for language 'xx'"):
        read_xcopa(path, "xx")


def test_configured_sets_give_acc_and_acc_norm_keys_and_outcomes(tiny, tmp_path):
    model, tokenizer = tiny
    _write(tmp_path / "dev.jsonl", [{"q": "The cat", "opts": ["sat.", "flew.", "ran."], "a": 0}] * 3)
    params = EvaluateParams(xcopa=[
        {"dir": str(XCOPA), "languages": ["sw", "zh"], "split": "val", "max_items": 3},
        {"name": "toy", "format": "jsonl", "dir": str(tmp_path), "languages": ["en"], "split": "dev", "pattern": "{split}.jsonl",
         "fields": {"context": "q", "choices": "opts", "gold": "a"}},
    ])
    run = evaluate_sets(params.xcopa, model, tokenizer, "final", Path, batch_size=8)
    metrics = run.metrics
    assert set(metrics) == {f"{s}.{lang}.final.{m}" for s, langs in (("xcopa", ("sw", "zh", "avg")), ("toy", ("en", "avg")))
                            for lang in langs for m in ("acc", "acc_norm")}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert metrics["xcopa.avg.final.acc"] == pytest.approx((metrics["xcopa.sw.final.acc"] + metrics["xcopa.zh.final.acc"]) / 2,
                                                           abs=1e-4)
    # each item's outcome, in file order, averages to the reported score
    sw = run.outcomes["xcopa"]["sw"]
    assert [o.doc_id for o in sw] == [0, 1, 2] and {o.task for o in sw} == {"xcopa_sw"}
    assert sum(o.scores["acc"] for o in sw) / 3 == pytest.approx(metrics["xcopa.sw.final.acc"], abs=1e-4)
    assert run.items == 3 + 3 + 3
    # the old single-set form still validates, and evaluate.evaluation reads it as a list of one
    single = EvaluateParams(xcopa={"dir": "d", "languages": ["sw"], "split": "val", "length_normalized": False})
    assert single.xcopa.name == "xcopa" and single.xcopa.pattern.format(lang="sw", split="val") == "sw/val.sw.jsonl"
    # the old switch to length normalisation would silently change what `.acc` means: refused, with the new key
    with pytest.raises(ValueError, match="acc_norm is lm-eval's length-normalised accuracy"):
        EvaluateParams(xcopa={"dir": "d", "languages": ["sw"], "length_normalized": True})
    with pytest.raises(ValueError, match="'avg' cannot be a language"):
        EvaluateParams(xcopa={"dir": "d", "languages": ["sw", "avg"]})
