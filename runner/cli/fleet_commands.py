"""`nirunner fleet ...`: an operator's commands, reading and writing etcd directly.

    nirunner fleet apply --device ID -f PATH [--config FILE]
    nirunner fleet delete --device ID NAME...
    nirunner fleet status [--device ID] [--json]
    nirunner fleet rbac init | add-device ID      (with etcd's root certificate)

Connection: --endpoints, --prefix, --cacert, --cert, --key, or the environment
variables NIRUNNER_ETCD_ENDPOINTS (comma-separated), NIRUNNER_ETCD_PREFIX,
NIRUNNER_ETCD_CACERT, NIRUNNER_ETCD_CERT, NIRUNNER_ETCD_KEY.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from runner.cli.ni_commands import UserError, read_documents, table
from runner.fleet import rbac
from runner.fleet.etcd import Etcd, TlsFiles, prefix_end, put_op
from runner.fleet.etcd import delete_op as delete_key
from runner.fleet.keys import Layout, LayoutError, check_device
from runner.model import errors as model_errors
from runner.model import yamldoc
from runner.model.manifest import Located, parse_documents, validate_set
from runner.model.types import SupervisorConfig, Uplink
from runner.pb.etcd.etcdserverpb import rpc_pb2 as pb


def _connect(args: argparse.Namespace) -> tuple[Etcd, Layout]:
    endpoints = [e.strip() for e in (args.endpoints or "").split(",") if e.strip()]
    if not endpoints:
        raise UserError("no etcd endpoints: give --endpoints or NIRUNNER_ETCD_ENDPOINTS")
    try:
        layout = Layout(args.prefix)
        if getattr(args, "device", None):
            check_device(args.device)
    except LayoutError as e:
        raise UserError(str(e)) from None
    if (args.cert is None) != (args.key is None):
        raise UserError("give both --cert and --key, or neither")
    tls = TlsFiles(args.cacert, args.cert, args.key) if args.cacert else None
    return Etcd(endpoints, tls), layout


def _unchanged(prefix: str, revision: int) -> pb.Compare:
    """Holds while no key under `prefix` changed after `revision`."""
    return pb.Compare(result=pb.Compare.LESS, target=pb.Compare.MOD, key=prefix.encode(),
                      range_end=prefix_end(prefix), mod_revision=revision + 1)


# -- apply ---------------------------------------------------------------------------------


def _documents(paths: list[str]) -> list[tuple[Located, str]]:
    """Each NI of the files, validated on its own, with its document as JSON text."""
    out = []
    for source, text in read_documents(paths):
        located = parse_documents(text, source)  # ManifestError: every problem, with lines
        values, _ = yamldoc.read_documents(text)
        if len(values) != len(located):  # the same reader: cannot differ
            raise UserError(f"{source}: could not match documents to NIs")
        out += [(loc, json.dumps(doc.value, indent=2) + "\n")
                for loc, doc in zip(located, values, strict=True)]
    return out


def cmd_apply(args: argparse.Namespace) -> int:
    from runner.model.config import load_config

    new = _documents(args.file)
    etcd, layout = _connect(args)
    with etcd:
        base = layout.nis(args.device)
        kvs, revision = etcd.get_prefix(base)
        current = {kv.key.removeprefix(base): kv for kv in kvs}
        names = {loc.ni.name for loc, _ in new}
        kept: list[Located] = []
        for name, kv in sorted(current.items()):
            if name in names:
                continue
            try:
                kept += parse_documents(kv.value.decode(), kv.key)
            except (UnicodeDecodeError, model_errors.ModelError) as e:
                print(f"warning: {kv.key} is not a valid NI document, checked without it: "
                      f"{str(e).splitlines()[0]}", file=sys.stderr)
        located = [loc for loc, _ in new]
        if args.config:
            config = load_config(args.config)
        else:  # without the device's config, uplink names cannot be checked
            ups = sorted({x.ni.uplink for x in [*located, *kept] if x.ni.uplink})
            config = SupervisorConfig(uplinks=tuple(Uplink(u, u) for u in ups))
        validate_set([*located, *kept], config)  # all or nothing, like `nirunner apply`
        actions, ops = [], []
        for loc, text in new:
            old = current.get(loc.ni.name)
            if old is not None and old.value == text.encode():
                actions.append((loc.ni.name, "unchanged"))
                continue
            actions.append((loc.ni.name, "updated" if old else "created"))
            ops.append(put_op(layout.ni(args.device, loc.ni.name), text))
        if ops:
            r = etcd.txn([_unchanged(base, revision)], ops, what=f"apply to {args.device}")
            if not r.succeeded:
                raise UserError(f"the NIs of device {args.device} changed meanwhile; "
                                "nothing was written, run it again")
            revision = r.header.revision
    for name, action in actions:
        print(f"{args.device}/{name}: {action}")
    if ops:
        print(f"revision {revision}")
    return 0


# -- delete --------------------------------------------------------------------------------


def cmd_delete(args: argparse.Namespace) -> int:
    etcd, layout = _connect(args)
    with etcd:
        base = layout.nis(args.device)
        kvs, revision = etcd.get_prefix(base, keys_only=True)
        have = {kv.key.removeprefix(base) for kv in kvs}
        unknown = [n for n in args.names if n not in have]
        if unknown:
            raise UserError(f"device {args.device} has no NI {', '.join(unknown)}; "
                            "nothing deleted")
        r = etcd.txn([_unchanged(base, revision)],
                     [delete_key(layout.ni(args.device, n)) for n in args.names],
                     what=f"delete from {args.device}")
        if not r.succeeded:
            raise UserError(f"the NIs of device {args.device} changed meanwhile; "
                            "nothing was deleted, run it again")
    for name in args.names:
        print(f"{args.device}/{name}: deleted")
    return 0


# -- status --------------------------------------------------------------------------------


def fleet_status(etcd: Etcd, layout: Layout, device: str | None) -> list[dict[str, Any]]:
    """Per device: its desired NI names, its summary (None: no live status) and NI statuses."""
    devices: dict[str, dict[str, Any]] = {}

    def entry(d: str) -> dict[str, Any]:
        return devices.setdefault(d, {"device": d, "online": False, "summary": None,
                                      "desired": [], "nis": []})

    desired, _ = etcd.get_prefix(layout.device(device) if device else layout.devices(),
                                 keys_only=True)
    for kv in desired:
        parsed = layout.desired_key(kv.key)
        if parsed:
            entry(parsed[0])["desired"].append(parsed[1])
    reported, _ = etcd.get_prefix(layout.status(device) if device else layout.statuses())
    for kv in reported:
        where = layout.status_key(kv.key)
        if where is None:
            continue
        try:
            value = json.loads(kv.value)
        except ValueError:
            value = {"state": "unreadable", "reason": f"{kv.key} is not JSON"}
        e = entry(where[0])
        if where[1] is None:
            e["online"], e["summary"] = True, value
        else:
            e["nis"].append({"name": where[1], **value} if isinstance(value, dict) else
                            {"name": where[1], "state": "unreadable"})
    if device and device not in devices:
        entry(device)
    return [devices[d] for d in sorted(devices)]


def render_fleet(devices: list[dict[str, Any]]) -> str:
    if not devices:
        return "no devices"
    rows = [["DEVICE", "STATUS", "CONNECTED SINCE", "REVISION", "DESIRED", "RUNNING",
             "REJECTED"]]
    for d in devices:
        s = d["summary"] or {}
        rows.append([d["device"], "online" if d["online"] else "no status (offline?)",
                     str(s.get("connectedSince") or "-"), str(s.get("revision", "-")),
                     str(len(d["desired"])), str(s.get("running", "-")),
                     str(s.get("rejected", "-"))])
    out = table(rows)
    nis = [["DEVICE", "NI", "STATE", "PID", "APPS", "VPN", "APPLIED"]]
    notes = []
    for d in devices:
        for n in sorted(d["nis"], key=lambda n: n["name"]):
            nis.append([d["device"], n["name"], str(n.get("state", "")), str(n.get("pid") or "-"),
                        str(n.get("apps", "-")), str(n.get("vpn") or "-"),
                        str(n.get("applied") or "-")])
            if n.get("reason"):
                notes.append(f"{d['device']}/{n['name']}: {n.get('state')}: {n['reason']}")
            rej = n.get("rejected")
            if isinstance(rej, dict) and rej.get("reason") != n.get("reason"):
                notes.append(f"{d['device']}/{n['name']}: revision {rej.get('revision')} "
                             f"rejected: {rej.get('reason')}")
    if len(nis) > 1:
        out += "\n\n" + table(nis)
    return out + ("\n\n" + "\n".join(notes) if notes else "")


def cmd_status(args: argparse.Namespace) -> int:
    etcd, layout = _connect(args)
    with etcd:
        devices = fleet_status(etcd, layout, args.device)
    print(json.dumps(devices, indent=2) if args.json else render_fleet(devices))
    return 0


# -- rbac ----------------------------------------------------------------------------------


def cmd_rbac_init(args: argparse.Namespace) -> int:
    etcd, layout = _connect(args)
    with etcd:
        rbac.setup(etcd, layout)
    print(f"auth enabled; user {rbac.OPERATOR} may write {layout.devices()} "
          f"and read {layout.statuses()}")
    return 0


def cmd_rbac_device(args: argparse.Namespace) -> int:
    etcd, layout = _connect(args)
    with etcd:
        user = rbac.add_device(etcd, layout, args.device)
    print(f"user {user}: reads {layout.device(args.device)}, writes {layout.status(args.device)}")
    print(f"give device {args.device} a client certificate with CN={user}")
    return 0
