"""Rebuild the embedded general-instruction sample (en.jsonl, zh.jsonl; provenance and licences: README.md here).

    python data/sample/general/make_sample.py --dolly dolly-00000.docx --oasst-zh oaast_sft_zh.json

Sources (the two input files are read from the paths given; nothing is downloaded):

* English, --dolly: databricks-dolly-15k (Databricks, Inc., CC BY-SA 3.0), the file
  data/databricks-dolly-15k.jsonl of databrickslabs/dolly @ d000e3030970379aabbf6d291f50ffdd3b715b64
  (git blob 3ddff957c680428a39173c4b03fac9938805ac58). That blob is over the size the mirrors here keep,
  so the copy read is the DOCX rendering of the very same blob made by Sampo Pyysalo for a Finnish
  translation: spyysalo/databricks-dolly-translation @ 2ee771db87ba66de909ee0506a18d9e6ffb720e9, path
  dolly-doc-in/dolly-00000.docx (records 0-1129; the repository's original-data/databricks-dolly-15k.jsonl
  is that same blob 3ddff957). Each record there is a bold "Document N" paragraph (N = 0-based line of the
  JSONL file) and bold "Instruction" / "Context" / "Response" headings, each followed by one paragraph of
  text whose line breaks are <w:br/> and tabs <w:tab/>. The official JSONL file itself is accepted too
  (a path ending in .jsonl): then N is its 0-based line number.
* Chinese, --oasst-zh: OpenAssistant Conversations (oasst1, Apache-2.0), Chinese part, as exported to
  prompt/response rows by LLaMA-Efficient-Tuning (now LLaMA-Factory): hiyouga/LLaMA-Factory @
  4898a0a865b7bab1a42cb7d307b8ea7d995b15e1, path data/oaast_sft_zh.json (SHA-1 a6a91f18f80f37b10ded9cf633fb50c033bf7b9f,
  as that commit's data/dataset_info.json records). Each row is one path through an oasst1 conversation
  tree: {"instruction", "input", "output", "history": [[user, assistant], ...]}.

Selection (deterministic, no randomness):

* Every text is stripped of leading and trailing whitespace; a chat is skipped if any turn is then empty,
  if it has more than MAX_CHARS characters over all turns, or if it holds a character the pipeline's
  reader refuses (C0/C1 controls other than tab and newlines, ANSI escapes, bidi controls).
* English: dolly records in file order; user turn "{instruction}\\n\\n{context}" (just the instruction when
  the context is empty); a record whose user turn repeats an earlier chosen one is skipped; the first ROWS
  records that pass.
* Chinese: one chat per conversation tree, a tree being the rows that share their first user turn; in the
  order the trees first appear, the first row of the tree that passes and whose text is mostly Han
  (Han ideographs at least MIN_HAN_SHARE of all letters); the first ROWS trees that yield one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import unicodedata
import zipfile
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

ROWS = 300
MAX_CHARS = 2000
MIN_HAN_SHARE = 0.5
OUT = Path(__file__).resolve().parent

# SHA-256 of the inputs this sample was made from (a different input is used, with a warning).
KNOWN_INPUTS = {
    "2bc2e51ec2993787fa6b471e166d84e5fa07864ce2e1fc3a3afc51c3b8168874": "dolly-doc-in/dolly-00000.docx @ 2ee771db",
    "44c6689eb9ee9a1bd68493f4590f9819112fd960e6de8235b8ae171862990c23": "data/oaast_sft_zh.json @ 4898a0a8",
}

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
HEADINGS = {"Instruction": "instruction", "Context": "context", "Response": "response"}
DOCUMENT = re.compile(r"Document (\d+)")
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_input(path: Path) -> None:
    digest = sha256(path)
    if digest not in KNOWN_INPUTS:
        print(f"warning: {path} (sha256 {digest}) is not the input this sample was made from", file=sys.stderr)


# ---------------------------------------------------------------- dolly


def _paragraph(p: ElementTree.Element) -> tuple[str, bool]:
    """The text of a DOCX paragraph and whether all of its runs are bold (an empty paragraph is not)."""
    parts, bold = [], []
    for run in p.iter(f"{W}r"):
        props = run.find(f"{W}rPr")
        b = props.find(f"{W}b") if props is not None else None
        bold.append(b is not None and b.get(f"{W}val", "true") not in ("0", "false"))
        for child in run:
            if child.tag == f"{W}t":
                parts.append(child.text or "")
            elif child.tag == f"{W}tab":
                parts.append("\t")
            elif child.tag in (f"{W}br", f"{W}cr"):
                parts.append("\n")
    return "".join(parts), bool(bold) and all(bold)


def dolly_from_docx(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with zipfile.ZipFile(path) as archive:
        body = ElementTree.fromstring(archive.read("word/document.xml")).find(f"{W}body")
    index, record, field = None, {}, None
    for p in body.findall(f"{W}p"):
        text, bold = _paragraph(p)
        if bold and (m := DOCUMENT.fullmatch(text)):
            if index is not None:
                yield index, record
            index, record, field = int(m.group(1)), {}, None
        elif bold and text in HEADINGS:
            field = HEADINGS[text]
        elif field is None or field in record:
            raise ValueError(f"{path}: unexpected paragraph in document {index}: {text[:80]!r}")
        else:
            record[field] = text
    if index is not None:
        yield index, record


def dolly_from_jsonl(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(encoding="utf-8") as f:
        for index, line in enumerate(f):
            yield index, json.loads(line)


def dolly_chats(path: Path) -> Iterator[dict]:
    records = dolly_from_jsonl(path) if path.suffix == ".jsonl" else dolly_from_docx(path)
    for index, record in records:
        instruction, context = record.get("instruction", "").strip(), record.get("context", "").strip()
        prompt = f"{instruction}\n\n{context}" if context else instruction
        yield {"id": f"dolly-{index}", "messages": [{"role": "user", "content": prompt},
                                                    {"role": "assistant", "content": record.get("response", "").strip()}]}


# ---------------------------------------------------------------- oasst1 zh


def oasst_zh_chats(path: Path) -> Iterator[dict]:
    for index, row in enumerate(json.loads(path.read_text("utf-8"))):
        turns = [text for pair in row.get("history") or [] for text in pair]
        query = row["instruction"].strip()
        if (row.get("input") or "").strip():
            query = f"{query}\n\n{row['input'].strip()}"
        turns += [query, row["output"]]
        roles = ["user", "assistant"] * (len(turns) // 2)
        yield {"id": f"oasst1-zh-{index}", "messages": [{"role": r, "content": t.strip()} for r, t in zip(roles, turns)]}


# ---------------------------------------------------------------- filters


def unsafe(text: str) -> bool:
    return bool(ANSI.search(text)) or any(
        ((ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F) and ch not in "\t\n\r") or ch in BIDI for ch in text)


def han_share(text: str) -> float:
    letters = [ch for ch in text if unicodedata.category(ch).startswith("L")]
    han = sum(1 for ch in letters if unicodedata.name(ch, "").startswith(("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH")))
    return han / len(letters) if letters else 0.0


def passes(chat: dict) -> bool:
    texts = [m["content"] for m in chat["messages"]]
    return all(texts) and sum(map(len, texts)) <= MAX_CHARS and not any(unsafe(t) for t in texts)


def select_english(chats: Iterator[dict], rows: int) -> list[dict]:
    chosen, prompts = [], set()
    for chat in chats:
        prompt = " ".join(chat["messages"][0]["content"].split())
        if passes(chat) and prompt not in prompts:
            chosen.append(chat)
            prompts.add(prompt)
            if len(chosen) == rows:
                break
    return chosen


def select_chinese(chats: Iterator[dict], rows: int) -> list[dict]:
    trees: dict[str, dict | None] = {}  # first user turn -> chosen chat (None while none passes), in order of appearance
    for chat in chats:
        root = chat["messages"][0]["content"]
        if trees.get(root) is None:
            ok = passes(chat) and han_share("".join(m["content"] for m in chat["messages"])) >= MIN_HAN_SHARE
            trees[root] = chat if ok else None
    return [chat for chat in trees.values() if chat is not None][:rows]


def write(path: Path, chats: list[dict]) -> None:
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in chats), "utf-8")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dolly", type=Path, required=True, help="dolly-doc-in/dolly-00000.docx, or databricks-dolly-15k.jsonl")
    ap.add_argument("--oasst-zh", type=Path, required=True, help="LLaMA-Factory data/oaast_sft_zh.json @ 4898a0a8")
    ap.add_argument("--rows", type=int, default=ROWS)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    for path in (args.dolly, args.oasst_zh):
        check_input(path)
    english = select_english(dolly_chats(args.dolly), args.rows)
    chinese = select_chinese(oasst_zh_chats(args.oasst_zh), args.rows)
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out / "en.jsonl", english)
    write(args.out / "zh.jsonl", chinese)
    for name, chats in (("en.jsonl", english), ("zh.jsonl", chinese)):
        turns = sum(len(c["messages"]) for c in chats)
        print(f"{name}: {len(chats)} chats, {turns} messages, last source row {chats[-1]['id'] if chats else '-'}")


if __name__ == "__main__":
    main()
