import copy

import numpy as np
import pytest
from helpers import encode

from bayling.core.errors import PipelineError
from bayling.tokenize.chat import (
    IGNORE_INDEX,
    Renderer,
    Tokenized,
    assistant_spans,
    fit,
    labels_for,
    tokenize_batch,
)
from bayling.tokenize.templates import BAYLING_3_SYSTEM, BAYLING_V1_SYSTEM, compile_template, prepare_tokenizer

CONVERSATION = [
    {"role": "user", "content": "Provide the French translation for this sentence: Wash your hands."},
    {"role": "assistant", "content": "Lavez-vous les mains."},
    {"role": "user", "content": "Make it informal."},
    {"role": "assistant", "content": "Lave-toi les mains."},
]
SMOL_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def expected_pieces(template: str):
    u1, a1, u2, a2 = (m["content"] for m in CONVERSATION)
    if template == "model":
        return [
            (SMOL_SYSTEM + "<|im_start|>user\n" + u1 + "<|im_end|>\n<|im_start|>assistant\n", False),
            (a1 + "<|im_end|>", True),
            ("\n<|im_start|>user\n" + u2 + "<|im_end|>\n<|im_start|>assistant\n", False),
            (a2 + "<|im_end|>", True),
            ("\n", False),
        ]
    if template == "bayling-v1":
        return [
            (BAYLING_V1_SYSTEM + "\n\n### Instruction:\n" + u1 + "\n### Response:\n", False),
            (a1 + "<|im_end|>", True),  # the tokenizer's EOS closes every response
            ("\n### Instruction:\n" + u2 + "\n### Response:\n", False),
            (a2 + "<|im_end|>", True),
            ("\n", False),
        ]
    header = "<|start_header_id|>{}<|end_header_id|>\n\n"
    return [
        (
            header.format("system")
            + BAYLING_3_SYSTEM
            + "<|eot_id|>"
            + header.format("user")
            + u1
            + "<|eot_id|>"
            + header.format("assistant"),
            False,
        ),
        (a1 + "<|eot_id|>", True),
        (header.format("user") + u2 + "<|eot_id|>" + header.format("assistant"), False),
        (a2 + "<|eot_id|>", True),
    ]


@pytest.fixture
def fresh_tokenizer(tokenizer):
    return copy.deepcopy(tokenizer)


@pytest.mark.parametrize("template", ["model", "bayling-v1", "bayling-3"])
def test_known_two_turn_conversation_exact_ids_and_labels(fresh_tokenizer, template):
    """The text is spelt out piece by piece; ids come from tokenizing it whole, and the expected labels
    from the slow tokenizer path's offsets: a token is supervised if it overlaps a supervised piece."""
    prepared = prepare_tokenizer(fresh_tokenizer, template)
    tok = prepared.tokenizer
    pieces = expected_pieces(template)
    text = "".join(piece for piece, _ in pieces)
    assert tok.apply_chat_template(CONVERSATION, tokenize=False) == text
    supervised_ranges, cursor = [], 0
    for piece, supervised in pieces:
        if supervised:
            supervised_ranges.append((cursor, cursor + len(piece)))
        cursor += len(piece)
    reference = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    expected_labels = [
        token if any(start < b and end > a for a, b in supervised_ranges) else IGNORE_INDEX
        for token, (start, end) in zip(reference["input_ids"], reference["offset_mapping"])
    ]
    (encoded,) = encode(tok, [CONVERSATION], end_of_turn=prepared.end_of_turn)
    assert encoded.input_ids.tolist() == reference["input_ids"]
    assert encoded.labels.tolist() == expected_labels
    end_id = tok.convert_tokens_to_ids(prepared.end_of_turn)
    supervised_ends = [i for i, (t, l) in enumerate(zip(encoded.input_ids, encoded.labels)) if t == end_id and l == end_id]
    assert len(supervised_ends) == 2  # each reply ends with its end-of-turn token, and that token carries loss
    replies = tok.decode(encoded.input_ids[encoded.labels != IGNORE_INDEX])
    assert replies.strip() == "Lavez-vous les mains." + prepared.end_of_turn + "Lave-toi les mains." + prepared.end_of_turn
    if template == "bayling-3":
        assert prepared.added_tokens == ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
        assert len(tok) == 49152 + 3


def test_every_label_position_for_last_turn_only(tokenizer):
    (both,) = encode(tokenizer, [CONVERSATION], loss_on="all")
    (last,) = encode(tokenizer, [CONVERSATION], loss_on="last")
    assert both.input_ids.tolist() == last.input_ids.tolist()
    supervised_all = np.flatnonzero(both.labels != IGNORE_INDEX)
    supervised_last = np.flatnonzero(last.labels != IGNORE_INDEX)
    second_turn = supervised_all[supervised_all >= supervised_last[0]]
    assert supervised_last.tolist() == second_turn.tolist() and len(supervised_last) < len(supervised_all)
    for i in range(len(last)):
        expected = last.input_ids[i] if i in set(supervised_last.tolist()) else IGNORE_INDEX
        assert last.labels[i] == expected
    assert tokenizer.decode(last.input_ids[supervised_last]) == "Lave-toi les mains.<|im_end|>"


