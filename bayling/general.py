"""General instruction data (BayLing 2): monolingual chats kept as they are, and carried across languages
into cross-lingual instructions through aligned versions of the same chat or through the teacher."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from bayling.corpus import Problem, Quarantined
from bayling.languages import get_language
from bayling.prompts import INSTRUCTION_CODES, language_name
from bayling.synthesis import language_group
from bayling.tasks import pick

ROLES = ("system", "user", "assistant")


def validate_messages(messages: Any) -> list[Problem]:
    if not isinstance(messages, list) or not messages:
        return [Problem("messages", "must be a non-empty list of {role, content}")]
    problems = []
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") != "system"]
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            problems.append(Problem(f"messages[{i}].role", f"must be one of {', '.join(ROLES)}"))
        elif not isinstance(message.get("content"), str) or not message["content"].strip():
            problems.append(Problem(f"messages[{i}].content", "empty text"))
    if not problems:
        expected = ["user", "assistant"] * (len(turns) // 2 + 1)
        if [m["role"] for m in turns] != expected[: len(turns)] or turns[-1]["role"] != "assistant":
            problems.append(Problem("messages", "turns must alternate user/assistant and end with the assistant"))
    return problems


def read_general(path: str, source: str, lines: Iterator[tuple[int, bytes]]) -> Iterator[dict[str, Any] | Quarantined]:
    """Chats from a JSONL file in `messages` format ({"id"?, "messages": [...]}); bad lines are quarantined."""
    for lineno, raw in lines:
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            yield Quarantined(source, path, lineno, (Problem(None, f"invalid UTF-8 at byte {exc.start}"),), "")
            continue
        except json.JSONDecodeError as exc:
            yield Quarantined(source, path, lineno, (Problem(None, f"invalid JSON: {exc.msg}"),), raw[:300].decode("utf-8", "replace"))
            continue
        problems = [Problem(None, "row must be a JSON object")] if not isinstance(obj, dict) else validate_messages(obj.get("messages"))
        if problems:
            yield Quarantined(source, path, lineno, tuple(problems), raw[:300].decode("utf-8", "replace"))
            continue
        yield {"id": str(obj.get("id", lineno)), "messages": [{"role": m["role"], "content": m["content"]} for m in obj["messages"]]}


def monolingual(chat: Mapping[str, Any], source: str, language: str) -> dict[str, Any]:
    instruction = {v: k for k, v in INSTRUCTION_CODES.items()}.get(language, language)
    return {
        "id": f"{source}:{chat['id']}",
        "messages": list(chat["messages"]),
        "meta": {
            "task": "general",
            "family": "general",
            "group": language_group(instruction, [language]),
            "instruction_language": instruction,
            "turn_tasks": ["general"],
            "src_lang": language,
            "tgt_lang": language,
            "source_ids": [f"{source}:{chat['id']}"],
        },
    }


def _ask_in(first_user: str, prompt_language: str, answer_language: str, rng: random.Random) -> str | None:
    """The first user turn with a request to answer in another language, in the user's own language."""
    instruction = {v: k for k, v in INSTRUCTION_CODES.items()}.get(prompt_language)
    if instruction is None:
        return None
    return pick(instruction, "answer_in", rng, prompt=first_user, answer_lang=language_name(answer_language, instruction))


def cross_from_aligned(
    prompt_chat: Mapping[str, Any], answer_chat: Mapping[str, Any], *, source: str,
    prompt_language: str, answer_language: str, rng: random.Random,
) -> dict[str, Any] | str:
    """User turns of one language version, assistant turns of another: a cross-lingual chat from aligned data.

    Returns the chat, or the reason it can't be built.
    """
    users = [m for m in prompt_chat["messages"] if m["role"] == "user"]
    answers = [m for m in answer_chat["messages"] if m["role"] == "assistant"]
    if len(users) != len(answers):
        return "aligned versions have different numbers of turns"
    first = _ask_in(users[0]["content"], prompt_language, answer_language, rng)
    if first is None:
        return f"no answer-in templates for prompts in {prompt_language}"
    messages = []
    for i, (u, a) in enumerate(zip(users, answers)):
        messages += [{"role": "user", "content": first if i == 0 else u["content"]}, {"role": "assistant", "content": a["content"]}]
    return _cross_chat(f"{source}:{prompt_chat['id']}", messages, prompt_language, answer_language, "aligned")


def teacher_translation_requests(chat: Mapping[str, Any], answer_language: str) -> list[tuple[tuple[str, str], ...]]:
    """One teacher request per assistant turn: translate that reply into `answer_language`."""
    name = get_language(answer_language).name
    return [
        (
            ("system", "You are a professional translator. Reply with the translation only."),
            ("user", f"Translate the following text into {name}, keeping its formatting.\n\n{m['content']}"),
        )
        for m in chat["messages"]
        if m["role"] == "assistant"
    ]


def cross_from_teacher(
    chat: Mapping[str, Any], translations: Sequence[str], *, source: str,
    prompt_language: str, answer_language: str, rng: random.Random,
) -> dict[str, Any] | str:
    users = [m for m in chat["messages"] if m["role"] == "user"]
    first = _ask_in(users[0]["content"], prompt_language, answer_language, rng)
    if first is None:
        return f"no answer-in templates for prompts in {prompt_language}"
    messages = []
    for i, (u, a) in enumerate(zip(users, translations)):
        messages += [{"role": "user", "content": first if i == 0 else u["content"]}, {"role": "assistant", "content": a}]
    return _cross_chat(f"{source}:{chat['id']}", messages, prompt_language, answer_language, "teacher")


def _cross_chat(base_id: str, messages: list[dict[str, str]], prompt_language: str, answer_language: str, how: str) -> dict[str, Any]:
    instruction = {v: k for k, v in INSTRUCTION_CODES.items()}[prompt_language]
    return {
        "id": f"{base_id}/cross-{answer_language}",
        "messages": messages,
        "meta": {
            "task": "general_cross",
            "family": "general",
            "group": language_group(instruction, [answer_language]),
            "instruction_language": instruction,
            "turn_tasks": [f"general_cross_{how}"],
            "src_lang": prompt_language,
            "tgt_lang": answer_language,
            "source_ids": [base_id],
        },
    }
