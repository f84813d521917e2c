"""`make bench`: nirunner's bring-up, scale, footprint, restart, change latency and
throughput, measured side by side with a hand-made floor and with CNI in the
same run, printed as one Markdown table.

    python -m bench.run [--quick] [--json FILE] [--out FILE] [--profile DIR]
    python -m bench.run --clean        # remove a lab left by a killed run
    python -m bench.run --report FILE  # the table of an earlier --json FILE again

Root. Builds its own lab (namespaces under the prefix `nrbench`, a private
containerd under /run/nrbench) and removes all of it at the end, on failure and
on Ctrl-C too. Progress goes to stderr, the table to stdout.

--quick: fewer repetitions and smaller N (under 2 minutes).
--profile DIR: also record the supervisor with py-spy (DIR/py-spy-*.txt and a
  summary) and cProfile one in-process reconcile pass (DIR/reconcile.prof);
  timings of a profiled run are a little slower, do not publish them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import bringup, change, scale, switch, throughput
from bench.lab import BenchLab, leftovers
from bench.stats import Stat, fmt, mib, ratio

PREFIX = "nrbench"

QUICK = dict(reps1=3, cli_reps=1, n_many=10, reps_many=1, n_scale=20, restarts=1, noops=1,
             idle=3.0, rounds=2, change=3, iperf_s=1.0, iperf_reps=1)
FULL = dict(reps1=10, cli_reps=5, n_many=50, reps_many=3, n_scale=100, restarts=3, noops=3,
            idle=65.0, rounds=5, change=10, iperf_s=5.0, iperf_reps=3)

_t_start = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - _t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)


def machine() -> dict[str, str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    osr = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        k, _, v = line.partition("=")
        osr[k] = v.strip('"')
    ctrd = subprocess.run(["containerd", "--version"], capture_output=True, text=True)
    cg = "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1"
    return {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "nproc": str(os.cpu_count()), "kernel": platform.release(), "cpu": cpu,
            "os": osr.get("PRETTY_NAME", "?"), "cgroup": cg,
            "containerd": (ctrd.stdout.split() or ["?", "?", "?"])[2],
            "mem": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB",
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def _check_tools(profile: bool) -> None:
    missing = [t for t in ("iperf3", "busybox", "ctr", "nft", "nsenter")
               if shutil.which(t) is None]
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("containernetworking-plugins (/usr/lib/cni)")
    if profile:
        from bench.profile import py_spy

        try:
            py_spy()
        except RuntimeError as e:
            missing.append(str(e))
    if missing:
        sys.exit(f"bench: missing {', '.join(missing)} (`make bench` installs them)")


# -- the measurements -----------------------------------------------------------------


def measure(blab: BenchLab, cfg: dict[str, Any], profile_dir: Path | None) -> dict[str, Any]:
    """Each section on its own: one that fails is reported as failed, the others go on."""
    r: dict[str, Any] = {"errors": {}}

    def section(key: str, fn: Any) -> None:
        try:
            r[key] = fn()
        except KeyboardInterrupt:
            raise
        except Exception as e:
            say(f"FAILED: {key}: {type(e).__name__}: {e}")
            r["errors"][key] = f"{type(e).__name__}: {e}"
            import traceback

            traceback.print_exc(file=sys.stderr)
            _recover(blab)

    say("warm-up: one NI of each kind")
    section("warmup", lambda: [bringup.nirunner(blab, 1, "w"),
                               bringup.manual_run(blab, "floor", 1, "w"),
                               bringup.manual_run(blab, "cni", 1, "w")])

    def one() -> dict[str, list[bringup.Run]]:
        runs: dict[str, list[bringup.Run]] = {"nirunner": [], "floor": [], "cni": []}
        for k in range(cfg["reps1"]):
            say(f"bring-up, 1 NI, round {k + 1}/{cfg['reps1']}")
            runs["nirunner"].append(bringup.nirunner(blab, 1, f"o{k}"))
            runs["floor"].append(bringup.manual_run(blab, "floor", 1, f"o{k}"))
            runs["cni"].append(bringup.manual_run(blab, "cni", 1, f"o{k}"))
        runs["nirunner-cli"] = []
        for k in range(cfg["cli_reps"]):
            say(f"bring-up, 1 NI through the CLI, round {k + 1}/{cfg['cli_reps']}")
            runs["nirunner-cli"].append(bringup.nirunner(blab, 1, f"c{k}", via_cli=True))
        return runs

    section("one", one)
    n = cfg["n_many"]

    def many() -> dict[str, list[bringup.Run]]:
        runs: dict[str, list[bringup.Run]] = {"nirunner": [], "floor": [], "cni": []}
        for k in range(cfg["reps_many"]):
            for method in runs:
                say(f"bring-up, {n} NIs at once, {method}, round {k + 1}/{cfg['reps_many']}")
                runs[method].append(bringup.nirunner(blab, n, f"m{k}") if method == "nirunner"
                                    else bringup.manual_run(blab, method, n, f"m{k}"))
        return runs

    section("many", many)
    say(f"where the time goes: a Supervisor in-process, apply of 1 and of {n} NIs, "
        "timed per step")
    section("steps", lambda: steps(blab, n))
    say(f"scale: {cfg['n_scale']} NIs, footprint, idle, no-op apply, reconcile, restarts")
    section("scale", lambda: scale.run(
        blab, cfg["n_scale"], cfg["restarts"], cfg["noops"], cfg["idle"], cfg["rounds"],
        str(profile_dir / "reconcile.prof") if profile_dir else None))
    say(f"change latency: {cfg['change']} port maps added")
    section("change", lambda: change.run(blab, cfg["change"]))
    say(f"throughput: iperf3 {cfg['iperf_s']:g}s x {cfg['iperf_reps']} per path")
    section("throughput", lambda: throughput.run(blab, cfg["iperf_s"], cfg["iperf_reps"]))
    say(f"switch NI throughput: iperf3 {cfg['iperf_s']:g}s x {cfg['iperf_reps']} per path")
    section("switch", lambda: switch.run(blab, cfg["iperf_s"], cfg["iperf_reps"]))
    return r


def _recover(blab: BenchLab) -> None:
    """After a failed section: a running supervisor, and none of the bench's NIs left."""
    from runner.api.client import ApiClient

    try:
        if blab.lab.supervisor is None or blab.lab.supervisor.poll() is not None:
            blab.start_supervisor()
        with ApiClient(blab.lab.socket) as api:
            names = [s["name"] for s in api.status([])]
            if names:
                api.delete(names)
    except Exception as e:  # the next section will tell
        say(f"recovery after the failure: {e}")


