"""The benchmark's Markdown: the main table (each measurement against its references
and targets), then the scale curve, shared shims, podman side by side, the CLI's
cost and where an apply spends its time. Pure: results in, text out."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from bench import appedge, bringup, change, memory, scale, throughput
from bench.cli import Cli
from bench.podman import PodmanSide
from bench.stats import Stat, fmt, mib, ratio, seconds

MS = 1e-3
MIB = 1 << 20
# the targets of issue 15 (at 100 NIs where they name a count)
T_MANY = 1.1  # all ready <= 1.1x the best hand-made floor
T_ATTACH = 15 * MS
T_MEM = 3 * MIB  # RSS-equivalent per NI
T_IDLE = 0.5  # percent of one core over 5 minutes
T_STATUS = 100 * MS
T_DELETE = 3.0
T_RESTART = 3.0
T_CLI = 150 * MS  # on top of the call
T_LINEAR = 1.25  # the last segment's cost per added NI within this of the first's
T_PODMAN = 1.0

Row = list[str]


def _stat(xs: Sequence[float]) -> Stat | None:
    return Stat.of(xs)


def _runs(runs: list[bringup.Run], what: str = "total") -> Stat | None:
    if what == "per_ni":
        return _stat([x.total / x.n for x in runs])
    if what == "plug_each":
        return _stat([(x.plugged - x.setup) / x.n for x in runs])
    if what == "offer":
        return _stat([x.offer[0] for x in runs])
    if what == "last_offer":
        return _stat([max(x.offer) for x in runs if x.offer])
    return _stat([getattr(x, what) for x in runs])


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def _lines(head: Sequence[str], rows: Sequence[Row]) -> list[str]:
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows])


class Table:
    """The main table: a measurement, nirunner, floor, CNI, ratios, target, met."""

    HEAD = ["measurement", "nirunner", "floor", "CNI", "nirunner/floor", "nirunner/CNI",
            "target", "met"]

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def row(self, what: str, a: Stat | None, f: Stat | None = None, c: Stat | None = None,
            unit: str = "s", target: str = "", ok: bool | None = None) -> None:
        self.rows.append([what, fmt(a, unit), fmt(f, unit) if f else "",
                          fmt(c, unit) if c else "", ratio(a, f) if f else "",
                          ratio(a, c) if c else "", target, _met(ok) if target else ""])

    def text(self, what: str, value: str, target: str = "", ok: bool | None = None) -> None:
        self.rows.append([what, value, "", "", "", "", target, _met(ok) if target else ""])


def report(r: dict[str, Any], m: dict[str, str], cfg: dict[str, Any], quick: bool,
           wall: float) -> str:
    t = Table()
    for key, err in r.get("errors", {}).items():
        t.rows.append([f"section {key}: FAILED", err.replace("|", "/")[:300], "", "", "", "",
                       "", ""])
    if "one" in r:
        _rows_one(t, r["one"])
    if "many" in r:
        _rows_many(t, r["many"], cfg["n_many"])
    curve: list[scale.Point] = r.get("curve", [])
    at = next((p for p in curve if p.n == cfg["n_scale"]), None)
    if at is not None:
        _rows_point(t, at, curve)
    if "scale" in r:
        _rows_details(t, r["scale"], at)
    if "cli" in r:
        worst = max(r["cli"].cmds, key=r["cli"].cost)
        cost = r["cli"].cost(worst)
        t.text(f"CLI: the costliest command's wall time on top of its call ({worst})",
               f"+{seconds(cost)}", f"≤ {T_CLI / MS:.0f} ms each", cost <= T_CLI)
    if "podman" in r:
        _rows_podman_targets(t, r["podman"])
    if "change" in r:
        ch: change.Change = r["change"]
        t.row("port map added to a running NI → connection through it works",
              _stat(ch.nirunner), _stat(ch.floor))
        t.row("… of which the apply call", _stat(ch.nirunner_apply))
    if "throughput" in r:
        _rows_throughput(t, r["throughput"])
    if "appedge" in r or "appedge_sup" in r:
        _rows_appedge(t, r.get("appedge"), r.get("appedge_sup"))
    if "switch" in r:
        sw_n, sw_f = (_stat(r["switch"].paths.get(k, [])) for k in ("switch nirunner",
                                                                    "switch floor"))
        t.row("TCP switch NI app → segment host (floor: a macvlan of eth1 plugged straight in)",
              sw_n, sw_f, unit="Gbit/s", target="≥ 0.9x floor",
              ok=bool(sw_n and sw_f and sw_n.median >= 0.9 * sw_f.median))

    out = [f"Measured {m['date']} on {m['os']}, kernel {m['kernel']}, {m['nproc']} cores "
           f"({m['cpu']}), {m['mem']}, cgroup {m['cgroup']}, containerd {m['containerd']}; "
           f"load average at start {m['load']}"
           + (f", at the end {m['load_end']}" if m.get("load_end") else "")
           + f"; `python -m bench.run{' --quick' if quick else ''}` took {wall / 60:.1f} min. "
           "Values: median / p95 (n = samples).", ""]
    out += _lines(Table.HEAD, t.rows)
    if curve:
        out += ["", "Scale curve: N NIs applied at once, one app each (attach: every call "
                "made with N NIs applied, during the bring-up and 5 more once all were "
                "ready; all ready: the median of several rounds where n is shown, the "
                "other columns from the first round; marginal: the bring-up's cost per NI "
                "added since the previous N, from the medians; "
                "memory per NI: RSS-equivalent = task cgroup + its shim's RSS split among "
                "the tasks it serves, PSS-equivalent the same with the shim's PSS; MemFree "
                "lost: the machine's free memory before the apply less after all were "
                "ready, per NI, which counts kernel memory no task cgroup holds; n/a below "
                f"{scale.FREE_MIN_N} NIs, where the machine's own churn of a few MiB outweighs "
                "it):", ""]
        out += curve_table(curve)
    if "groups" in r:
        out += ["", f"Shared shims, by hand: the parallel floor with {cfg['groups_n']} NIs, "
                "tasks annotated `io.containerd.runc.v2.group` in groups of G (G = 1: no "
                "annotation, a shim per task):", ""]
        out += groups_table(r["groups"])
    if "podman" in r:
        out += ["", podman_intro(r["podman"]), ""]
        out += podman_table(r["podman"])
    if "cli" in r:
        out += ["", f"The CLI's cost, with {r['cli'].n} NIs applied: each command that "
                "talks to the API run as `nirunner ...` in a new process against the same "
                "call made in-process through runner.api.client:", ""]
        out += cli_table(r["cli"])
    if "steps" in r:
        out += ["", "Where the time goes (a Supervisor object in-process, each step timed; "
                "steps nest, times are totals over all calls):", ""]
        out += steps_table(r["steps"], r.get("scale"))
    return "\n".join(out) + "\n"


# -- main table sections -----------------------------------------------------------


def _three(runs: dict[str, list[bringup.Run]], what: str = "total"
           ) -> tuple[Stat | None, Stat | None, Stat | None]:
    a, f, c = (_runs(runs[k], what) if runs.get(k) else None
               for k in ("nirunner", "floor", "cni"))
    return a, f, c


def _rows_one(t: Table, one: dict[str, list[bringup.Run]]) -> None:
    a, f, c = _three(one)
    t.row("1 NI: apply → ready (task, DHCP answer, TCP through NAT)", a, f, c,
          target="≤ 1.5x floor, < CNI",
          ok=bool(a and f and c and a.median <= 1.5 * f.median and a.median < c.median))
    t.row("1 NI: of which apply call / script returned", *_three(one, "setup"))
    t.row("1 NI: app plugged (nirunner: attach API; floor, CNI: netlink by hand)",
          *_three(one, "plugged"))
    t.row("1 NI: DHCP offer seen", *_three(one, "offer"))
    t.row("1 NI: `nirunner apply` CLI → ready (Python start-up included)",
          _runs(one["nirunner-cli"]), f, c)


def _rows_many(t: Table, many: dict[str, list[bringup.Run]], n: int) -> None:
    a, f, c = _three(many)
    fp = _runs(many["floor-par"]) if many.get("floor-par") else None
    t.row(f"{n} NIs applied at once: all ready (floor: the sequential script)", a, f, c)
    t.row(f"… against the parallel floor (kernel work in {2} shards, 4 `ctr run -d` at a "
          "time)", a, fp)
    best = min((x for x in (f, fp) if x), key=lambda x: x.median, default=None)
    t.row(f"{n} NIs at once, all ready: nirunner against the best floor", a, best,
          target=f"≤ {T_MANY}x best floor",
          ok=bool(a and best and a.median <= T_MANY * best.median))
    t.row(f"{n} NIs: per NI (total / {n})", *_three(many, "per_ni"))
    t.row(f"{n} NIs: of which apply call / script returned", *_three(many, "setup"))
    t.row("… the parallel floor's script returned", _runs(many["nirunner"], "setup"),
          _runs(many["floor-par"], "setup") if many.get("floor-par") else None)
    t.row(f"{n} NIs: plugging one app (nirunner: attach API; others: by hand)",
          *_three(many, "plug_each"))
    t.row(f"{n} NIs: delete all, until their links are gone (nirunner: API; others: tasks "
          "removed 8 at a time, then `ip netns del`)", *_three(many, "delete"))
    t.row("… against the parallel floor's removal", _runs(many["nirunner"], "delete"),
          _runs(many["floor-par"], "delete") if many.get("floor-par") else None)


def _rows_point(t: Table, p: scale.Point, curve: list[scale.Point]) -> None:
    n, up = p.n, p.up
    assert up is not None
    big = n >= 100
    t.row(f"{n} NIs: apply → all ready", _stat([up.total]), target="< 20 s",
          ok=up.total < 20 if big else None)
    t.row(f"{n} NIs: of which apply call returned", _stat([up.setup]))
    att = _stat(p.attaches())
    t.row(f"attach of one app with {n} NIs applied (API; every call)", att,
          target=f"≤ {T_ATTACH / MS:.0f} ms", ok=att.median <= T_ATTACH if att and big else None)
    meds = [(q.n, s) for q in curve if (s := _stat(q.attaches())) is not None]
    if len(meds) > 1:
        t.text(f"attach from {meds[0][0]} to {meds[-1][0]} NIs (median at each N)",
               ", ".join(f"{k}: {s.median / MS:.0f} ms" for k, s in meds),
               f"flat, ≤ {T_ATTACH / MS:.0f} ms at every N",
               all(s.median <= T_ATTACH for _, s in meds) if meds[-1][0] >= 250 else None)
    t.row(f"supervisor RSS with {n} NIs (VmRSS; peak {mib(p.sup_hwm)}, {p.sup_threads} "
          "threads)", _stat([p.sup_rss]), unit="MiB", target="< 80 MB",
          ok=p.sup_rss < 80e6 if big else None)
    fp = p.footprint
    if fp is not None and fp.units:
        rss = _stat(fp.rss())
        t.row(f"per-NI memory, RSS-equivalent: task cgroup + its shim's RSS / the tasks it "
              f"serves ({fp.monitors} shims for {fp.units} tasks)", rss, unit="MiB",
              target="≤ 3 MiB", ok=rss.median <= T_MEM if rss else None)
        t.row("… PSS-equivalent: task cgroup + its shim's PSS / the tasks it serves",
              _stat(fp.pss()), unit="MiB")
        t.row("… task cgroup (RSS, page cache, kernel memory)", _stat(fp.cgroup), unit="MiB")
        t.row("… task cgroup RSS", _stat(fp.cgroup_rss), unit="MiB")
        t.row("… its shim's RSS share", _stat(fp.monitor_rss), unit="MiB")
        t.row("… its shim's PSS share", _stat(fp.monitor_pss), unit="MiB")
    if p.free_drop and n >= scale.FREE_MIN_N:
        t.row(f"… the whole machine: MemFree lost from the apply to all {n} ready, per NI "
              "(kernel memory such as nft sets, the supervisor's and containerd's growth, "
              "page cache)", _stat([p.free_drop / n]), unit="MiB")
    t.row(f"delete of {n} NIs (API)", _stat([p.delete]), target=f"≤ {T_DELETE:g} s",
          ok=p.delete <= T_DELETE if big else None)
    if len(curve) > 2:
        first, last = _marginal(curve[0], curve[1]), _marginal(curve[-2], curve[-1])
        if first and last:
            t.text(f"bring-up cost per added NI: {curve[-2].n}→{curve[-1].n} against "
                   f"{curve[0].n}→{curve[1].n}",
                   f"{last / MS:.0f} ms against {first / MS:.0f} ms = {last / first:.2f}x",
                   f"≤ {T_LINEAR}x (linear)", last / first <= T_LINEAR)


def _marginal(a: scale.Point, b: scale.Point) -> float | None:
    if not a.totals() or not b.totals() or b.n == a.n:
        return None
    return (statistics.median(b.totals()) - statistics.median(a.totals())) / (b.n - a.n)


def _rows_details(t: Table, sc: scale.Scale, p: scale.Point | None) -> None:
    n = sc.n
    big = n >= 100
    rc = _stat(sc.reconcile)
    t.row(f"idle reconcile pass, {n} NIs, nothing to do (in-process Supervisor.reconcile())",
          rc, target="< 50 ms", ok=rc.median < 0.05 if rc else None)
    t.row("… its CPU time (user + system, all threads)", _stat(sc.reconcile_cpu))
    t.row(f"no-op `apply` of {n} unchanged NIs (API)", _stat(sc.noop_apply))
    pct = 100 * sc.idle_cpu / sc.idle_window if sc.idle_window else 0
    t.text(f"supervisor CPU while idle with {n} NIs ({sc.idle_window:.0f} s window)",
           f"{sc.idle_cpu * 1000:.0f} ms CPU = {pct:.2f}%", f"< {T_IDLE}% over 5 min",
           pct < T_IDLE if big and sc.idle_window >= 290 else None)
    st = _stat(sc.status_call)
    t.row(f"`status` of {n} NIs (API)", st, target=f"≤ {T_STATUS / MS:.0f} ms",
          ok=st.median <= T_STATUS if st and big else None)
    rs = _stat(sc.restart)
    t.row(f"supervisor restart with {n} NIs → all adopted (API socket up; "
          f"{sc.restarted_tasks} tasks restarted)", rs,
          target=f"≤ {T_RESTART:g} s, no task restarted",
          ok=(rs.median <= T_RESTART if big else True) and sc.restarted_tasks == 0
          if rs else None)


def _rows_podman_targets(t: Table, side: PodmanSide) -> None:
    for n in sorted({int(k.split()[1]) for k in side.runs}):
        a, p = _runs(side.runs.get(f"nirunner {n}", [])), _runs(side.runs.get(f"podman {n}", []))
        if a and p:
            t.text(f"{n} network(s) + one container each → answering: nirunner / podman + "
                   "netavark", f"{ratio(a, p)} ({seconds(a.median)} / {seconds(p.median)})",
                   f"≤ {T_PODMAN}x", a.median <= T_PODMAN * p.median)
    a_fp, p_fp = _footprints(side)
    if a_fp and p_fp:
        a, p = _stat(a_fp.rss()), _stat(p_fp.rss())
        if a and p:
            t.text(f"memory per network, RSS-equivalent, {a_fp.units} networks: nirunner / "
                   "podman + netavark", f"{ratio(a, p)} ({mib(a.median)} / {mib(p.median)})",
                   f"≤ {T_PODMAN}x", a.median <= T_PODMAN * p.median)


def _footprints(side: PodmanSide) -> tuple[memory.Footprint | None, memory.Footprint | None]:
    n = max((int(k.split()[1]) for k in side.runs), default=0)
    def first(key: str) -> memory.Footprint | None:
        return next((x.footprint for x in side.runs.get(key, []) if x.footprint), None)
    return first(f"nirunner {n}"), first(f"podman {n}")


def _rows_throughput(t: Table, tp: throughput.Throughput) -> None:
    p = tp.paths
    nat_n, nat_f = _stat(p.get("nat nirunner", [])), _stat(p.get("nat floor", []))
    t.row("TCP app → inet host, double NAT (floor: one veth, one NAT)", nat_n, nat_f,
          unit="Gbit/s", target="≥ 90% of floor",
          ok=bool(nat_n and nat_f and nat_n.median >= 0.9 * nat_f.median))
    t.row("… vs the same double NAT built by hand (nirunner's rulesets, no supervisor)", nat_n,
          _stat(p.get("nat by hand", [])), unit="Gbit/s")
    pm_n = _stat(p.get("portmap nirunner", []))
    t.row("TCP inet host → app through a port map (floor: one DNAT)",
          pm_n, _stat(p.get("portmap floor", [])), unit="Gbit/s")
    t.row("… vs the same port map path built by hand (two DNATs)", pm_n,
          _stat(p.get("portmap by hand", [])), unit="Gbit/s")

    def vpn_note(key: str) -> str:
        notes = []
        if key in tp.vpn_throttled:
            notes.append(f"task throttled {100 * tp.vpn_throttled[key]:.0f}% of the time")
        if tp.vpn_failed.get(key):
            notes.append(f"{len(tp.vpn_failed[key])} run(s) failed: "
                         f"{tp.vpn_failed[key][0][-80:]}")
        return f" ({'; '.join(notes)})" if notes else ""

    if p.get("vpn nirunner") or tp.vpn_failed:
        t.row("TCP app → site host through a VPN NI tunnel (libipsec, task CPU limit 0.5; "
              "DESIGN's hand-made floor: 640–685 Mbit/s)" + vpn_note("vpn nirunner"),
              _stat(p.get("vpn nirunner", [])), nat_f, unit="Mbit/s")
        t.row("… the same with the VPN NI's CPU limit raised to 2 (applied live)"
              + vpn_note("vpn nirunner cpu2"),
              _stat(p.get("vpn nirunner cpu2", [])), nat_f, unit="Mbit/s")
        t.row("VPN NI: apply → TCP through the tunnel answered", _stat(tp.vpn_up))
    if tp.vpn:
        t.text("TCP through a VPN NI tunnel (libipsec)", tp.vpn)


# -- the other tables ---------------------------------------------------------------


def _rows_appedge(t: Table, h: appedge.Handmade | None,
                  sup: appedge.InSupervisor | None) -> None:
    if h is not None and h.throughput:
        none = _stat(h.throughput[appedge.NONE])
        for setup in (appedge.EDGE_ACL, appedge.FLOW_LOG):
            ratios = h.ratios(setup)
            med = sorted(ratios)[len(ratios) // 2]
            t.text(f"TCP app → inet, NI bridge + NAT by hand: {setup} (per-round ratio to "
                   f"none, {len(ratios)} rounds; none: {fmt(none, 'Gbit/s')})",
                   f"{med:.2f}x ({min(ratios):.2f}–{max(ratios):.2f})", "≥ 0.9x", med >= 0.9)
        for what, (share, achieved, recs) in h.collector.items():
            t.text(f"flow-log collector, standalone, {what}: CPU at {achieved:.0f} new flows/s "
                   f"({recs} records in the window)", f"{share * 100:.1f}% of a core")
    if sup is not None:
        t.text(f"flow log in the supervisor (one NI, its app at {sup.achieved:.0f} new "
               f"flows/s; {sup.records} records in {sup.window:g} s): supervisor CPU",
               f"{sup.cpu * 100:.1f}% of a core (idle: {sup.idle_cpu * 100:.1f}%)")


def _mib_median(xs: Sequence[float]) -> str:
    st = _stat(xs)
    return mib(st.median) if st else "n/a"


def _ms_median(xs: Sequence[float]) -> str:
    st = _stat(xs)
    return f"{st.median / MS:.1f} ms" if st else "n/a"


def _ms(st: Stat | None) -> str:
    return "n/a" if st is None else f"{st.median / MS:.0f} / {st.p95 / MS:.0f} ms"


def curve_table(curve: list[scale.Point]) -> list[str]:
    head = ["N", "all ready", "per NI", "marginal per NI", "apply call", "attach (median / "
            "p95, n)", "detach (median)", "delete all", "per-NI RSS-eq / PSS-eq",
            "MemFree lost per NI", "shims", "supervisor RSS"]
    rows: list[Row] = []
    prev: scale.Point | None = None
    for p in curve:
        up = p.up
        if up is None:
            continue
        att = _stat(p.attaches())
        det = _stat(p.detach)
        marg = _marginal(prev, p) if prev else None
        fp = p.footprint
        mem = (f"{_mib_median(fp.rss())} / {_mib_median(fp.pss())}" if fp and fp.units
               else "n/a")
        ready = statistics.median(p.totals())
        rows.append([str(p.n), seconds(ready) + (f" (median, n={len(p.totals())})" if p.more
                                                  else ""), f"{ready / p.n / MS:.0f} ms",
                     f"{marg / MS:.0f} ms" if marg else "", seconds(up.setup),
                     f"{_ms(att)} ({att.n})" if att else "n/a",
                     f"{det.median / MS:.0f} ms" if det else "n/a", seconds(p.delete), mem,
                     mib(p.free_drop / p.n) if p.free_drop and p.n >= scale.FREE_MIN_N else "n/a",
                     str(fp.monitors) if fp else "", mib(p.sup_rss)])
        prev = p
    return _lines(head, rows)


def groups_table(groups: dict[str, bringup.Run]) -> list[str]:
    head = ["G", "shims", "all ready", "per-NI RSS-eq", "per-NI PSS-eq", "shim RSS share",
            "shim PSS share"]
    rows = []
    for g, run in sorted(groups.items(), key=lambda kv: int(kv[0])):
        fp = run.footprint
        if fp is None or not fp.units:
            rows.append([g, "n/a", seconds(run.total), "", "", "", ""])
            continue
        rows.append([g, str(fp.monitors), seconds(run.total), _mib_median(fp.rss()),
                     _mib_median(fp.pss()), _mib_median(fp.monitor_rss),
                     _mib_median(fp.monitor_pss)])
    return _lines(head, rows)


def podman_intro(side: PodmanSide) -> str:
    return (f"Side by side with podman + netavark ({side.version}), the same shape: N "
            "networks with one container each, created and run until the container "
            "answers. podman: `network create` (distinct subnets 10.89.<i>.0/24: podman "
            "refuses a second network with a subnet in use; DNS on, aardvark-dns) and "
            "`run -d` of busybox httpd with `-p <port>:80`, one after the other, in a lab "
            "netns; answering = a TCP connection from the wan router through the port map "
            "answered by httpd. nirunner: N NIs (all the same subnet 10.1.0.0/24) through "
            "the API with one app attached each; answering = DHCP offer, lease and a TCP "
            "connection through the NAT to the inet host answered. Memory per network: "
            "podman: the container's cgroup + its conmon + a share of aardvark-dns; "
            "nirunner: the task's cgroup + its shim's share.")


def podman_table(side: PodmanSide) -> list[str]:
    head = ["measurement", "nirunner", "podman + netavark", "nirunner/podman", "target",
            "met"]
    rows: list[Row] = []

    def row(what: str, a: Stat | None, p: Stat | None, unit: str = "s",
            target: bool = False) -> None:
        ok = a.median <= T_PODMAN * p.median if a and p else None
        rows.append([what, fmt(a, unit), fmt(p, unit), ratio(a, p),
                     f"≤ {T_PODMAN}x" if target else "", _met(ok) if target else ""])

    for n in sorted({int(k.split()[1]) for k in side.runs}):
        a, p = side.runs.get(f"nirunner {n}", []), side.runs.get(f"podman {n}", [])
        row(f"{n} network(s): create + run → all answering", _runs(a), _runs(p), target=True)
        row("… of which the API call / podman script returned", _runs(a, "setup"),
            _runs(p, "setup"))
        row("… nirunner: the NI's DHCP offer seen by its app (last of N)",
            _runs(a, "last_offer"), None)
        row(f"delete of the {n} network(s) (API / `podman rm -f` + `network rm`)",
            _stat(side.delete.get(f"nirunner {n}", [])),
            _stat(side.delete.get(f"podman {n}", [])))
    a_fp, p_fp = _footprints(side)
    if a_fp and p_fp:
        row(f"memory per network, RSS-equivalent ({a_fp.units} networks)", _stat(a_fp.rss()),
            _stat(p_fp.rss()), "MiB", target=True)
        row("… PSS-equivalent", _stat(a_fp.pss()), _stat(p_fp.pss()), "MiB")
        row("… the container's (task's) cgroup", _stat(a_fp.cgroup), _stat(p_fp.cgroup), "MiB")
        row("… its monitor: shim (nirunner) / conmon (podman), RSS share",
            _stat(a_fp.monitor_rss), _stat(p_fp.monitor_rss), "MiB")
        row("… its monitor, PSS share", _stat(a_fp.monitor_pss), _stat(p_fp.monitor_pss),
            "MiB")
        rows.append(["… aardvark-dns share (podman)", "", mib(p_fp.daemon_rss) + " RSS / "
                     + mib(p_fp.daemon_pss) + " PSS", "", "", ""])
    return _lines(head, rows)


def cli_table(cli: Cli) -> list[str]:
    head = ["command", "`nirunner ...` end to end", "the call in-process", "the CLI's cost",
            "target", "met"]
    rows = []
    for label, c in cli.cmds.items():
        cost = cli.cost(label)
        rows.append([f"`{label}`", fmt(_stat(c["cli"])), fmt(_stat(c["api"])),
                     f"+{seconds(cost)}", f"≤ {T_CLI / MS:.0f} ms", _met(cost <= T_CLI)])
    out = _lines(head, rows)
    if cli.imports:
        out += ["", f"Start-up: `python -c pass` {_ms(_stat(cli.python_start))}; "
                "`python -X importtime -c 'import runner.cli.main'` (cumulative, median of "
                f"{len(cli.python_start)}):", ""]
        rows = [[k, _ms_median(v)] for k, v in cli.imports.items() if max(v) > 0]
        out += _lines(["import", "time"], rows)
    return out


def steps_table(st: dict[str, Any], sc: scale.Scale | None) -> list[str]:
    cols = [(f"apply {k} NI{'s' if k != '1' else ''}", st[k]["steps"], st[k]["apply"])
            for k in st]
    k = max(st, key=int)
    cols.append((f"delete {k} NIs", st[k]["delete_steps"], st[k]["delete"]))
    if sc is not None and sc.reconcile:
        rounds = len(sc.reconcile)
        cols.append((f"reconcile, {sc.n} NIs, per pass",
                     {s: {"ms": v["ms"] / rounds, "calls": v["calls"] / rounds}
                      for s, v in sc.reconcile_steps.items()},
                     sum(sc.reconcile) / rounds))
    names: list[str] = []
    for _, s, _ in cols:
        names += [x for x in s if x not in names]
    lines = ["| step | " + " | ".join(c[0] for c in cols) + " |", "|" + "---|" * (len(cols) + 1),
             "| **wall time** | " + " | ".join(f"**{c[2] * 1000:.0f} ms**" for c in cols) + " |"]
    for nm in names:
        cells = []
        for _, s, _ in cols:
            v = s.get(nm)
            cells.append(f"{v['ms']:.1f} ms ({v['calls']:g}x)" if v else "")
        lines.append(f"| {nm} | " + " | ".join(cells) + " |")
    return lines
