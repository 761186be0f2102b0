import copy

import pytest

from bayling.chat import IGNORE_INDEX, assistant_spans, encode_conversations, label_tokens
from bayling.errors import PipelineError

CONVERSATION = [
    {"role": "user", "content": "Provide the French translation for this sentence: Wash your hands."},
    {"role": "assistant", "content": "Lavez-vous les mains."},
    {"role": "user", "content": "Make it informal."},
    {"role": "assistant", "content": "Lave-toi les mains."},
]


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_known_two_turn_conversation_exact_ids_and_labels(tokenizer):
    """Build the expected ids piece by piece, independently of the offset-based labelling."""
    system = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    pieces = [
        (system + "<|im_start|>user\n" + CONVERSATION[0]["content"] + "<|im_end|>\n<|im_start|>assistant\n", False),
        (CONVERSATION[1]["content"] + "<|im_end|>", True),
        ("\n<|im_start|>user\n" + CONVERSATION[2]["content"] + "<|im_end|>\n<|im_start|>assistant\n", False),
        (CONVERSATION[3]["content"] + "<|im_end|>", True),
        ("\n", False),
    ]
    expected_ids, expected_labels = [], []
    for text, supervised in pieces:
        ids = _ids(tokenizer, text)
        expected_ids += ids
        expected_labels += ids if supervised else [IGNORE_INDEX] * len(ids)

    (encoded,) = encode_conversations(tokenizer, [CONVERSATION])
    assert encoded.input_ids == expected_ids
    assert encoded.labels == expected_labels
    eos = tokenizer.eos_token_id
    supervised_eos = [i for i, (t, l) in enumerate(zip(encoded.input_ids, encoded.labels)) if t == eos and l == eos]
    assert len(supervised_eos) == 2  # each assistant turn ends with a supervised end-of-turn token
    assert tokenizer.decode([t for t in encoded.labels if t != IGNORE_INDEX]) == (
        "Lavez-vous les mains.<|im_end|>Lave-toi les mains.<|im_end|>"
    )


def test_spans_cover_content_and_end_token(tokenizer):
    text, spans = assistant_spans(tokenizer, CONVERSATION)
    assert [text[a:b] for a, b in spans] == ["Lavez-vous les mains.<|im_end|>", "Lave-toi les mains.<|im_end|>"]


def test_label_tokens_only_inside_spans():
    ids = [10, 11, 12, 13, 14]
    offsets = [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert label_tokens(ids, offsets, [(4, 8)]) == [IGNORE_INDEX, IGNORE_INDEX, 12, 13, IGNORE_INDEX]


def test_template_that_is_not_prefix_stable_is_refused(tokenizer):
    odd = copy.deepcopy(tokenizer)
    odd.chat_template = "{% for m in messages %}{% if loop.last %}[last]{% endif %}{{ m.content }}{% endfor %}"
    with pytest.raises(PipelineError, match="prefix-stable"):
        assistant_spans(odd, CONVERSATION)


def test_system_message_is_never_supervised(tokenizer):
    conversation = [{"role": "system", "content": "Be brief."}] + CONVERSATION[:2]
    (encoded,) = encode_conversations(tokenizer, [conversation])
    assert tokenizer.decode([t for t in encoded.labels if t != IGNORE_INDEX]) == "Lavez-vous les mains.<|im_end|>"
    assert "Be brief." in tokenizer.decode(encoded.input_ids)
