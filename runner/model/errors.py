"""Problems found in manifests and config files, and the YAML reading that locates them.

Values are read from the composed YAML node tree, so every field path
("spec.dhcp.range.start", "spec.portMaps[1].target") keeps the 1-based line of
its node. Checks record problems instead of raising; one error carries them all:

    site.yaml: factory: spec.dhcp.range.start 10.2.0.5 is outside spec.subnet 10.1.0.0/24 (line 14)
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import AddressValueError, IPv4Address

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from runner.errors import NirunnerError

MAX_DEPTH = 32  # deeper than any manifest; also stops recursive aliases
MAX_VALUES = 20_000  # stops alias bombs ("billion laughs")
_SAFE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_MAP_TAGS = {"tag:yaml.org,2002:map"}
_SEQ_TAGS = {"tag:yaml.org,2002:seq"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input; `message` reads as the continuation of `path`."""

    source: str | None  # the file, when known
    ni: str | None  # the NI's name, when known and valid
    path: str  # "spec.dhcp.range.start"; "" for the whole document or file
    message: str  # "10.2.0.5 is outside spec.subnet 10.1.0.0/24"
    line: int | None = None  # 1-based

    def __str__(self) -> str:
        head = "".join(f"{part}: " for part in (self.source, self.ni) if part)
        text = f"{self.path} {self.message}" if self.path else self.message
        return head + text + (f" (line {self.line})" if self.line else "")


class ModelError(NirunnerError):
    """Input that does not validate; str() lists every problem, one per line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ManifestError(ModelError):
    """One or more NI manifests are invalid."""


class ConfigError(ModelError):
    """The supervisor's config file is invalid."""


