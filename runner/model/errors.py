"""Problems found in manifests and config files, and where they are.

Checks record problems instead of raising; one error carries them all, one per line:

    site.yaml: factory: spec.dhcp.range.start 10.2.0.5 is outside spec.subnet 10.1.0.0/24 (line 14)
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.errors import NirunnerError

if TYPE_CHECKING:  # the CLI reads files through this module: no model import for it
    from runner.model.types import NetworkInstance


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

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "ni": self.ni, "path": self.path,
                "message": self.message, "line": self.line}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Problem:
        def text(key: str) -> str | None:
            value = d.get(key)
            return value if isinstance(value, str) else None

        line = d.get("line")
        return cls(text("source"), text("ni"), text("path") or "", text("message") or "",
                   line if isinstance(line, int) and not isinstance(line, bool) else None)


class ModelError(NirunnerError):
    """Input that does not validate; str() lists every problem, one per line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ManifestError(ModelError):
    """One or more NI manifests are invalid."""


class ConfigError(ModelError):
    """The supervisor's config file is invalid."""


@dataclass(frozen=True)
class Located:
    """A parsed NI with where it came from, so set checks can point at lines too."""

    ni: NetworkInstance
    source: str | None = None
    lines: Mapping[str, int] = field(default_factory=dict, compare=False)

    def line(self, path: str) -> int | None:
        return line_of(self.lines, path)


def show(value: object, limit: int = 60) -> str:
    """A value quoted for a message: repr, so newlines and quotes cannot forge output."""
    if isinstance(value, int) and value.bit_length() > 200:
        return f"a number of {value.bit_length()} bits"  # repr() refuses huge ints
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
            return f"an integer ({show(value)})"
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
    import difflib  # here: the CLI imports this module to read files, rarely to suggest

    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower()[:100], list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""
