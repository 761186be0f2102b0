"""General instruction data (BayLing 2): monolingual chats kept as they are, and carried across languages
into cross-lingual instructions through aligned versions of the same chat or through the teacher."""

from __future__ import annotations

import functools
import json
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bayling.config.synthesize import SynthesizeParams
from bayling.core.jsonl import RepeatedKeyError, loads_strict
from bayling.core.languages import get_language
from bayling.core.prompts import INSTRUCTION_CODES, language_name
from bayling.core.quarantine import Problem, Quarantined
from bayling.core.records import Conversation
from bayling.core.seeding import coin, row_rng
from bayling.core.textio import iter_lines, unsafe_character
from bayling.synthesize import quality
from bayling.synthesize.decontam import Decontaminator
from bayling.synthesize.followups import pick
from bayling.synthesize.mix import REPEAT_MARK, language_group
from bayling.synthesize.teacher import ask_teacher, verify_reply

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
        elif reason := unsafe_character(message["content"]):
            problems.append(Problem(f"messages[{i}].content", reason))
    if not problems:
        expected = ["user", "assistant"] * (len(turns) // 2 + 1)
        if [m["role"] for m in turns] != expected[: len(turns)] or turns[-1]["role"] != "assistant":
            problems.append(Problem("messages", "turns must alternate user/assistant and end with the assistant"))
    return problems


def read_general(path: str, source: str, lines: Iterator[tuple[int, bytes]]) -> Iterator[dict[str, Any] | Quarantined]:
    """Chats from a JSONL file in `messages` format ({"id"?, "messages": [...]}); bad lines are quarantined.

    A chat's id is its `id`, else its line number. An id may not contain the mix's repeat mark: the mix
    names a chat's second copy `{id}#2`, which a chat of its own called `{id}#2` would share."""
    for lineno, raw in lines:
        try:
            obj = loads_strict(raw.decode("utf-8"))
        except RepeatedKeyError as exc:
            yield Quarantined(source, path, lineno, (Problem(None, str(exc)),), raw[:300].decode("utf-8", "replace"))
            continue
        except UnicodeDecodeError as exc:
            yield Quarantined(source, path, lineno, (Problem(None, f"invalid UTF-8 at byte {exc.start}"),), "")
            continue
        except json.JSONDecodeError as exc:
            yield Quarantined(source, path, lineno, (Problem(None, f"invalid JSON: {exc.msg}"),), raw[:300].decode("utf-8", "replace"))
            continue
        problems = [Problem(None, "row must be a JSON object")] if not isinstance(obj, dict) else validate_messages(obj.get("messages"))
        chat_id = str(obj.get("id", lineno)) if isinstance(obj, dict) else ""
        if not problems and REPEAT_MARK in chat_id:
            problems = [Problem("id", f"'{REPEAT_MARK}' is reserved for the mix's repeats (id#2, id#3, ...)")]
        if problems:
            yield Quarantined(source, path, lineno, tuple(problems), raw[:300].decode("utf-8", "replace"))
            continue
        yield {"id": chat_id, "line": lineno, "messages": [{"role": m["role"], "content": m["content"]} for m in obj["messages"]]}


def monolingual(chat: Mapping[str, Any], source: str, language: str) -> Conversation:
    instruction = {v: k for k, v in INSTRUCTION_CODES.items()}.get(language, language)
    return Conversation(
        id=f"{source}:{chat['id']}", messages=list(chat["messages"]), task="general", family="general",
        group=language_group(instruction, [language]), instruction_language=instruction, src_lang=language,
        tgt_lang=language, turn_tasks=["general"], source_ids=[f"{source}:{chat['id']}"],
    )


def _ask_in(first_user: str, prompt_language: str, answer_language: str, rng: random.Random) -> str | None:
    """The first user turn with a request to answer in another language, in the user's own language."""
    instruction = {v: k for k, v in INSTRUCTION_CODES.items()}.get(prompt_language)
    if instruction is None:
        return None
    return pick(instruction, "answer_in", rng, prompt=first_user, answer_lang=language_name(answer_language, instruction))


def cross_from_aligned(
    prompt_chat: Mapping[str, Any], answer_chat: Mapping[str, Any], *, source: str,
    prompt_language: str, answer_language: str, rng: random.Random,
) -> Conversation | str:
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
) -> Conversation | str:
    users = [m for m in chat["messages"] if m["role"] == "user"]
    first = _ask_in(users[0]["content"], prompt_language, answer_language, rng)
    if first is None:
        return f"no answer-in templates for prompts in {prompt_language}"
    messages = []
    for i, (u, a) in enumerate(zip(users, translations)):
        messages += [{"role": "user", "content": first if i == 0 else u["content"]}, {"role": "assistant", "content": a}]
    return _cross_chat(f"{source}:{chat['id']}", messages, prompt_language, answer_language, "teacher")


