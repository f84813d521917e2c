"""The intended items of a plan (pure): what should exist, one small value per object.

Built from the plan, the app attachments and the stamps of credential files,
never from live reads: the same inputs give the same items.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

from runner.containerd.spec import Limits
from runner.model.types import Resources
from runner.net import names
from runner.net.rules import DeviceRules
from runner.plan.device import DevicePlan
from runner.plan.layout import Layout
from runner.plan.ni import NIPlan
from runner.plan.site import Plan
from runner.plan.switch import SwitchPlan
from runner.reconcile import kinds as k
from runner.reconcile.build_edge import edge_ports, edge_tables
from runner.reconcile.build_switch import shims_of, switch_device_items, switch_items
from runner.reconcile.items import Item
from runner.reconcile.owned import Items
from runner.render import dnsmasq

ById = dict[str, Item]  # what the memo keeps of one NI, the device or a switch
Stamp = tuple[int, int, int]


@dataclass(frozen=True)
class AppPlug:
    """An app attachment, as the store keeps it.

    kind netns: a veth into the app's netns; cni: that, plus `address` configured
    in the app's netns and its lease pinned; tap: the device interface `ifname`
    taken onto the bridge (given back with `mtu` and `up`).
    """

    ni: str
    netns: str  # path of the app's netns ("" for a tap)
    ifname: str
    host_ifname: str
    mac: str
    kind: str = "netns"
    hostname: str = ""
    address: IPv4Interface | None = None
    mtu: int = 0  # tap: its own MTU before it was taken
    up: bool = False  # tap: up before it was taken


def limits(r: Resources) -> Limits:
    return Limits.from_cpus(r.memory, r.cpu, r.pids)


@dataclass(frozen=True)
class TaskPolicy:
    """What every NI task gets from the supervisor config."""

    image: str
    seccomp: str = "enforce"  # taskSeccomp: enforce | log | off
    seccomp_profile: str = ""  # a fingerprint of the profile in force ("" when off)
    # NIs kept on an earlier policy until a roll moves them (runner.supervisor.roll)
    pinned: tuple[tuple[str, TaskPolicy], ...] = ()

    def of(self, ni: str) -> TaskPolicy:
        """The policy of NI `ni`'s task."""
        return dict(self.pinned).get(ni, self)


def app_items(p: NIPlan, layout: Layout, plugs: Sequence[AppPlug],
              app_netns: Mapping[str, int], taps: Collection[str]) -> list[Item]:
    """The items of an NI's apps; `app_netns` maps the apps' netns paths that exist to
    their inodes (facts: a plug waits for its app's netns and follows its re-creation);
    `taps` names the device interfaces to take into NIs that exist."""
    out: list[Item] = edge_ports(p, plugs)
    for a in plugs:
        out.extend(_app_items(p, layout, a, app_netns, taps))
    return out


def ni_own_items(p: NIPlan, layout: Layout, tasks: TaskPolicy,
                 stamps: Mapping[str, Stamp] | None = None) -> list[Item]:
    """The NI's items that are not its apps': what an attach leaves as it is."""
    stamps = stamps or {}
    ni, ns = p.name, p.netns
    out: list[Item] = [
        k.StateDir(ni, str(layout.ni_dir(ni))),
        k.Netns(ni, ns),
        k.Sysctls(ni, ns, tuple(sorted(p.sysctls.items()))),
    ]
    links: list[str] = []
    if p.transit is not None:
        t = p.transit
        veth = k.Veth(ni, t.device_if, ns, t.ni_if, p.mtu, t.device_addr, t.ni_addr)
        out.append(veth)
        links.append(veth.id)
    bridge = k.Bridge(ni, ns, p.bridge.name, p.bridge.mac, p.mtu, p.bridge.address)
    out.append(bridge)
    out.append(k.Routes(ni, ns, names.MAIN_TABLE, p.routes, tuple(links)))
    out.append(k.NftTable(ni, ns, "inet", names.NI_NFT_TABLE, p.nft, _ni_facets(p)))
    out += edge_tables(p)
    secrets: tuple[k.Secret, ...] = ()
    if p.vpn is not None:
        from runner.render import swanctl  # the names of the credential files

        sources = ([(swanctl.SECRETS_CONF, p.vpn.psk_file, 0o600)] if p.vpn.psk_file else [])
        sources += [(c.name, c.source, c.mode) for c in p.vpn.copies]
        secrets = tuple(k.Secret(name, src, mode, stamps.get(src, (0, 0, 0)))
                        for name, src, mode in sources)
    out.append(k.ConfigFiles(ni, str(layout.config_dir(ni)), tuple(sorted(p.files.items())),
                             secrets, p.vpn))
    out.append(task_item(p, layout, tasks))
    if p.transit is not None and p.uplink is not None:
        rule = k.Rule(ni, _transit_rule(p), link=links[0])
        out.append(rule)
    return out