def show(value: object, limit: int = 60) -> str:
    """A value quoted for a message: repr, so newlines and quotes cannot forge output."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def describe(value: object) -> str:
    """'a string', 'an integer (123)', 'a boolean (True)' ... for type errors."""
    match value:
        case None:
            return "null"
        case bool():
            return f"a boolean ({value})"
        case int():
            return f"an integer ({value})"
        case float():
            return f"a number ({value})"
        case str():
            return f"a string ({show(value)})"
        case list():
            return "a list"
        case dict():
            return "a mapping"
        case _:
            return f"a {type(value).__name__} ({show(str(value))})"


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def line_of(lines: Mapping[str, int], path: str) -> int | None:
    """The line of `path`, or of its nearest ancestor that has one."""
    while path not in lines:
        if not path:
            return None
        path = parent(path)
    return lines[path]


def did_you_mean(word: str, choices: Collection[str]) -> str:
    """' (did you mean 'subnet'?)' for a close match, case-insensitively, or ''."""
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


# --- reading YAML --------------------------------------------------------------------------


@dataclass
class Document:
    """One YAML document as plain values, with the line of every field path."""

    value: object
    lines: dict[str, int] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)  # text of plain scalars, by path
    found: list[tuple[str, str, int | None]] = field(default_factory=list)  # path, msg, line


class _Unreadable(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class _Builder:
    """Turns a node tree into plain values, recording lines and structural problems."""

    def __init__(self, loader: yaml.SafeLoader, root: Node) -> None:
        self.loader = loader
        self.doc = Document(value=None, lines={"": _line(root)})
        self.count = 0
        self.doc.value = self.value(root, "", 0)

    def value(self, node: Node, path: str, depth: int) -> object:
        self.count += 1
        if depth > MAX_DEPTH:
            raise _Unreadable("is nested too deeply (or has a recursive alias)", _line(node))
        if self.count > MAX_VALUES:
            raise _Unreadable(f"has more than {MAX_VALUES} values (alias bomb?)", _line(node))
        if isinstance(node, MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            self.require_tag(node, _SEQ_TAGS)
            return [self.item(n, path, i, depth) for i, n in enumerate(node.value)]
        return self.scalar(node, path)

    def item(self, node: Node, path: str, index: int, depth: int) -> object:
        here = join(path, index)
        self.doc.lines[here] = _line(node)
        return self.value(node, here, depth + 1)

    def mapping(self, node: MappingNode, path: str, depth: int) -> dict[str, object]:
        self.require_tag(node, _MAP_TAGS)
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node, path)
            if key is None:
                continue
            here = join(path, key)
            if key in out:
                self.doc.found.append((here, "is given twice", _line(key_node)))
                continue
            self.doc.lines[here] = _line(key_node)
            out[key] = self.value(value_node, here, depth + 1)
        return out

    def key(self, node: Node, path: str) -> str | None:
        key = self.scalar(node, "") if isinstance(node, ScalarNode) else None
        if isinstance(key, str) and _SAFE_KEY.fullmatch(key):
            return key
        what = show(key) if isinstance(node, ScalarNode) else "a list or mapping"
        message = f"has a field named {what}, which is not a field name"
        self.doc.found.append((path, message, _line(node)))
        return None

    def scalar(self, node: Node, path: str) -> object:
        if node.tag == "tag:yaml.org,2002:merge":
            raise _Unreadable("uses a merge key (<<), which is not supported", _line(node))
        try:
            value = self.loader.construct_object(node)
        except yaml.YAMLError:
            raise _Unreadable(f"uses an unsupported tag {show(node.tag)}", _line(node)) from None
        if path and isinstance(node, ScalarNode) and node.style is None:
            self.doc.raw[path] = str(node.value)
        return value

    def require_tag(self, node: Node, tags: set[str]) -> None:
        if node.tag not in tags:
            raise _Unreadable(f"uses an unsupported tag {show(node.tag)}", _line(node))


def _is_empty(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _yaml_problem(err: yaml.YAMLError, text: str) -> tuple[str, int | None]:
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        return f"invalid YAML: {err.problem}", int(err.problem_mark.line) + 1
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, err.position) + 1
        return f"invalid YAML: character {err.character!r} is not allowed", line
    return f"invalid YAML: {err}", None


def read_documents(text: str) -> tuple[list[Document], list[tuple[str, int | None]]]:
    """Every non-empty document of `text`, and the problems that stopped reading some.

    A document that cannot be read (syntax error, unsupported tag, alias bomb) is
    is reported as (message, line), the message a whole sentence.
    """
    docs: list[Document] = []
    fatal: list[tuple[str, int | None]] = []
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            root = loader.get_node()
            if root is None or _is_empty(root):
                continue
            try:
                docs.append(_Builder(loader, root).doc)
            except _Unreadable as e:
                fatal.append((f"document {e.message}", e.line))
    except yaml.YAMLError as e:
        fatal.append(_yaml_problem(e, text))
    except RecursionError:
        fatal.append(("invalid YAML: nested too deeply", None))
    finally:
        loader.dispose()
    return docs, fatal


# --- checking values -----------------------------------------------------------------------


class Checker:
    """Typed reads of one document's values; every failure becomes a located problem.

    Getters return None both for an absent (or null) value and for a bad one (after
    recording it), so callers apply defaults only when a field is absent.
    """

    def __init__(self, source: str | None, doc: Document | None = None) -> None:
        self.source = source
        self.ni: str | None = None
        self.root: object = doc.value if doc else None
        self.lines = doc.lines if doc else {}
        self.raw = doc.raw if doc else {}
        self._found: list[tuple[str, str, int | None]] = list(doc.found) if doc else []

    @property
    def ok(self) -> bool:
        return not self._found

    def line(self, path: str) -> int | None:
        return line_of(self.lines, path)

    def error(self, path: str, message: str) -> None:
        self._found.append((path, message, self.line(path)))

    def problems(self) -> list[Problem]:
        found = sorted(self._found, key=lambda f: (f[2] is None, f[2] or 0))
        return [Problem(self.source, self.ni, path, msg, line) for path, msg, line in found]

    def mapping(
        self,
        value: object,
        path: str,
        fields: Collection[str],
        required: Collection[str] = (),
    ) -> dict[str, object] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            subject = "must" if path else "the document must"
            self.error(path, f"{subject} be a mapping, not {describe(value)}")
            return None
        for key in value:
            if key not in fields:
                hint = did_you_mean(key, fields)
                self.error(join(path, key), f"is not a known field{hint}")
        for key in required:
            if value.get(key) is None:
                self.error(join(path, key), "is required")
        return value

    def items(self, value: object, path: str) -> list[tuple[str, object]]:
        """[(path[i], item), ...] of a list; [] when absent or not a list."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"must be a list, not {describe(value)}")
            return []
        return [(join(path, i), v) for i, v in enumerate(value)]

    def string(self, value: object, path: str) -> str | None:
        if value is None or isinstance(value, str):
            return value
        self.error(path, f"must be a string, not {describe(value)}")
        return None

    def matching(self, value: object, path: str, pattern: re.Pattern[str], rule: str,
                 max_len: int = 253) -> str | None:
        """A string that matches `pattern` in full; `rule` says what is allowed."""
        text = self.string(value, path)
        if text is None:
            return None
        if len(text) > max_len or not pattern.fullmatch(text):
            self.error(path, f"{show(text)} is not valid: {rule}")
            return None
        return text

    def integer(self, value: object, path: str, low: int, high: int) -> int | None:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.error(path, f"must be an integer, not {describe(value)}")
            return None
        if not low <= value <= high:
            self.error(path, f"{value} is out of range {low}..{high}")
            return None
        return value

    def number(self, value: object, path: str) -> float | None:
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.error(path, f"must be a number, not {describe(value)}")
            return None
        if not math.isfinite(value):
            self.error(path, f"{value} is not a finite number")
            return None
        return float(value)

    def ipv4(self, value: object, path: str) -> IPv4Address | None:
        text = self.string(value, path)
        if text is None:
            return None
        try:
            if not _IPV4.fullmatch(text):
                raise AddressValueError(text)
            return IPv4Address(text)
        except AddressValueError:
            self.error(path, f"{show(text)} is not an IPv4 address")
            return None

    def unicast(self, value: object, path: str) -> IPv4Address | None:
        """An IPv4 address a packet can be sent to (not 0.0.0.0, multicast, broadcast)."""
        ip = self.ipv4(value, path)
        if ip is None:
            return None
        if ip.is_unspecified or ip.is_multicast or ip == IPv4Address("255.255.255.255"):
            self.error(path, f"{ip} is not a unicast address")
            return None
        return ip
