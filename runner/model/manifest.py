"""NI manifests (YAML, `kind: NetworkInstance`) -> validated NetworkInstance values.

The public face of the model; the work is done in

    runner.model.reader     bytes and texts: files, directories, stdin, size, UTF-8
    runner.model.yamldoc    text -> documents with the line of every field path
    runner.model.fields     the field checks of one manifest (+ vpn_fields)
    runner.model.sets       checks across NIs and against the supervisor config

Reading is in two steps. Each manifest is checked on its own (syntax, types,
addresses, names) by `load_documents` / `load_paths`; `validate_set` then checks
a set of NIs against each other and the supervisor config (names, uplinks, port
clashes, the transit pool). `load_and_validate` does both. Problems are
collected, never raised one by one: a single ManifestError lists them all with
file, NI, field path and line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import BinaryIO

from runner.model.checker import Checker
from runner.model.errors import Located, ManifestError, Problem
from runner.model.fields import API_VERSION, KIND, NAME_MAX, default_range, network_instance
from runner.model.reader import MAX_BYTES, Text, check_text, read_paths
from runner.model.sets import set_problems
from runner.model.types import NetworkInstance, SupervisorConfig
from runner.model.yamldoc import read_documents

__all__ = [
    "API_VERSION", "KIND", "MAX_BYTES", "NAME_MAX", "Located", "default_range",
    "load_and_validate", "load_documents", "load_paths", "parse_documents", "parse_paths",
    "parse_many", "parse_texts", "set_problems", "validate_set",
]


def load_documents(text: str, source: str | None = None) -> list[NetworkInstance]:
    """The NIs of a YAML text (one NI per document; empty documents are skipped)."""
    return [loc.ni for loc in parse_documents(text, source)]


def load_paths(paths: Sequence[str]) -> list[NetworkInstance]:
    """The NIs of files and directories (a directory: its *.yaml and *.yml, sorted)."""
    return [loc.ni for loc in parse_paths(paths)]


def load_and_validate(paths: Sequence[str],
                      config: SupervisorConfig | None) -> list[NetworkInstance]:
    """load_paths + validate_set, with the problems of both in one ManifestError."""
    located, problems = _parse_paths(paths)
    problems += set_problems(located, config)
    if problems:
        raise ManifestError(problems)
    return [loc.ni for loc in located]


def validate_set(nis: Iterable[NetworkInstance | Located],
                 config: SupervisorConfig | None) -> None:
    """Checks across NIs (see runner.model.sets); config None: only among themselves."""
    problems = set_problems(nis, config)
    if problems:
        raise ManifestError(problems)


def parse_documents(text: str, source: str | None = None) -> list[Located]:
    """Like load_documents, keeping each NI's source and field lines. The text is held to
    the same limits as a file (MAX_BYTES of UTF-8, no control characters)."""
    found = check_text(text, source)
    if isinstance(found, Problem):
        raise ManifestError([found])
    located, problems = _parse_text(found)
    if problems:
        raise ManifestError(problems)
    return located


def parse_many(docs: Iterable[tuple[str | None, str]]) -> list[Located]:
    """Like parse_documents for several (source, text) pairs, e.g. an API call's
    documents: one ManifestError with the problems of all of them."""
    texts: list[Text] = []
    problems: list[Problem] = []
    for source, text in docs:
        found = check_text(text, source)
        if isinstance(found, Text):
            texts.append(found)
        else:
            problems.append(found)
    located, bad = parse_texts(texts)
    if problems or bad:
        raise ManifestError(problems + bad)
    return located


def parse_paths(paths: Sequence[str], stdin: BinaryIO | None = None) -> list[Located]:
    """Like load_paths, keeping each NI's source and field lines; "-" reads stdin."""
    located, problems = _parse_paths(paths, stdin)
    if problems:
        raise ManifestError(problems)
    return located


def parse_texts(texts: Iterable[Text]) -> tuple[list[Located], list[Problem]]:
    """The NIs of checked texts, and every problem of all of them."""
    located: list[Located] = []
    problems: list[Problem] = []
    for t in texts:
        found, bad = _parse_text(t)
        located += found
        problems += bad
    return located, problems


def _parse_paths(paths: Sequence[str], stdin: BinaryIO | None = None
                 ) -> tuple[list[Located], list[Problem]]:
    texts, problems = read_paths(paths, stdin)
    located, bad = parse_texts(texts)
    return located, problems + bad


def _parse_text(t: Text) -> tuple[list[Located], list[Problem]]:
    docs, fatal = read_documents(t.text)
    problems = [Problem(t.source, None, "", msg, line) for msg, line in fatal]
    located: list[Located] = []
    for doc in docs:
        checker = Checker(t.source, doc)
        ni = network_instance(checker)
        if ni is not None and checker.ok:
            located.append(Located(ni, t.source, doc.lines))
        problems += checker.problems()
    problems.sort(key=lambda p: (p.line is None, p.line or 0))
    return located, problems
