"""One reader for every input: files, directories, stdin, API payloads, the config file.

Whatever the path, a text reaches the YAML parser only if it is at most
MAX_BYTES of UTF-8 without raw control characters; otherwise one Problem says
why, naming the file, the byte offset and the line:

    site.yaml: is not UTF-8: byte 0xe9 at offset 112 (line 6) ...; save it as UTF-8
    site.yaml: control character U+001B at column 9 (byte offset 61) ... (line 4)

YAML itself would refuse the same characters, but with an exception raised
before any document is read; checking first keeps every error a Problem.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runner.model.errors import Problem

MAX_BYTES = 1 << 20  # per file, stdin or API document
STDIN = "-"  # the path that means standard input
STDIN_NAME = "<stdin>"  # how problems name it
NO_NAME = "<input>"  # a text that came without a name (an API call without source)
SUFFIXES = (".yaml", ".yml")

# What YAML 1.1 allows in a stream (PyYAML's Reader.NON_PRINTABLE, inverted): tab,
# newlines, printable ASCII, NEL and the printable rest of Unicode; not C0/C1
# controls, DEL, surrogates, U+FFFE or U+FFFF.
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"),
)
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Text:
    """A checked input text and the name problems give it."""

    source: str
    text: str


def read_paths(paths: Sequence[str], stdin: BinaryIO | None = None
               ) -> tuple[list[Text], list[Problem]]:
    """The texts of files and directories (a directory: its *.yaml and *.yml, sorted);
    "-" reads `stdin` (default: the process's) once."""
    texts: list[Text] = []
    problems: list[Problem] = []
    stdin_read = False
    for name in paths:
        if name == STDIN:
            if stdin_read:
                problems.append(Problem(STDIN_NAME, None, "", "is given more than once"))
                continue
            stdin_read = True
            stream = stdin if stdin is not None else sys.stdin.buffer
            _add(_read_stream(stream, STDIN_NAME), texts, problems)
            continue
        for file in _expand(name, problems):
            _add(read_file(file), texts, problems)
    return texts, problems


def read_file(name: str) -> Text | Problem:
    try:
        with open(name, "rb") as f:
            return _read_stream(f, name)
    except OSError as e:
        return Problem(name, None, "", f"cannot be read: {e.strerror or e}")


def check_text(text: str, source: str | None) -> Text | Problem:
    """A text from an API payload or a caller: the same limits as a file's bytes."""
    name = source or NO_NAME
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        return Problem(name, None, "", f"is larger than {MAX_BYTES} bytes ({size} bytes)")
    return _printable(text, name)


def decode(data: bytes, source: str) -> Text | Problem:
    """UTF-8 bytes (an optional UTF-8 byte order mark is dropped) -> a checked text."""
    if len(data) > MAX_BYTES:
        return Problem(source, None, "", f"is larger than {MAX_BYTES} bytes")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return Problem(source, None, "", f"is {encoding} (it starts with a byte order "
                                             f"mark): save it as UTF-8")
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
    wide = _looks_utf16(data)
    if wide is not None:
        return Problem(source, None, "", f"looks like UTF-16 without a byte order mark (a NUL "
                                         f"byte at every other offset from {wide}): save it "
                                         f"as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return Problem(source, None, "", f"is not UTF-8: byte 0x{data[e.start]:02x} at offset "
                                         f"{e.start} cannot be decoded ({e.reason}); save it "
                                         f"as UTF-8", line)
    return _printable(text, source)


def _printable(text: str, source: str) -> Text | Problem:
    m = _NOT_PRINTABLE.search(text)
    if m is None:
        return Text(source, text)
    at = m.start()
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    offset = len(text[:at].encode("utf-8", "surrogatepass"))
    more = len(_NOT_PRINTABLE.findall(text)) - 1
    tail = f" ({more} more after it)" if more else ""
    return Problem(source, None, "", f"control character U+{ord(m.group()):04X} at column "
                                     f"{column} (byte offset {offset}) is not "
                                     f"allowed in YAML{tail}; remove it, or write it as an "
                                     f"escape inside double quotes", line)


def _looks_utf16(data: bytes) -> int | None:
    """1 or 0 when the first bytes have NULs at every odd (even) offset, as UTF-16 of
    mostly ASCII text has; else None. Plain UTF-8 text never does."""
    head = data[:64]
    if len(head) < 4:
        return None
    for start in (1, 0):
        if all(b == 0 for b in head[start::2]) and any(head[1 - start::2]):
            return start
    return None


def _read_stream(stream: BinaryIO, source: str) -> Text | Problem:
    data = stream.read(MAX_BYTES + 1)
    return decode(data, source)


def _expand(name: str, problems: list[Problem]) -> list[str]:
    path = Path(name)
    try:
        if path.is_dir():
            return sorted(str(p) for p in path.iterdir()
                          if p.suffix in SUFFIXES and p.is_file())
        if path.exists():
            return [name]
    except OSError as e:
        problems.append(Problem(name, None, "", f"cannot be read: {e.strerror or e}"))
        return []
    problems.append(Problem(name, None, "", "cannot be read: no such file or directory"))
    return []


def _add(found: Text | Problem, texts: list[Text], problems: list[Problem]) -> None:
    if isinstance(found, Text):
        texts.append(found)
    else:
        problems.append(found)