def test_spans_cover_content_and_end_token(tokenizer):
    text, spans = assistant_spans(tokenizer, CONVERSATION)
    assert [text[a:b] for a, b in spans] == ["Lavez-vous les mains.<|im_end|>", "Lave-toi les mains.<|im_end|>"]


def test_compiled_template_matches_jinja_on_varied_conversations(tokenizer):
    renderer = Renderer(tokenizer, "<|im_end|>", compile_template(tokenizer, "<|im_end|>"))
    conversations = [
        CONVERSATION,
        CONVERSATION[:2],
        [{"role": "system", "content": "Be brief."}] + CONVERSATION,
        [{"role": "user", "content": "  spaced  \n"}, {"role": "assistant", "content": "\n\nodd"}],
    ]
    assert renderer.render_batch(conversations) == [assistant_spans(tokenizer, c) for c in conversations]
    assert renderer.fast_batches == 1 and renderer.slow_batches == 0


def test_content_dependent_template_falls_back_to_jinja(fresh_tokenizer):
    fresh_tokenizer.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] | trim + '<|im_end|>\\n' }}{% endfor %}"
    )
    compiled = compile_template(fresh_tokenizer, "<|im_end|>")
    renderer = Renderer(fresh_tokenizer, "<|im_end|>", compiled)
    conversation = [{"role": "user", "content": " hi "}, {"role": "assistant", "content": " there "}]
    rendered = renderer.render_batch([conversation])
    assert rendered == [assistant_spans(fresh_tokenizer, conversation)] and renderer.slow_batches == 1


def test_template_that_is_not_prefix_stable_is_refused(fresh_tokenizer):
    fresh_tokenizer.chat_template = "{% for m in messages %}{% if loop.last %}[last]{% endif %}{{ m.content }}{% endfor %}"
    with pytest.raises(PipelineError, match="prefix-stable"):
        assistant_spans(fresh_tokenizer, CONVERSATION)


def test_system_message_is_never_supervised(tokenizer):
    conversation = [{"role": "system", "content": "Be brief."}] + CONVERSATION[:2]
    (encoded,) = encode(tokenizer, [conversation])
    assert tokenizer.decode(encoded.input_ids[encoded.labels != IGNORE_INDEX]) == "Lavez-vous les mains.<|im_end|>"


def test_truncation_cuts_only_after_a_whole_assistant_turn(tokenizer):
    renderer = Renderer(tokenizer, "<|im_end|>", compile_template(tokenizer, "<|im_end|>"))
    (item,) = tokenize_batch(tokenizer, renderer, [CONVERSATION])
    first_end, second_end = item.turns[0][1], item.turns[1][1]
    kept, status = fit(item, len(item), "truncate")
    assert status == "kept" and kept is item
    cut, status = fit(item, second_end - 1, "truncate")
    assert status == "truncated" and len(cut) == first_end and cut.turns == item.turns[:1]
    assert tokenizer.decode(cut.input_ids[-1:]) == "<|im_end|>"
    assert fit(item, first_end - 1, "truncate") == (None, "dropped")
    assert fit(item, second_end - 1, "drop") == (None, "dropped")
    assert labels_for(cut, "last").tolist() == labels_for(cut, "all").tolist()


def test_labels_for_ranges():
    item = Tokenized(np.arange(10, 20, dtype=np.int32), ((2, 4), (7, 9)))
    assert labels_for(item, "all").tolist() == [-100, -100, 12, 13, -100, -100, -100, 17, 18, -100]
    assert labels_for(item, "last").tolist() == [-100] * 7 + [17, 18, -100]


def test_templates_that_print_contents_verbatim_are_recognised(tokenizer, repo_root):
    from bayling.tokenize.templates import BAYLING_3, BAYLING_V1, content_is_verbatim

    assert content_is_verbatim(tokenizer.chat_template) and content_is_verbatim(BAYLING_V1) and content_is_verbatim(BAYLING_3)
    assert content_is_verbatim("{% for m in messages %}{{ m.role ~ ': ' ~ m.content ~ '\\n' }}{% endfor %}")
    for dependent in (
        "{% for m in messages %}{{ m['content'] | trim }}{% endfor %}",
        "{% for m in messages %}{% if m['content'] is string %}{{ m['content'] }}{% endif %}{% endfor %}",
        "{% for m in messages %}{% if m.content.startswith('x') %}X{% endif %}{{ m.content }}{% endfor %}",
        "{% set first = messages[0]['content'] %}{{ first }}",
        "{% for m in messages %}{{ m.content[:3] }}{% endfor %}",
    ):
        assert not content_is_verbatim(dependent), dependent


def test_compiled_template_is_exact_where_glue_depends_on_position(fresh_tokenizer):
    """Glue that changes with a message's position: one layout per role sequence, exact at every length."""
    fresh_tokenizer.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
        "{% if loop.index > 3 %}[turn {{ loop.index }}]{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    compiled = compile_template(fresh_tokenizer, "<|im_end|>")
    assert compiled is not None
    turns = [{"role": r, "content": f"{r} says {i}"} for i, r in enumerate(["user", "assistant"] * 4)]
    for n in (2, 4, 6, 8):
        assert compiled.render(turns[:n]) == assistant_spans(fresh_tokenizer, turns[:n], "<|im_end|>")