def task_item(p: NIPlan | SwitchPlan, layout: Layout, tasks: TaskPolicy) -> k.Task:
    """The NI's task: `restart_key` (and the seccomp profile) make its generation."""
    ni, ns = p.name, p.netns
    generation = (f"{p.restart_key}.{tasks.seccomp_profile}" if tasks.seccomp_profile
                  else p.restart_key)
    return k.Task(
        ni=ni, container_id=p.container_id, image=tasks.image, generation=generation,
        ni_type=str(p.type), uplink=p.uplink.name if p.uplink else "", netns=ns,
        netns_path=f"/run/netns/{ns}", config_dir=str(layout.config_dir(ni)),
        state_dir=str(layout.state_dir(ni)), log_path=str(layout.log_path(ni)),
        limits=limits(p.resources), seccomp=tasks.seccomp)


def _app_items(p: NIPlan, layout: Layout, a: AppPlug, app_netns: Mapping[str, int],
               taps: Collection[str]) -> list[Item]:
    ni, ns = p.name, p.netns
    out: list[Item] = []
    if a.kind == "tap":
        if a.ifname in taps:
            out.append(k.DeviceLink(a.ifname))
        out.append(k.TakenLink(ni, ns, p.bridge.name, a.host_ifname, a.ifname, a.mac, p.mtu,
                               a.mtu, a.up))
        return out
    inode = app_netns.get(a.netns)
    if inode is not None:
        out.append(k.AppNetns(a.netns, inode))
    out.append(k.Plug(ni, ns, p.bridge.name, a.host_ifname, a.netns, a.ifname, a.mac,
                      p.mtu, inode or 0))
    if a.address is not None:  # an air-gapped NI announces no router: no default route
        gateway = p.bridge.address.ip if p.uplink is not None else None
        leases = Path(layout.state_dir(ni)) / Path(dnsmasq.LEASE_FILE).name
        out.append(k.AppAddress(ni, a.host_ifname, a.netns, a.ifname, a.mac, a.address,
                                gateway, p.mtu, a.hostname, str(leases)))
    return out


def _transit_rule(p: NIPlan) -> k.RuleValue:
    assert p.transit is not None and p.uplink is not None
    return k.RuleValue(names.transit_rule_priority(p.transit.slot), p.uplink.table,
                       p.transit.device_if)


def _ni_facets(p: NIPlan) -> tuple[tuple[str, str, str], ...]:
    return tuple(("port maps", pm.name, f"{pm.protocol} {pm.port} -> {pm.target}:"
                  f"{pm.target_port}") for pm in p.port_maps)


def _device_facets(r: DeviceRules) -> tuple[tuple[str, str, str], ...]:
    out = [("port maps", f"{d.ni}/{d.name}",
            f"{d.protocol} {d.port} on {d.uplink} -> {d.to}") for d in r.dnats]
    out += [("transit links", ifname, f"to {up}") for ifname, up in r.transit_uplinks]
    return tuple(out)


def device_items(d: DevicePlan, uplinks: Mapping[str, str], present: Sequence[str]) -> list[Item]:
    """The device netns's items; `uplinks` maps uplink names to interfaces, `present`
    names the uplinks whose interface exists now (external items)."""
    out: list[Item] = [k.Uplink(n, uplinks[n]) for n in present]
    common = tuple(sorted((key, v) for key, v in d.sysctls.items()
                          if not any(f"/conf/{i}/" in key for i in uplinks.values())))
    out.append(k.Sysctls("", None, common))
    for name, ifname in uplinks.items():
        values = tuple(sorted((key, v) for key, v in d.sysctls.items()
                              if f"/conf/{ifname}/" in key))
        if values:
            out.append(k.Sysctls("", None, values, uplink=name))
    for name, table in d.uplink_tables.items():
        routes = tuple(r for r in d.routes if r.table == table)
        out.append(k.Routes("", None, table, routes,
                            uplinks=(k.uplink_id(name), *shims_of(d, uplinks[name]))))
    for rule in d.rules:
        if rule.iif is None:  # the local rule's new place
            out.append(k.LocalRule(rule.priority, rule.table))
    out.append(k.NftTable("", None, "inet", names.DEVICE_NFT_TABLE, d.nft,
                          _device_facets(d.nft_rules)))
    out += switch_device_items(d, uplinks)
    return out