def steps(blab: BenchLab, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    blab.lab.stop_supervisor()
    try:
        for count in (1, n):
            f = blab.base / f"steps-{count}.yaml"
            f.write_text("---\n".join(bringup.manifest(bringup.ni_name(i),
                                                       bringup.PORT_BASE + i)
                                      for i in range(count)))
            out[str(count)] = scale.inproc(blab, "apply", str(f), "--delete")
    finally:
        blab.start_supervisor()
    return out


# -- the report ---------------------------------------------------------------------------


def _stat(xs: Sequence[float]) -> Stat | None:
    return Stat.of(xs)


def _runs(runs: list[bringup.Run], what: str = "total") -> Stat | None:
    if what == "per_ni":
        return _stat([x.total / x.n for x in runs])
    if what == "plug_each":
        return _stat([(x.plugged - x.setup) / x.n for x in runs])
    if what == "offer":
        return _stat([x.offer[0] for x in runs])
    return _stat([getattr(x, what) for x in runs])


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def report(r: dict[str, Any], m: dict[str, str], cfg: dict[str, Any], quick: bool,
           wall: float) -> str:
    rows: list[list[str]] = []

    def row(what: str, a: Stat | None, f: Stat | None = None, c: Stat | None = None,
            unit: str = "s", target: str = "", ok: bool | None = None) -> None:
        """One line: values, ratios to floor and CNI, the target and whether it is met."""
        rows.append([what, fmt(a, unit), fmt(f, unit) if f else "", fmt(c, unit) if c else "",
                     ratio(a, f) if f else "", ratio(a, c) if c else "", target,
                     _met(ok) if target else ""])

    kinds = ("nirunner", "floor", "cni")
    for key, err in r.get("errors", {}).items():
        rows.append([f"section {key}: FAILED", err.replace("|", "/")[:300], "", "", "", "", "",
                     ""])

    def three(runs: dict[str, list[bringup.Run]], what: str = "total"
              ) -> tuple[Stat | None, Stat | None, Stat | None]:
        a, f, c = (_runs(runs[k], what) for k in kinds)
        return a, f, c

    if "one" in r:
        _rows_one(r["one"], row, three)
    if "many" in r:
        many, n = r["many"], cfg["n_many"]
        row(f"{n} NIs applied at once: all ready", *three(many))
        row(f"{n} NIs: per NI (total / {n})", *three(many, "per_ni"))
        row(f"{n} NIs: of which apply call / script returned", *three(many, "setup"))
        row(f"{n} NIs: plugging one app (nirunner: attach API; others: by hand)",
            *three(many, "plug_each"))
    if "scale" in r:
        _rows_scale(r["scale"], row, rows)
    if "change" in r:
        ch: change.Change = r["change"]
        row("port map added to a running NI → connection through it works",
            _stat(ch.nirunner), _stat(ch.floor))
        row("… of which the apply call", _stat(ch.nirunner_apply))
    if "throughput" in r:
        _rows_throughput(r["throughput"], row, rows)
    if "switch" in r:
        sw_n, sw_f = (_stat(r["switch"].paths.get(k, [])) for k in ("switch nirunner",
                                                                    "switch floor"))
        row("TCP switch NI app → segment host (floor: a macvlan of eth1 plugged straight in)",
            sw_n, sw_f, unit="Gbit/s", target="≥ 0.9x floor",
            ok=bool(sw_n and sw_f and sw_n.median >= 0.9 * sw_f.median))

    head = ["measurement", "nirunner", "floor", "CNI", "nirunner/floor", "nirunner/CNI",
            "target", "met"]
    out = [f"Measured {m['date']} on {m['os']}, kernel {m['kernel']}, {m['nproc']} cores "
           f"({m['cpu']}), {m['mem']}, cgroup {m['cgroup']}, containerd {m['containerd']}; "
           f"load average at start {m['load']}; `python -m bench.run"
           f"{' --quick' if quick else ''}` took {wall / 60:.1f} min. "
           "Values: median / p95 (n = samples).", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(x) + " |" for x in rows]
    if "steps" in r:
        out += ["", "Where the time goes (a Supervisor object in-process, each step timed; "
                "steps nest, times are totals over all calls):", ""]
        out += steps_table(r["steps"], r.get("scale"))
    return "\n".join(out) + "\n"


def _rows_one(one: dict[str, list[bringup.Run]], row: Any, three: Any) -> None:
    a, f, c = three(one)
    row("1 NI: apply → ready (task, DHCP answer, TCP through NAT)", a, f, c,
        target="≤ 1.5x floor, < CNI",
        ok=bool(a and f and c and a.median <= 1.5 * f.median and a.median < c.median))
    row("1 NI: of which apply call / script returned", *three(one, "setup"))
    row("1 NI: app plugged (nirunner: attach API; floor, CNI: netlink by hand)",
        *three(one, "plugged"))
    row("1 NI: DHCP offer seen", *three(one, "offer"))
    row("1 NI: `nirunner apply` CLI → ready (Python start-up included)",
        _runs(one["nirunner-cli"]), f, c)


def _rows_scale(sc: scale.Scale, row: Any, rows: list[list[str]]) -> None:
    N = sc.n
    up = sc.up
    assert up is not None
    row(f"{N} NIs: apply → all ready", _stat([up.total]), target="< 20 s",
        ok=up.total < 20 if N >= 100 else None)
    row(f"{N} NIs: of which apply call returned", _stat([up.setup]))
    row(f"{N} NIs: attach of one app (API), with {N} NIs applied",
        _stat([(up.plugged - up.setup) / N]))
    row(f"supervisor RSS with {N} NIs (VmRSS = {sc.sup_rss / 1e6:.1f} MB; peak "
        f"{mib(sc.sup_hwm)}, {sc.sup_threads} threads)", _stat([sc.sup_rss]), unit="MiB",
        target="< 80 MB", ok=sc.sup_rss < 80e6 if N >= 100 else None)
    per_ni = [u + s for u, s in zip(sc.ni_cgroup, sc.shim_rss, strict=False)]
    pn = _stat(per_ni)
    row("per-NI memory: task cgroup usage + its shim's RSS", pn, unit="MiB",
        target="< 20 MB", ok=pn.median < 20e6 if pn else None)
    row("… task cgroup usage (memory.usage_in_bytes, page cache included)",
        _stat(sc.ni_cgroup), unit="MiB")
    row("… task cgroup RSS (memory.stat total_rss)", _stat(sc.ni_cgroup_rss), unit="MiB")
    row("… shim RSS", _stat(sc.shim_rss), unit="MiB")
    row("… shim PSS (its shared pages split among the shims)", _stat(sc.shim_pss), unit="MiB")
    rc = _stat(sc.reconcile)
    row(f"idle reconcile pass, {N} NIs, nothing to do (in-process Supervisor.reconcile())",
        rc, target="< 50 ms", ok=rc.median < 0.05 if rc else None)
    row("… its CPU time (user + system, all threads)", _stat(sc.reconcile_cpu))
    row(f"no-op `apply` of {N} unchanged NIs (API)", _stat(sc.noop_apply))
    idle_pct = 100 * sc.idle_cpu / sc.idle_window if sc.idle_window else 0
    rows.append([f"supervisor CPU while idle ({sc.idle_window:.0f} s window; a full "
                 "resync every 60 s)", f"{sc.idle_cpu * 1000:.0f} ms CPU = {idle_pct:.2f}%",
                 "", "", "", "", "near zero", _met(idle_pct < 1)])
    row(f"`status` of {N} NIs (API)", _stat(sc.status_call))
    row(f"delete of {N} NIs (API)", _stat([sc.delete_all]))
    row(f"supervisor restart with {N} NIs → all adopted (API socket up)", _stat(sc.restart),
        target="no task restarted", ok=sc.restarted_tasks == 0)


def _rows_throughput(tp: throughput.Throughput, row: Any, rows: list[list[str]]) -> None:
    p = tp.paths
    nat_n, nat_f = _stat(p.get("nat nirunner", [])), _stat(p.get("nat floor", []))
    row("TCP app → inet host, double NAT (floor: one veth, one NAT)", nat_n, nat_f,
        unit="Gbit/s", target="≥ 90% of floor",
        ok=bool(nat_n and nat_f and nat_n.median >= 0.9 * nat_f.median))
    row("… vs the same double NAT built by hand (nirunner's rulesets, no supervisor)", nat_n,
        _stat(p.get("nat by hand", [])), unit="Gbit/s")
    pm_n = _stat(p.get("portmap nirunner", []))
    row("TCP inet host → app through a port map (floor: one DNAT)",
        pm_n, _stat(p.get("portmap floor", [])), unit="Gbit/s")
    row("… vs the same port map path built by hand (two DNATs)", pm_n,
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
        row("TCP app → site host through a VPN NI tunnel (libipsec, task CPU limit 0.5; "
            "DESIGN's hand-made floor: 640–685 Mbit/s)" + vpn_note("vpn nirunner"),
            _stat(p.get("vpn nirunner", [])), nat_f, unit="Mbit/s")
        row("… the same with the VPN NI's CPU limit raised to 2 (applied live)"
            + vpn_note("vpn nirunner cpu2"),
            _stat(p.get("vpn nirunner cpu2", [])), nat_f, unit="Mbit/s")
        row("VPN NI: apply → TCP through the tunnel answered", _stat(tp.vpn_up))
    if tp.vpn:
        rows.append(["TCP through a VPN NI tunnel (libipsec)", tp.vpn.replace("|", "/"),
                     "", "", "", "", "", ""])


def steps_table(st: dict[str, Any], sc: scale.Scale | None) -> list[str]:
    cols = [(f"apply {k} NI{'s' if k != '1' else ''}", st[k]["steps"], st[k]["apply"])
            for k in st]
    k = max(st, key=int)
    cols.append((f"delete {k} NIs", st[k]["delete_steps"], st[k]["delete"]))
    if sc is None or not sc.reconcile:
        return _steps_lines(cols)
    rounds = len(sc.reconcile)
    cols.append((f"reconcile, {sc.n} NIs, per pass",
                 {s: {"ms": v["ms"] / rounds, "calls": v["calls"] / rounds}
                  for s, v in sc.reconcile_steps.items()},
                 sum(sc.reconcile) / rounds))
    return _steps_lines(cols)


def _steps_lines(cols: list[tuple[str, dict[str, Any], float]]) -> list[str]:
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


# -- main ------------------------------------------------------------------------------------


def _load(r: dict[str, Any]) -> dict[str, Any]:
    """The results of a --json file as the dataclasses report() takes."""
    def runs(d: dict[str, list[dict]]) -> dict[str, list[bringup.Run]]:
        return {k: [bringup.Run(**x) for x in v] for k, v in d.items()}

    out: dict[str, Any] = {"errors": r.get("errors", {})}
    for key in ("one", "many"):
        if key in r:
            out[key] = runs(r[key])
    if "steps" in r:
        out["steps"] = r["steps"]
    if "scale" in r:
        sc = dict(r["scale"])
        sc["up"] = bringup.Run(**sc["up"]) if sc.get("up") else None
        out["scale"] = scale.Scale(**sc)
    if "change" in r:
        out["change"] = change.Change(**r["change"])
    if "throughput" in r:
        out["throughput"] = throughput.Throughput(**r["throughput"])
    if "switch" in r:
        out["switch"] = switch.SwitchThroughput(**r["switch"])
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds, smaller N (< 2 min)")
    ap.add_argument("--json", help="write all raw results to this file")
    ap.add_argument("--out", help="also write the Markdown table to this file")
    ap.add_argument("--profile", help="record the supervisor with py-spy into this dir")
    ap.add_argument("--clean", action="store_true", help="remove a lab left by a killed run")
    ap.add_argument("--report", metavar="JSON", help="print the table of an earlier --json")
    args = ap.parse_args(argv)
    if args.report:
        d = json.loads(Path(args.report).read_text())
        print(report(_load(d["results"]), d["machine"], d["config"], d["quick"],
                     d.get("wall", 0.0)), end="")
        return 0
    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces, containerd, runc)")
    if args.clean or Path("/run", PREFIX).exists() or leftovers(PREFIX):
        say("removing a lab left behind by an earlier run")
        BenchLab(PREFIX).teardown()
        if args.clean:
            left = leftovers(PREFIX)
            print("clean" if not left else f"left: {left}")
            return 0 if not left else 1
    _check_tools(bool(args.profile))
    signal.signal(signal.SIGTERM, _interrupt)
    cfg = QUICK if args.quick else FULL
    from runner.image.build import build_image

    say("building (or taking from the cache) the NI image")
    archive = str(build_image().archive)
    m = machine()
    blab = BenchLab(PREFIX, archive)
    profile_dir = Path(args.profile).resolve() if args.profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
        blab.profile_dir = profile_dir
    t0 = time.monotonic()
    try:
        say("building the lab: device, wan, inet, fdev, cdev; private containerd; supervisor")
        blab.build()
        blab.start_supervisor()
        results = measure(blab, cfg, profile_dir)
    except KeyboardInterrupt:
        say("interrupted; removing the lab")
        return 130
    finally:
        blab.teardown()
        left = leftovers(PREFIX)
        if left:
            say(f"WARNING: left behind: {left}")
        else:
            say("lab removed, nothing left behind")
    if profile_dir:
        from bench.profile import summarize

        raw = "".join(p.read_text() for p in sorted(profile_dir.glob("py-spy-*.txt")))
        (profile_dir / "py-spy-summary.txt").write_text(summarize(raw))
        say(f"profile: {profile_dir}/py-spy-summary.txt, {profile_dir}/reconcile.prof")
    wall = time.monotonic() - t0
    table = report(results, m, cfg, args.quick, wall)
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": m, "quick": args.quick, "config": cfg, "wall": wall,
             "results": results},
            default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o),
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
