"""Validation problems over the API: the same structured problems `validate` prints.

A refused apply carries its problems as JSON in the gRPC trailing metadata key
PROBLEMS_KEY ({"kind": "ManifestError", "problems": [{source, ni, path, message,
line}, ...]}); the client raises the same error type with the same problems.
gRPC clients refuse trailers above 8 KiB by default, so the list and the status
message are cut to fit, the last problem saying how many were left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from runner.model.errors import ConfigError, ManifestError, ModelError, Problem

PROBLEMS_KEY = "nirunner-problems-bin"
MAX_JSON = 3000  # bytes of problems (base64 on the wire: 4000)
MAX_FIELD = 200  # characters of a problem's source, path or message (ours are shorter)
MAX_DETAILS = 1000  # UTF-8 bytes of the status message (percent-encoded: up to 3000)
_KINDS: dict[str, type[ModelError]] = {"ManifestError": ManifestError,
                                       "ConfigError": ConfigError}


def encode(e: ModelError) -> tuple[str, tuple[tuple[str, bytes], ...]]:
    """(status message, trailing metadata) for a refused call."""
    kept = _fit(e.problems)
    body = json.dumps({"kind": type(e).__name__, "problems": [p.to_dict() for p in kept]},
                      ensure_ascii=False)
    details = str(ModelError(kept))
    if len(details.encode()) > MAX_DETAILS:
        details = details.encode()[:MAX_DETAILS].decode(errors="ignore") + " ..."
    return details, ((PROBLEMS_KEY, body.encode()),)


def decode(metadata: Iterable[Any] | None) -> ModelError | None:
    """The error a server sent with encode(), or None if there is none."""
    for item in metadata or ():
        key, value = item[0], item[1]
        if key != PROBLEMS_KEY:
            continue
        try:
            body = json.loads(value)
            kind = _KINDS.get(body.get("kind"), ManifestError)
            return kind([Problem.from_dict(p) for p in body["problems"] if isinstance(p, dict)])
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
    return None


def _fit(problems: list[Problem]) -> list[Problem]:
    kept: list[Problem] = []
    size = 0
    for i, p in enumerate(problems):
        p = replace(p, source=_cut(p.source), path=_cut(p.path) or "",
                    message=_cut(p.message) or "")
        size += len(json.dumps(p.to_dict(), ensure_ascii=False).encode()) + 2
        if size > MAX_JSON - 300 and kept:
            left = len(problems) - i
            kept.append(Problem(p.source, None, "", f"... and {left} more problem(s); "
                                                   f"`nirunner validate` lists them all"))
            break
        kept.append(p)
    return kept


def _cut(text: str | None) -> str | None:
    return text if text is None or len(text) <= MAX_FIELD else text[:MAX_FIELD] + " ..."