def build(plan: Plan, layout: Layout, tasks: TaskPolicy | str, uplinks: Mapping[str, str],
          present: Sequence[str], plugs: Sequence[AppPlug] = (),
          stamps: Mapping[str, Stamp] | None = None,
          app_netns: Mapping[str, int] | None = None, taps: Collection[str] = (),
          memo: dict[str, tuple[tuple[object, ...], ById]] | None = None,
          only: Collection[str] | None = None) -> Items:
    """All intended items of a plan, by id (`tasks`: the policy, or just the image).

    `memo` (kept by the caller between builds) holds each NI's items with the inputs
    they were made of: an NI whose plan (the same object: runner.plan.site reuses
    them), plugs and facts are as before is not built again. `only`: the NIs whose
    inputs may have changed (an attach's); the others' items are taken from the memo
    as they are, without their inputs looked at (`app_netns` may lack theirs)."""
    policy = TaskPolicy(tasks) if isinstance(tasks, str) else tasks
    stamps = stamps or {}
    app_netns = app_netns or {}
    memo = {} if memo is None else memo
    shape = (tuple(plan.nis), tuple(plan.switches))
    last = memo.get(LAST)
    if only is not None and last is not None and last[0] == shape:
        return _rebuild(plan, layout, policy, uplinks, present, plugs, stamps, app_netns,
                        taps, memo, only, shape)

    out: ById = {}

    def kept(name: str, keys: tuple[str, ...]) -> bool:
        """The items of `keys` (NI `name`'s) into `out` as the memo has them, if `only`
        leaves the NI out."""
        if only is None or name in only or any(key not in memo for key in keys):
            return False
        for key in keys:
            put(memo[key][1])
        return True

    def put(items: ById) -> None:
        clash = sorted(i for i in out.keys() & items.keys() if not items[i].EXTERNAL)
        if clash:
            raise ValueError(f"item {clash[0]} planned twice")
        out.update(items)

    def add(entry: _Entry) -> None:
        """The items of an entry into `out`, made again only when their inputs changed."""
        key, inputs, make = entry
        hit = memo.get(key)
        if hit is None or hit[0] != inputs:
            hit = (inputs, _made(make))
            memo[key] = hit
        put(hit[1])

    add(_device_entry(plan, uplinks, present))
    by_ni: dict[str, list[AppPlug]] = {}
    for a in plugs:
        by_ni.setdefault(a.ni, []).append(a)
    for name, p in plan.nis.items():
        if not kept(name, _ni_keys(name)):
            for entry in _ni_entries(name, p, layout, policy, tuple(by_ni.get(name, ())),
                                     stamps, app_netns, taps):
                add(entry)
    for name, sw in plan.switches.items():
        if not kept(name, (f"switch:{name}",)):
            add(_switch_entry(name, sw, layout, policy, tuple(by_ni.get(name, ())),
                              app_netns))
    alive = {*plan.nis, *plan.switches}
    gone = [key for key in memo
            if key not in ("device", LAST) and key.partition(":")[2] not in alive]
    for key in gone:  # NIs that are gone
        del memo[key]
    whole = Items(out)
    memo[LAST] = (shape, Items(whole))
    return whole


LAST = "*"  # memo key of the last whole result, with the NIs and switches it was of