def _cross_chat(base_id: str, messages: list[dict[str, str]], prompt_language: str, answer_language: str, how: str) -> Conversation:
    instruction = {v: k for k, v in INSTRUCTION_CODES.items()}[prompt_language]
    return Conversation(
        id=f"{base_id}/cross-{answer_language}", messages=messages, task="general_cross", family="general",
        group=language_group(instruction, [answer_language]), instruction_language=instruction,
        src_lang=prompt_language, tgt_lang=answer_language, turn_tasks=[f"general_cross_{how}"], source_ids=[base_id],
    )


@dataclass(frozen=True)
class ChatFit:
    """General chats measured as the base model's chat template renders them, against tokenize.max_seq_len.

    Tokenize drops a chat whose first exchange does not fit and cuts one after its last exchange that does; a
    human-written general chat is often longer than a short context (the shipped oasst1 sample: median 680
    tokens), so without this the data card and the mix would count chats that never reach training. Measured
    with the model's own template (a different tokenize.template changes a chat's length by a few tokens per
    turn; tokenize still has the last word).
    """

    tokenizer: Any
    max_tokens: int

    def supervised_tokens(self, conversations: list[list[dict[str, str]]]) -> list[int]:
        """Per conversation, the labels tokenize will give it: its replies' tokens plus one end-of-turn token each
        (replies without their leading whitespace, as tokenize strips it), counting only the exchanges that fit
        max_tokens (tokenize cuts a longer one at a turn boundary; none fit: 0). Only a conversation whose
        message tokens plus the template's overhead come near the limit is rendered to find its cut."""
        texts = [(i, m) for i, messages in enumerate(conversations) for m in messages]
        if not texts:  # an empty shard (no general sources): the tokenizer refuses an empty batch
            return [0] * len(conversations)
        encoded = self.tokenizer([m["content"].lstrip() if m["role"] == "assistant" else m["content"] for _, m in texts],
                                 add_special_tokens=False)["input_ids"]
        counts, lengths = [0] * len(conversations), [self._overhead[0]] * len(conversations)
        for (i, message), ids in zip(texts, encoded):
            counts[i] += len(ids) + 1 if message["role"] == "assistant" else 0
            lengths[i] += len(ids) + self._overhead[1]
        for i, length in enumerate(lengths):
            if length > self.max_tokens - 16:
                fitted, _ = self.fit(conversations[i])
                counts[i] = self.supervised_tokens_exact(fitted) if fitted else 0
        return counts

    def supervised_tokens_exact(self, messages: list[dict[str, str]]) -> int:
        replies = [m["content"].lstrip() for m in messages if m["role"] == "assistant"]
        return sum(len(ids) + 1 for ids in self.tokenizer(replies, add_special_tokens=False)["input_ids"]) if replies else 0

    @functools.cached_property
    def _overhead(self) -> tuple[int, int]:
        """(tokens the template adds once, tokens it adds per message), measured on two short chats."""
        def rendered(pairs: int) -> int:
            chat = [{"role": role, "content": "ok"} for _ in range(pairs) for role in ("user", "assistant")]
            return len(self.tokenizer(self.tokenizer.apply_chat_template(chat, tokenize=False), add_special_tokens=False)["input_ids"])

        content = len(self.tokenizer("ok", add_special_tokens=False)["input_ids"])
        one, two = rendered(1), rendered(2)
        per_message = (two - one) // 2 - content
        return max(0, one - 2 * (content + per_message)), max(0, per_message)

    def fit(self, messages: list[dict[str, str]]) -> tuple[list[dict[str, str]] | None, int]:
        """The chat whole, or cut after its last exchange that fits, or None; and the whole chat's length."""
        ends = [i + 1 for i, m in enumerate(messages) if m["role"] == "assistant"]
        texts = [self.tokenizer.apply_chat_template(messages[:end], tokenize=False) for end in reversed(ends)]
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        for end, length in zip(reversed(ends), lengths):
            if length <= self.max_tokens:
                return messages[:end], lengths[0]
        return None, lengths[0]


@dataclass
class GeneralResult:
    train: list[Conversation]
    heldout: list[Conversation]
    quarantined: list[Quarantined]
    stats: Counter
    teacher: dict[str, int]


def _heldout_by_hash(seed: int, key: str, fraction: float) -> bool:
    return coin(seed, fraction, "general", key)


