"""Errors of planning: input that validated alone but cannot be planned together."""

from __future__ import annotations

from runner.errors import NirunnerError


class PlanError(NirunnerError):
    """The desired state cannot be planned; the message names the NI and the reason."""


class TransitPoolExhausted(PlanError):
    """No free /30 is left in the transit pool for one or more NIs."""
