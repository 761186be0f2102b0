"""Chat templates: the model's own, BayLing v1 and BayLing-3, and a fast renderer compiled from any of them.

BayLing v1 follows ictnlp/BayLing's conversation.py ("BayLing" separator style): a system text, then
"### Instruction:" / "### Response:" turns, each response closed by the EOS token. BayLing-3 uses
Llama-3 headers and closes every turn with <|eot_id|>. The chosen template is written into the
exported tokenizer, so models/final renders prompts exactly as training did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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
Roles = tuple[str, ...]


def _jinja_render(tokenizer: Any, messages: Sequence[dict[str, str]], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def content_is_verbatim(template: str) -> bool:
    """Whether a Jinja chat template only ever prints a message's content as it is.

    True when every `…['content']` / `….content` in the template is printed directly, alone or joined
    to other text with `+` or `~`: never tested, compared, filtered (`| trim`), called, looped over or
    assigned. The rendered text is then the content of every message interleaved with text that can
    depend on the roles and positions of the messages but not on what they say.
    """
    from jinja2 import Environment, nodes

    try:
        tree = Environment().parse(template)
    except Exception:
        return False

    def is_content(node: nodes.Node) -> bool:
        return (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and node.arg.value == "content") or (
            isinstance(node, nodes.Getattr) and node.attr == "content")

    def check(node: nodes.Node, printed: bool) -> bool:
        if is_content(node):
            return printed
        if isinstance(node, nodes.Output):
            return all(check(child, not isinstance(child, nodes.TemplateData)) for child in node.nodes)
        keeps_printing = printed and isinstance(node, (nodes.Add, nodes.Concat))
        return all(check(child, keeps_printing) for child in node.iter_child_nodes())

    return check(tree, False)


@dataclass(frozen=True)
class _Layout:
    """The text around the messages of one sequence of roles, learnt from a sentinel render."""

    glue: tuple[str, ...]  # len(roles) + 1 pieces: before the first content, between contents, after the last
    spans: dict[int, tuple[int, int]]  # assistant message index -> (start, stop) offsets from its content's start and end


@dataclass
class CompiledTemplate:
    """A chat template reduced, per sequence of roles, to the literal text between message contents.

    Exact for every conversation when `content_is_verbatim` holds for the template (checked by
    `compile_template`): the text between contents then depends on the roles and positions only, and
    one sentinel render per distinct sequence of roles learns it. Assistant spans are located as
    `chat.assistant_spans` locates them: from the end of the generation prompt for that history
    through the end-of-turn token that follows the reply.
    """

    tokenizer: Any
    end_of_turn: str
    layouts: dict[Roles, _Layout | None] = field(default_factory=dict)

    def layout(self, roles: Roles) -> _Layout | None:
        if roles not in self.layouts:
            self.layouts[roles] = self._learn(roles)
        return self.layouts[roles]

    def _learn(self, roles: Roles) -> _Layout | None:
        marks = [{"role": r, "content": _MARK.format(i)} for i, r in enumerate(roles)]
        try:
            text = _jinja_render(self.tokenizer, marks)
            glue, cursor = [], 0
            for i in range(len(roles)):
                mark = _MARK.format(i)
                at = text.find(mark, cursor)
                if at < 0 or text.count(mark) != 1:
                    return None  # the template drops or repeats a message
                glue.append(text[cursor:at])
                cursor = at + len(mark)
            glue.append(text[cursor:])
            spans = {}
            for i, role in enumerate(roles):
                if role != "assistant":
                    continue
                prompt = _jinja_render(self.tokenizer, marks[:i], add_generation_prompt=True)
                through = _jinja_render(self.tokenizer, marks[: i + 1])
                if not (text.startswith(prompt) and text.startswith(through) and through.startswith(prompt)):
                    return None  # not prefix-stable: the reference renderer refuses this template too
                content_at = text.find(_MARK.format(i))
                tail = through[content_at + len(_MARK.format(i)):]
                cut = tail.find(self.end_of_turn)
                spans[i] = (len(prompt) - content_at, cut + len(self.end_of_turn) if cut >= 0 else len(tail))
        except Exception:
            return None
        return _Layout(tuple(glue), spans)

    def render(self, messages: Sequence[dict[str, str]]) -> tuple[str, list[Span]]:
        """The rendered conversation and each assistant turn's span (reply through end-of-turn token)."""
        layout = self.layout(tuple(m["role"] for m in messages))
        if layout is None:
            raise KeyError("this sequence of roles cannot be compiled")
        parts: list[str] = []
        spans: list[Span] = []
        position = 0
        for i, message in enumerate(messages):
            parts.append(layout.glue[i])
            position += len(layout.glue[i])
            if i in layout.spans:
                lead, trail = layout.spans[i]
                spans.append((position + lead, position + len(message["content"]) + trail))
            parts.append(message["content"])
            position += len(message["content"])
        parts.append(layout.glue[-1])
        return "".join(parts), spans


def compile_template(tokenizer: Any, end_of_turn: str) -> CompiledTemplate | None:
    """The tokenizer's chat template compiled to its literal glue, or None when it may depend on content."""
    if not tokenizer.chat_template or not content_is_verbatim(tokenizer.chat_template):
        return None
    compiled = CompiledTemplate(tokenizer, end_of_turn)
    if compiled.layout(("user", "assistant")) is None:
        return None
    return compiled