def _rebuild(plan: Plan, layout: Layout, policy: TaskPolicy, uplinks: Mapping[str, str],
             present: Sequence[str], plugs: Sequence[AppPlug], stamps: Mapping[str, Stamp],
             app_netns: Mapping[str, int], taps: Collection[str],
             memo: dict[str, Any], only: Collection[str],
             shape: tuple[tuple[str, ...], tuple[str, ...]]) -> Items:
    """`build` for a change of a few NIs (`only`) with the same NIs as the last build: the
    last result copied (one C-level copy, whatever the number of items) with the items
    of the device and of those NIs replaced when theirs changed, so an attach's cost
    does not grow with the number of NIs."""
    out = Items(memo[LAST][1])
    mine = [a for a in plugs if a.ni in only]
    keys = [_device_entry(plan, uplinks, present)]
    for name in only:
        plugged = tuple(a for a in mine if a.ni == name)
        if name in plan.nis:
            keys += _ni_entries(name, plan.nis[name], layout, policy, plugged, stamps,
                                app_netns, taps)
        elif name in plan.switches:
            keys.append(_switch_entry(name, plan.switches[name], layout, policy, plugged,
                                      app_netns))
    for key, inputs, make in keys:
        hit = memo.get(key)
        if hit is not None and hit[0] == inputs:
            continue
        old: ById = hit[1] if hit is not None else {}
        made = _made(make)
        memo[key] = (inputs, made)
        for i, x in old.items():
            if i in made:
                continue
            if x.EXTERNAL:  # a fact: it stays while another NI's items have it too
                if not any(i in m[1] for k, m in memo.items() if k not in (key, LAST)):
                    out.pop(i, None)
            elif out.get(i) is x:
                del out[i]
        clash = sorted(i for i in made.keys() & out.keys()
                       if not made[i].EXTERNAL and out[i] is not old.get(i))
        if clash:
            raise ValueError(f"item {clash[0]} planned twice")
        out.update(made)
    memo[LAST] = (shape, Items(out))
    return out


_Entry = tuple[str, tuple[object, ...], Callable[[], list[Item]]]  # memo key, inputs, maker


def _made(make: Callable[[], list[Item]]) -> ById:
    made: ById = {}
    for x in make():
        if x.id in made and not x.EXTERNAL:
            raise ValueError(f"item {x.id} planned twice")
        made[x.id] = x
    return made


def _device_entry(plan: Plan, uplinks: Mapping[str, str], present: Sequence[str]) -> _Entry:
    return ("device", (plan.device, tuple(uplinks.items()), tuple(present)),
            lambda: device_items(plan.device, uplinks, present))


def _ni_keys(name: str) -> tuple[str, str]:
    return f"ni:{name}", f"apps:{name}"


def _ni_entries(name: str, p: NIPlan, layout: Layout, policy: TaskPolicy,
                mine: tuple[AppPlug, ...], stamps: Mapping[str, Stamp],
                app_netns: Mapping[str, int], taps: Collection[str]) -> list[_Entry]:
    """An NI's items in two entries, each with what it is made of: its own (its plan,
    the stamps of its credential files) and its apps' (their plugs and facts), so an
    attach makes only the apps' again."""
    own, apps = _ni_keys(name)
    stamped = tuple(stamps.get(s, (0, 0, 0)) for s in _secret_sources(p))
    facts = (tuple(app_netns.get(a.netns) for a in mine), tuple(a.ifname in taps for a in mine))
    return [(own, (p, layout, policy.of(name), stamped),
             _own_maker(p, layout, policy.of(name), stamps)),
            (apps, (p, layout, mine, facts), _apps_maker(p, layout, mine, app_netns, taps))]


def _switch_entry(name: str, sw: SwitchPlan, layout: Layout, policy: TaskPolicy,
                  mine: tuple[AppPlug, ...], app_netns: Mapping[str, int]) -> _Entry:
    netns_of = tuple(app_netns.get(a.netns) for a in mine)
    return (f"switch:{name}", (sw, layout, policy.of(name), mine, netns_of),
            _switch_maker(sw, layout, policy.of(name), mine, app_netns))


def _secret_sources(p: NIPlan) -> list[str]:
    if p.vpn is None:
        return []
    return ([p.vpn.psk_file] if p.vpn.psk_file else []) + [c.source for c in p.vpn.copies]


def _own_maker(p: NIPlan, layout: Layout, policy: TaskPolicy, stamps: Mapping[str, Stamp]
               ) -> Callable[[], list[Item]]:
    return lambda: ni_own_items(p, layout, policy, stamps)


def _apps_maker(p: NIPlan, layout: Layout, plugs: Sequence[AppPlug],
                app_netns: Mapping[str, int], taps: Collection[str]
                ) -> Callable[[], list[Item]]:
    return lambda: app_items(p, layout, plugs, app_netns, taps)


def _switch_maker(sw: SwitchPlan, layout: Layout, policy: TaskPolicy, plugs: Sequence[AppPlug],
                  app_netns: Mapping[str, int]) -> Callable[[], list[Item]]:
    return lambda: [*switch_items(sw, layout, plugs, app_netns), task_item(sw, layout, policy)]
