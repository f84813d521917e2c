"""The error of a value that cannot be written into a config file or ruleset safely."""

from __future__ import annotations

from runner.errors import NirunnerError


class RenderError(NirunnerError):
    """Plan data that cannot be rendered (a value that would break out of its syntax)."""
