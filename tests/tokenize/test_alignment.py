"""The ids before each assistant reply in training equal the ids inference feeds the model for the same
history (`apply_chat_template(history, add_generation_prompt=True)`), for every template and every
tokenizer the project can load offline; a pair that cannot meet it is refused by the tokenize stage."""

from __future__ import annotations

import pytest
from conftest import load_offline_tokenizer

from bayling.core.errors import PipelineError
from bayling.core.records import CorpusRow
from bayling.synthesize.interactive import interactive_conversation
from bayling.synthesize.translation import translation_conversations
from bayling.tokenize.chat import Renderer, prompt_alignment_problem, strip_replies, tokenize_batch
from bayling.tokenize.templates import compile_template, prepare_tokenizer

TOKENIZERS = ["smollm2", "phi3", "qwen2", "llama3"]
TEMPLATES = ["model", "bayling-v1", "bayling-3"]
# Pairs whose pre-tokenizer splits the template's "\n\n" before a letter but keeps it whole at the end of the
# prompt: training would feed "Ċ Ċ" where inference feeds "ĊĊ".
REFUSED = {("smollm2", "bayling-3")}


def sample_conversations(repo_root) -> list[list[dict[str, str]]]:
    codes = ["eng_Latn", "fra_Latn", "zho_Hans", "swh_Latn"]
    lines = {c: (repo_root / f"data/sample/tico19/tico19.{c}.txt").read_text("utf-8").splitlines()[:12] for c in codes}
    rows = [CorpusRow(f"s:{i}", "tico19", {c: lines[c][i] for c in codes}) for i in range(12)]
    out = []
    for row in rows:
        out += [c.messages for c in translation_conversations(row, instruction_language={"en": 1, "zh": 1}, seed=1)[:3]]
        outcome = interactive_conversation(row, seed=1, index=0, instruction_languages={"en": 1, "zh": 1},
                                           task_weights={"pivot": 1, "back_translate": 1, "multi_target": 1, "constrained": 1},
                                           max_followups=3, neighbours=rows, system_prompt="You translate." if len(out) % 2 else None)
        out.append(outcome.conversation.messages)
    out.append([{"role": "user", "content": "Leading newline?"}, {"role": "assistant", "content": "\n\nYes, and it is stripped."}])
    return out


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("name", TOKENIZERS)
def test_training_prompts_are_inference_prompts(repo_root, name, template):
    prepared = prepare_tokenizer(load_offline_tokenizer(name), template)
    tokenizer = prepared.tokenizer
    renderer = Renderer(tokenizer, prepared.end_of_turn, compile_template(tokenizer, prepared.end_of_turn))
    problem = prompt_alignment_problem(tokenizer, renderer)
    if (name, template) in REFUSED:
        assert problem and "Ċ Ċ" in problem and "ĊĊ" in problem
        return
    assert problem is None
    conversations = [strip_replies(c)[0] for c in sample_conversations(repo_root)]
    for messages, item in zip(conversations, tokenize_batch(tokenizer, renderer, conversations)):
        replies = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        assert len(item.turns) == len(replies)
        for (start, _), index in zip(item.turns, replies):
            prompt = tokenizer.apply_chat_template(messages[:index], add_generation_prompt=True, tokenize=True, return_dict=False)
            assert [int(t) for t in item.input_ids[:start]] == list(prompt), (name, template, messages[index]["content"])


def test_the_tokenize_stage_refuses_a_pair_that_cannot_meet_it(tiny_model_dir, tmp_path):
    from bayling.config.tokenize import TokenizeParams
    from bayling.tokenize.run import tokenize_dataset

    (tmp_path / "synth").mkdir()
    with pytest.raises(PipelineError, match="tokenize.template bayling-3 does not fit the tokenizer .*Ċ Ċ.*ĊĊ"):
        tokenize_dataset(TokenizeParams(template="bayling-3"), tiny_model_dir, tmp_path / "synth", tmp_path / "out")
