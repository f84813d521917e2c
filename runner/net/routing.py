"""Routes and ip rules as plain data (what `ip route` / `ip rule` would show).

`str()` of each gives the `ip` command's wording, for dry runs and logs; the
drivers program them through netlink from the fields, never from the text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from runner.net import names

DEFAULT = IPv4Network("0.0.0.0/0")
FALLBACK_METRIC = 4278198272  # below any real default route


class RouteType(enum.StrEnum):
    UNICAST = "unicast"
    THROW = "throw"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Route:
    table: int
    dst: IPv4Network
    type: RouteType = RouteType.UNICAST
    gateway: IPv4Address | None = None
    dev: str | None = None
    metric: int | None = None
    src: IPv4Address | None = None  # the preferred source address

    def __str__(self) -> str:
        parts = [] if self.type is RouteType.UNICAST else [str(self.type)]
        parts.append("default" if self.dst == DEFAULT else str(self.dst))
        if self.gateway is not None:
            parts.append(f"via {self.gateway}")
        if self.dev is not None:
            parts.append(f"dev {self.dev}")
            if self.gateway is None:
                parts.append("scope link")
        if self.src is not None:
            parts.append(f"src {self.src}")
        if self.metric is not None:
            parts.append(f"metric {self.metric}")
        if self.table != names.MAIN_TABLE:
            parts.append(f"table {self.table}")
        return " ".join(parts)


@dataclass(frozen=True)
class Rule:
    priority: int
    table: int
    iif: str | None = None  # None: from all

    def __str__(self) -> str:
        table = "local" if self.table == names.LOCAL_TABLE else str(self.table)
        match = f"iif {self.iif}" if self.iif else "from all"
        return f"{self.priority}: {match} lookup {table}"


LOCAL_RULE = Rule(names.LOCAL_RULE_PRIORITY, names.LOCAL_TABLE)
DEFAULT_LOCAL_RULE = Rule(0, names.LOCAL_TABLE)
