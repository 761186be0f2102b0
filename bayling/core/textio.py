"""Reading user text files line by line, as UTF-8 bytes, with the line numbers a user's editor shows.

A byte-order mark says how a file is encoded: UTF-8 (the mark is dropped), UTF-16 or UTF-32 (the text
is decoded and handed on as UTF-8, and the manifest says so). Without a mark the bytes are taken as
UTF-8 and a line that is not valid UTF-8 is quarantined by the caller. Lines end at "\\n", "\\r\\n" or a
lone "\\r", as editors count them, so a file with old Mac line endings is not read as one huge row.

Hand-written because Python's text mode either fails a whole file on one bad byte or replaces it
silently; here each line's bytes reach the caller, which can name the line that is wrong.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path

BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_LINE_END = re.compile(rb"\r\n|\r|\n")
_BLOCK = 1 << 20


def detect_encoding(path: Path) -> str:
    """"utf-8", or the encoding a byte-order mark names (utf-8-sig, utf-16-le/be, utf-32-le/be)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return next((name for mark, name in BOMS if head.startswith(mark)), "utf-8")


def _utf8_blocks(path: Path, encoding: str) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        if encoding != "utf-8":
            handle.read(len(next(mark for mark, name in BOMS if name == encoding)))
        if encoding in ("utf-8", "utf-8-sig"):  # bytes as they are: a bad line is reported by its caller
            while block := handle.read(_BLOCK):
                yield block
            return
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        offset = 0
        try:
            while block := handle.read(_BLOCK):
                yield decoder.decode(block).encode("utf-8")
                offset += len(block)
            yield decoder.decode(b"", final=True).encode("utf-8")
        except UnicodeDecodeError as exc:
            from bayling.core.errors import PipelineError

            raise PipelineError(f"{path}: not valid {encoding.upper()} at byte {offset + exc.start}, though its byte-order mark "
                                "says it is") from None


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Lines of a file as UTF-8 bytes (see the module docstring), 1-based, without their line ending."""
    pending = b""
    lineno = 0
    for block in _utf8_blocks(path, detect_encoding(path)):
        pending += block
        parts = _LINE_END.split(pending)
        # a "\r" at the end of a block may be the first half of "\r\n": keep it with the unfinished line
        pending = parts.pop()
        if pending == b"" and block.endswith(b"\r"):
            pending = parts.pop() + b"\r"
        for part in parts:
            lineno += 1
            yield lineno, part
    if pending.endswith(b"\r"):
        pending = pending[:-1]
    if pending:
        lineno += 1
        yield lineno, pending


def line_endings(path: Path) -> str:
    """Which line endings a file uses: "lf", "crlf", "cr", "mixed" or "none" (read from its first megabyte)."""
    with open(path, "rb") as handle:
        head = handle.read(_BLOCK)
    found = {"crlf" if m.group() == b"\r\n" else "cr" if m.group() == b"\r" else "lf" for m in _LINE_END.finditer(head)}
    return found.pop() if len(found) == 1 else ("none" if not found else "mixed")


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ALLOWED_CONTROLS = frozenset("\t\n\r")  # whitespace: normalisation turns it into spaces


def unsafe_character(text: str) -> str | None:
    """Why a segment must not become training data, or None: NUL bytes (what UTF-16 read as UTF-8 leaves),
    other C0 and C1 controls, ANSI terminal escapes, and bidi embeddings, overrides and isolates (which
    make text display in another order than it is stored)."""
    if "\x00" in text:
        return "NUL byte in text"
    if _ANSI.search(text):
        return "ANSI escape sequence in text"
    for ch in text:
        code = ord(ch)
        if (code < 0x20 or 0x7F <= code <= 0x9F) and ch not in _ALLOWED_CONTROLS:
            return f"control character U+{code:04X} in text"
        if ch in _BIDI_CONTROLS:
            return f"bidi control U+{code:04X} in text"
    return None
