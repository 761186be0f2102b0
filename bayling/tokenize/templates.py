"""Chat templates: the model's own, BayLing v1 and BayLing-3, and a fast renderer compiled from any of them.

BayLing v1 follows ictnlp/BayLing's conversation.py ("BayLing" separator style): a system text, then
"### Instruction:" / "### Response:" turns, each response closed by the EOS token. BayLing-3 uses
Llama-3 headers and closes every turn with <|eot_id|>. The chosen template is written into the
exported tokenizer, so models/final renders prompts exactly as training did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bayling.core.errors import PipelineError

BAYLING_V1_SYSTEM = (
    "I am an intelligent language assistant developed by the NLP Group of ICT/CAS.\n"
    "Below is a dialog consisting of instructions and responses. Write a response that completes the request."
)
BAYLING_3_SYSTEM = "I am BayLing developed by the NLP Group of ICT/CAS."

BAYLING_V1 = (
    "{%- if messages[0]['role'] == 'system' -%}"
    "{{ messages[0]['content'] + '\\n\\n' }}{%- set rest = messages[1:] -%}"
    "{%- else -%}"
    "{{ '" + BAYLING_V1_SYSTEM.replace("\n", "\\n") + "\\n\\n' }}{%- set rest = messages -%}"
    "{%- endif -%}"
    "{%- for message in rest -%}"
    "{%- if message['role'] == 'user' -%}{{ '### Instruction:\\n' + message['content'] + '\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}{{ '### Response:\\n' + message['content'] + eos_token + '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '### Response:\\n' }}{%- endif -%}"
)

BAYLING_3 = (
    "{{ bos_token if bos_token == '<|begin_of_text|>' else '' }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{{ '<|start_header_id|>system<|end_header_id|>\\n\\n' + messages[0]['content'] + '<|eot_id|>' }}"
    "{%- set rest = messages[1:] -%}"
    "{%- else -%}"
    "{{ '<|start_header_id|>system<|end_header_id|>\\n\\n" + BAYLING_3_SYSTEM + "<|eot_id|>' }}"
    "{%- set rest = messages -%}"
    "{%- endif -%}"
    "{%- for message in rest -%}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}"
)


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    jinja: str | None  # None: keep the tokenizer's own chat_template
    end_of_turn: str | None  # None: the tokenizer's EOS token closes assistant turns
    special_tokens: tuple[str, ...] = ()


TEMPLATES = {
    "model": TemplateSpec("model", None, None),
    "bayling-v1": TemplateSpec("bayling-v1", BAYLING_V1, None),
    "bayling-3": TemplateSpec("bayling-3", BAYLING_3, "<|eot_id|>", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
}


@dataclass(frozen=True)
class PreparedTokenizer:
    tokenizer: Any
    template: str
    end_of_turn: str
    added_tokens: tuple[str, ...]


def prepare_tokenizer(tokenizer: Any, name: str) -> PreparedTokenizer:
    """Install template `name` on the tokenizer, adding any special tokens it needs that the vocabulary lacks."""
    spec = TEMPLATES[name]
    if spec.jinja is not None:
        tokenizer.chat_template = spec.jinja
    if not tokenizer.chat_template:
        raise PipelineError("the tokenizer has no chat_template of its own; choose tokenize.template: bayling-v1 or bayling-3")
    vocabulary = tokenizer.get_vocab()
    missing = tuple(t for t in spec.special_tokens if t not in vocabulary)
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": list(missing)}, replace_extra_special_tokens=False)
    end = spec.end_of_turn or tokenizer.eos_token
    if not end:
        raise PipelineError("the tokenizer has no EOS token to end assistant turns with")
    return PreparedTokenizer(tokenizer, name, end, missing)


def end_of_turn_ids(tokenizer: Any, end_of_turn: str) -> list[int]:
    """Token ids that end a generated reply: the template's end-of-turn token and the tokenizer's EOS."""
    ids = [tokenizer.convert_tokens_to_ids(end_of_turn)]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


# ---------------------------------------------------------------- fast rendering
_MARK = "\x1e{}\x1e"
Span = tuple[int, int]


def _jinja_render(tokenizer: Any, messages: Sequence[dict[str, str]], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


@dataclass(frozen=True)
class CompiledTemplate:
    """A template reduced to the literal text between message contents, learnt from probe renders.

    Valid for templates that wrap each message's content in text depending only on the roles around
    it (every template above, and ChatML, Llama, Mistral-style ones). `compile_template` checks that
    on probes, and the caller verifies it against the real renderer on real conversations.
    """

    start: dict[str, str]  # text before the first message's content, by that message's role
    between: dict[tuple[str, str], str]  # text between consecutive contents, by (previous role, next role)
    end: dict[str, str]  # text after the last content, by its role
    end_of_turn: str

    def render(self, messages: Sequence[dict[str, str]]) -> tuple[str, list[Span]]:
        """The rendered conversation and each assistant turn's span (content through end-of-turn token)."""
        parts: list[str] = []
        spans: list[Span] = []
        position = 0
        previous = None
        for message in messages:
            role, content = message["role"], message["content"]
            glue = self.start[role] if previous is None else self.between[(previous, role)]
            parts.append(glue)
            position += len(glue)
            if role == "assistant":
                after = self.end["assistant"] if message is messages[-1] else self.between.get(("assistant", "user"), self.end["assistant"])
                cut = after.find(self.end_of_turn)
                spans.append((position, position + len(content) + (cut + len(self.end_of_turn) if cut >= 0 else 0)))
            parts.append(content)
            position += len(content)
            previous = role
        parts.append(self.end[previous])
        return "".join(parts), spans


def compile_template(tokenizer: Any, end_of_turn: str) -> CompiledTemplate | None:
    """Learn the literal glue of the tokenizer's chat template from sentinel-content probes, or None."""
    probes = {
        "plain": ["user", "assistant", "user", "assistant"],
        "system": ["system", "user", "assistant", "user", "assistant"],
    }
    start: dict[str, str] = {}
    between: dict[tuple[str, str], str] = {}
    end: dict[str, str] = {}
    try:
        for roles in probes.values():
            messages = [{"role": r, "content": _MARK.format(i)} for i, r in enumerate(roles)]
            text = _jinja_render(tokenizer, messages)
            pieces = []
            cursor = 0
            for i in range(len(roles)):
                at = text.find(_MARK.format(i), cursor)
                if at < 0:
                    return None
                pieces.append(text[cursor:at])
                cursor = at + len(_MARK.format(i))
            tail = text[cursor:]
            for key, value in [(("start", roles[0]), pieces[0])] + [
                (("between", (roles[i - 1], roles[i])), pieces[i]) for i in range(1, len(roles))
            ] + [(("end", roles[-1]), tail)]:
                table = {"start": start, "between": between, "end": end}[key[0]]
                if table.setdefault(key[1], value) != value:
                    return None
        one = [{"role": "user", "content": _MARK.format(0)}]
        end["user"] = _jinja_render(tokenizer, one).split(_MARK.format(0), 1)[1]
    except Exception:
        return None
    return CompiledTemplate(start, between, end, end_of_turn)
