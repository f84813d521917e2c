"""The status a device writes back to etcd, as key -> JSON text (pure).

    <prefix>/status/<id>/device
        {"device": "a", "connectedSince": "2026-...Z", "revision": 42, "version": "0.1.0",
         "nis": 3, "running": 2, "rejected": 1}
    <prefix>/status/<id>/networkinstances/<ni>
        {"name": "factory", "state": "running", "reason": "", "pid": 4242, "apps": 2,
         "vpn": null, "applied": 40, "rejected": {"revision": 42, "reason": "..."}}

`applied` is the etcd revision of the document the NI runs; `rejected`, when
present, says why a newer document was not applied (the NI keeps its last good
state). An NI whose first document was rejected has state "rejected". Values
change only when something a person would care about changes, so a device
writes them only then.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.fleet.keys import Layout


@dataclass(frozen=True)
class Rejected:
    revision: int  # of the document that was refused
    reason: str


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def ni_document(st: Mapping[str, Any] | None, name: str, applied: int | None,
                rejected: Rejected | None) -> dict[str, Any]:
    """One NI's status from the target's view (`st`, None if it has no such NI)."""
    if st is None:
        doc: dict[str, Any] = {"name": name, "state": "rejected" if rejected else "pending",
                               "reason": rejected.reason if rejected else "", "pid": 0,
                               "apps": 0, "vpn": None}
    else:
        doc = {"name": name, "state": str(st.get("state", "")),
               "reason": str(st.get("reason", "")), "pid": int(st.get("pid") or 0),
               "apps": int(st.get("apps") or 0), "vpn": st.get("vpn")}
    doc["applied"] = applied
    if rejected is not None:
        doc["rejected"] = {"revision": rejected.revision, "reason": rejected.reason}
    return doc


def documents(layout: Layout, device: str, statuses: Sequence[Mapping[str, Any]],
              applied: Mapping[str, int], rejected: Mapping[str, Rejected],
              summary: Mapping[str, Any]) -> dict[str, str]:
    """Every status key of the device with its JSON text."""
    by_name = {str(s["name"]): s for s in statuses}
    names = sorted(set(by_name) | set(rejected))
    nis = {n: ni_document(by_name.get(n), n, applied.get(n), rejected.get(n)) for n in names}
    head = {"device": device, **summary, "nis": len(nis),
            "running": sum(d["state"] == "running" for d in nis.values()),
            "rejected": sum("rejected" in d for d in nis.values())}
    out = {layout.summary(device): _json(head)}
    out.update({layout.ni_status(device, n): _json(d) for n, d in nis.items()})
    return out


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
