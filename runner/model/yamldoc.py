"""YAML text -> plain values with the line of every field path.

Values are read from the composed node tree, so every field path
("spec.dhcp.range.start", "spec.portMaps[1].target") keeps the 1-based line of
its node. Only plain mappings, lists and scalars are read: no custom tags, no
merge keys; nesting and alias expansion are bounded (YAML bombs), and a scalar
the YAML library cannot construct (a date like 2024-13-45, an integer of
100,000 digits) is a problem, not an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from runner.model.errors import join, show

MAX_DEPTH = 32  # deeper than any manifest; also stops recursive aliases
MAX_VALUES = 20_000  # stops alias bombs ("billion laughs")
MAX_DOCUMENTS = 10_000  # per text, empty ones too: 1 MiB of "---" took 7 s
MAX_NODES = 2 * MAX_VALUES  # keys and values composed: 1 MiB of "[1,1,1,..." took 18 s, 360 MB
_SAFE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAP_TAGS = {"tag:yaml.org,2002:map"}
_SEQ_TAGS = {"tag:yaml.org,2002:seq"}
# what a scalar may be: the plain types (a timestamp is a string that looks like one)
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "str",
                                                    "timestamp")}


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


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader whose composer stops early: it builds a document's whole
    node tree before anything can look at it, recursively."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.nodes = 0
        self.depth = 0

    def compose_document(self) -> Node | None:
        self.nodes = self.depth = 0
        return super().compose_document()  # type: ignore[no-any-return]

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Unreadable(f"has more than {MAX_NODES} keys and values", self._here())
        if self.depth >= MAX_DEPTH + 1:
            raise _Unreadable(f"is nested more than {MAX_DEPTH} levels deep", self._here())
        self.depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1

    def _here(self) -> int:
        return int(self.peek_event().start_mark.line) + 1


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
            raise _Unreadable(f"is nested more than {MAX_DEPTH} levels deep (or has a "
                              f"recursive alias)", _line(node))
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
        if not isinstance(node, ScalarNode) or node.tag not in _SCALAR_TAGS:
            raise _Unreadable(f"uses an unsupported tag {show(node.tag)}", _line(node))
        try:
            value = self.loader.construct_object(node)
        except yaml.YAMLError:
            raise _Unreadable(f"uses an unsupported tag {show(node.tag)}", _line(node)) from None
        # 2024-13-45, an int of 10,000 digits, !!bool maybe, !!timestamp hello
        except (ValueError, OverflowError, KeyError, AttributeError, TypeError) as e:
            kind = node.tag.rsplit(":", 1)[-1]
            why = f" ({show(str(e), 80)})" if isinstance(e, ValueError | OverflowError) else ""
            raise _Unreadable(f"has a value that cannot be read as {kind}: "
                              f"{show(node.value)}{why}", _line(node)) from None
        if path and node.style is None:
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
    return f"invalid YAML: {show(str(err), 200)}", None


def read_documents(text: str) -> tuple[list[Document], list[tuple[str, int | None]]]:
    """Every non-empty document of `text`, and the problems that stopped reading some.

    A document that cannot be read (syntax error, unsupported tag, alias bomb) is
    reported as (message, line), the message a whole sentence. The text should have
    passed runner.model.reader (size, control characters) first.
    """
    docs: list[Document] = []
    fatal: list[tuple[str, int | None]] = []
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        count = 0
        while loader.check_node():
            count += 1
            if count > MAX_DOCUMENTS:
                fatal.append((f"holds more than {MAX_DOCUMENTS} YAML documents",
                              int(loader.peek_event().start_mark.line) + 1))
                break
            try:
                root = loader.get_node()
            except _Unreadable as e:  # the stream cannot be read past it
                fatal.append((f"document {e.message}", e.line))
                break
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
        if loader is not None:
            loader.dispose()
    return docs, fatal
