"""The error of a name or number that the kernel (or nft) would not take."""

from __future__ import annotations

from runner.errors import NirunnerError


class NetValueError(NirunnerError):
    """A name or number outside what the kernel allows; the message says which and why."""