def build_general(params: SynthesizeParams, root: Path, decontaminator: Decontaminator | None,
                  fit: ChatFit | None = None) -> GeneralResult:
    """Monolingual chats, cross-lingual chats from aligned versions, and teacher-carried ones.

    Chats are versions of one another only inside a parallel group (`parallel_group` on their sources)
    and under the same id: two unrelated files whose ids (or line numbers) coincide are never paired.
    An id repeated within one source is quarantined: which of the two a version belongs to is unknowable.
    With `fit`, every chat built is cut to the context tokenize will give it, or set aside (quarantined,
    with its length) when not even its first exchange fits.
    """
    result = GeneralResult([], [], [], Counter(), {})

    def place(split: list[Conversation], chat: Conversation, source: str, path: str, line: int) -> bool:
        if fit is not None:
            messages, length = fit.fit(list(chat.messages))
            if messages is None:
                problem = Problem(None, f"{length} tokens as the chat template renders it: not even the first exchange fits "
                                        f"tokenize.max_seq_len={fit.max_tokens}")
                result.quarantined.append(Quarantined(source, path, line, (problem,), chat.messages[0]["content"][:300]))
                result.stats["set aside: longer than tokenize.max_seq_len"] += 1
                return False
            if len(messages) < len(chat.messages):
                result.stats["cut to tokenize.max_seq_len"] += 1
                chat = replace(chat, messages=messages, turn_tasks=list(chat.turn_tasks)[: sum(m["role"] == "assistant" for m in messages)])
        split.append(chat)
        return True

    # (("group", name) or ("source", name), chat id) -> language -> chat: the versions of one chat
    by_id: dict[tuple[tuple[str, str], str], dict[str, dict[str, Any]]] = {}
    seen: set[bytes] = set()
    for source in params.general.sources:
        path = root / source.path
        family = ("group", source.parallel_group) if source.parallel_group else ("source", source.name)
        first_line: dict[str, int] = {}
        for record in read_general(source.path, source.name, iter_lines(path)):
            result.stats["chats_in"] += 1
            if isinstance(record, Quarantined):
                result.quarantined.append(record)
                result.stats["quarantined: malformed"] += 1
                continue
            if record["id"] in first_line:
                problem = Problem("id", f"duplicate id '{record['id']}' (first at line {first_line[record['id']]})")
                result.quarantined.append(Quarantined(source.name, source.path, record["line"], (problem,),
                                                      record["messages"][0]["content"][:300]))
                result.stats["quarantined: duplicate id"] += 1
                continue
            first_line[record["id"]] = record["line"]
            texts = [m["content"] for m in record["messages"]]
            hit = next((h for h in (decontaminator.match(t) for t in texts) if h), None) if decontaminator else None
            if hit:
                result.stats[f"decontaminated: {hit[0]}"] += 1
                problem = Problem(None, f"overlaps evaluation set {hit[0]} ({hit[1]})")
                result.quarantined.append(Quarantined(source.name, source.path, 0, (problem,), texts[0][:300]))
                continue
            key = quality.digest(source.language + "\x00" + "\x00".join(quality.normalized_key(t) for t in texts))
            if params.filters.dedupe != "off" and key in seen:
                result.stats["quarantined: duplicate"] += 1
                result.quarantined.append(Quarantined(source.name, source.path, 0, (Problem(None, "duplicate chat"),), texts[0][:300]))
                continue
            seen.add(key)
            chat = {**record, "language": source.language, "source": source.name}
            by_id.setdefault((family, record["id"]), {})[source.language] = chat  # one source per language in a group
            split = result.heldout if _heldout_by_hash(params.seed, record["id"], params.heldout_fraction) else result.train
            if place(split, monolingual(record, source.name, source.language), source.name, source.path, record["line"]):
                result.stats["chats_kept"] += 1
    for (_, chat_id), versions in sorted(by_id.items()):
        split = result.heldout if _heldout_by_hash(params.seed, chat_id, params.heldout_fraction) else result.train
        for a in sorted(versions):
            for b in sorted(versions):
                if a == b:
                    continue
                rng = row_rng(params.seed, chat_id, f"aligned:{a}-{b}")
                built = cross_from_aligned(
                    versions[a], versions[b], source=versions[a]["source"], prompt_language=a, answer_language=b, rng=rng
                )
                if isinstance(built, str):
                    result.stats[f"aligned skipped: {built}"] += 1
                elif place(split, built, versions[a]["source"], "aligned", versions[a]["line"]):
                    result.stats["aligned cross-lingual chats"] += 1
    targets = list(params.general.cross_lingual_targets)
    if targets and params.teacher.enabled:
        jobs = []
        for (_, chat_id), versions in sorted(by_id.items()):
            for a, chat in sorted(versions.items()):
                for b in targets:
                    if b != a and b not in versions:
                        jobs.append((chat_id, a, b, chat, teacher_translation_requests(chat, b)))
        replies, result.teacher = ask_teacher(params.teacher, [request for job in jobs for request in job[4]], root)
        position = 0
        for chat_id, a, b, chat, requests in jobs:
            answers = replies[position : position + len(requests)]
            position += len(requests)
            bad = next((problem for problem in (verify_reply(r, {"script": b}) for r in answers) if problem), None)
            if bad:
                result.stats[f"teacher cross-lingual rejected: {bad}"] += 1
                continue
            rng = row_rng(params.seed, chat_id, f"teacher:{a}-{b}")
            built = cross_from_teacher(
                chat, [(r or "").strip() for r in answers], source=chat["source"], prompt_language=a, answer_language=b, rng=rng
            )
            if isinstance(built, str):
                result.stats[f"teacher cross-lingual skipped: {built}"] += 1
                continue
            split = result.heldout if _heldout_by_hash(params.seed, chat_id, params.heldout_fraction) else result.train
            if place(split, built, chat["source"], "teacher", chat["line"]):
                result.stats["teacher cross-lingual chats"] += 1
    return result
