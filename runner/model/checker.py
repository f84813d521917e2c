"""Typed reads of one YAML document's values; every failure becomes a located problem.

The one place that parses scalars shared by manifests and the supervisor config:
IPv4 addresses, CIDRs (`cidr`), and numbers with units (`quantity`: durations
like 90s or 1h, sizes like 64Mi).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from ipaddress import AddressValueError, IPv4Address, IPv4Network

from runner.model.addresses import address_problem, network_problem
from runner.model.errors import Problem, describe, did_you_mean, join, line_of, show
from runner.model.yamldoc import Document

_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_CIDR = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,3}){3})/([0-9]{1,2})")
_QUANTITY = re.compile(r"([0-9]{1,15})([A-Za-z]{0,2})")

DURATION_UNITS: Mapping[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SIZE_UNITS: Mapping[str, int] = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9,
                                 "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}


class Checker:
    """Typed reads of one document's values.

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

    # -- structure ------------------------------------------------------------------------

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

    # -- scalars ----------------------------------------------------------------------------

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
            self.error(path, f"{show(value)} is out of range {low}..{high}")
            return None
        return value

    def number(self, value: object, path: str) -> float | None:
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.error(path, f"must be a number, not {describe(value)}")
            return None
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.error(path, f"{show(value)} is not a finite number")
            return None
        return number

    def quantity(self, value: object, path: str, units: Mapping[str, int], example: str,
                 low: int, high: int, shown: str) -> int | None:
        """An integer, or digits with a unit of `units` ('90s', '64Mi'), scaled, in
        low..high (`shown` says so in the user's terms: "range 2m..365d"; `example`
        the form: "a duration like 90s, 10m, 1h, 2d or 3600")."""
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            amount = value
        elif isinstance(value, str) and (m := _QUANTITY.fullmatch(value)) and m[2] in units:
            amount = int(m[1]) * units[m[2]]
        elif isinstance(value, str):
            self.error(path, f"{show(value)} is not {example}")
            return None
        else:
            self.error(path, f"must be {example}, not {describe(value)}")
            return None
        if not low <= amount <= high:
            self.error(path, f"{show(value) if isinstance(value, int) else value} is out of "
                             f"{shown}")
            return None
        return amount

    # -- addresses --------------------------------------------------------------------------

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

    def host(self, value: object, path: str, link_local: bool = False) -> IPv4Address | None:
        """An address packets can be sent to: not multicast, loopback, class E, ...
        (see runner.model.addresses)."""
        ip = self.ipv4(value, path)
        if ip is None:
            return None
        why = address_problem(ip, link_local)
        if why is not None:
            self.error(path, why)
            return None
        return ip

    def cidr(self, value: object, path: str, example: str, shortest: int = 0,
             longest: int = 32) -> IPv4Network | None:
        """An IPv4 network 'a.b.c.d/n' without host bits, with a prefix in shortest..longest
        (the only CIDR parser: subnets, remote subnets, the transit pool)."""
        text = self.string(value, path)
        if text is None:
            return None
        m = _CIDR.fullmatch(text)
        try:
            if m is None:
                raise ValueError(text)
            net = IPv4Network(text, strict=False)
        except ValueError:
            self.error(path, f"{show(text)} is not an IPv4 CIDR like {example}")
            return None
        if str(net) != text:
            self.error(path, f"{text} has host bits set; did you mean {net}?")
        elif not shortest <= net.prefixlen <= longest:
            self.error(path, f"{text} has prefix /{net.prefixlen}; use /{shortest} to /{longest}")
        else:
            return net
        return None

    def network(self, value: object, path: str, example: str, shortest: int = 0,
                longest: int = 32, link_local: bool = False) -> IPv4Network | None:
        """A CIDR that is a network of hosts: not multicast, loopback, class E, ..."""
        net = self.cidr(value, path, example, shortest, longest)
        if net is None:
            return None
        why = network_problem(net, link_local)
        if why is not None:
            self.error(path, why)
            return None
        return net
