"""`make bench`: nirunner's bring-up, scale curve, footprint, restart, CLI, change
latency and throughput, measured side by side with hand-made floors (sequential
and parallel), with CNI and with podman + netavark in the same run, printed as
Markdown tables (bench/report.py).

    python -m bench.run [--quick] [--json FILE] [--out FILE] [--profile DIR]
    python -m bench.run --clean        # remove a lab left by a killed run
    python -m bench.run --report FILE  # the table of an earlier --json FILE again

Root. Builds its own lab (namespaces under the prefix `nrbench`, a private
containerd under /run/nrbench) and removes all of it at the end, on failure and
on Ctrl-C too. Progress goes to stderr, the table to stdout.

--quick: fewer repetitions, smaller N and a short idle window (under 2 minutes).
--profile DIR: also record the supervisor with py-spy (DIR/py-spy-*.txt and a
  summary) and cProfile one in-process reconcile pass (DIR/reconcile.prof);
  timings of a profiled run are a little slower, do not publish them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
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

from bench import (
    appedge,
    bringup,
    change,
    cli,
    memory,
    podman,
    scale,
    switch,
    throughput,
)
from bench.lab import BenchLab, leftovers
from bench.report import report

PREFIX = "nrbench"

# reps1: rounds of 1 NI; cli_reps: of it through the CLI; n_many NIs at once, reps_many
# times; curve: the scale curve's N (those up to 10 brought up curve_reps times: one round
# of a few NIs is too short to set the linearity ratio's base), details (idle, status,
# restarts, the CLI's cost: cmd_reps rounds) at n_scale; groups: shim group sizes by hand
# with groups_n NIs;
# podman: network counts side by side, podman_reps rounds (larger counts half of them)
QUICK = dict(reps1=3, cli_reps=1, n_many=10, reps_many=1, curve=(1, 10, 20), curve_reps=3,
             n_scale=20,
             restarts=1, noops=1, idle=3.0, rounds=2, cmd_reps=1, groups_n=10,
             groups=(1, 10), podman=(1, 10), podman_reps=2, change=3, iperf_s=1.0,
             iperf_reps=1, edge_reps=1, flows=1000, flow_window=2.0)
FULL = dict(reps1=10, cli_reps=5, n_many=100, reps_many=3, curve=(1, 10, 50, 100, 250),
            curve_reps=5,
            n_scale=100, restarts=3, noops=3, idle=300.0, rounds=5, cmd_reps=5, groups_n=20,
            groups=(1, 5, 10, 20), podman=(1, 20), podman_reps=5, change=10, iperf_s=5.0,
            iperf_reps=3, edge_reps=5, flows=1000, flow_window=10.0)

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
    missing = [t for t in ("iperf3", "busybox", "ctr", "nft", "nsenter", "unshare", "podman",
                           "iptables") if shutil.which(t) is None]
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("containernetworking-plugins (/usr/lib/cni)")
    missing += [f"{p.name} ({p})" for p in (Path("/usr/lib/podman/netavark"),
                                            Path("/usr/lib/podman/aardvark-dns"))
                if not p.exists()]
    if profile:
        from bench.profile import py_spy

        try:
            py_spy()
        except RuntimeError as e:
            missing.append(str(e))
    if missing:
        sys.exit(f"bench: missing {', '.join(missing)} (`make bench` installs them)")


# -- the measurements -----------------------------------------------------------------


SECTIONS = ("one", "many", "steps", "curve", "groups", "podman", "change", "throughput",
            "appedge", "appedge_sup", "switch")


def measure(blab: BenchLab, cfg: dict[str, Any], profile_dir: Path | None,
            only: Sequence[str] = SECTIONS) -> dict[str, Any]:
    """Each section on its own: one that fails is reported as failed, the others go on.
    `only`: these sections (the warm-up always runs)."""
    r: dict[str, Any] = {"errors": {}}

    def section(key: str, fn: Any) -> Any:
        try:
            r[key] = fn()
            return r[key]
        except KeyboardInterrupt:
            raise
        except Exception as e:
            say(f"FAILED: {key}: {type(e).__name__}: {e}")
            r["errors"][key] = f"{type(e).__name__}: {e}"
            import traceback

            traceback.print_exc(file=sys.stderr)
            _recover(blab)
            return None

    say("warm-up: one NI of each kind")
    section("warmup", lambda: [bringup.nirunner(blab, 1, "w"),
                               bringup.manual_run(blab, "floor", 1, "w"),
                               bringup.manual_run(blab, "cni", 1, "w")])
    del r["warmup"]

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

    n = cfg["n_many"]

    def many() -> dict[str, list[bringup.Run]]:
        runs: dict[str, list[bringup.Run]] = {"nirunner": [], "floor": [], "floor-par": [],
                                              "cni": []}
        for k in range(cfg["reps_many"]):
            for method in runs:
                say(f"bring-up, {n} NIs at once, {method}, round {k + 1}/{cfg['reps_many']}")
                runs[method].append(bringup.nirunner(blab, n, f"m{k}") if method == "nirunner"
                                    else bringup.manual_run(blab, method, n, f"m{k}"))
        return runs

    def at_n(names: list[str]) -> None:
        """Details at n_scale NIs, while the curve's point has them up."""
        section("scale", lambda: scale.details(
            blab, names, cfg["restarts"], cfg["noops"], cfg["idle"], cfg["rounds"],
            str(profile_dir / "reconcile.prof") if profile_dir else None))
        say(f"the CLI's cost with {len(names)} NIs: {cfg['cmd_reps']} round(s)")
        section("cli", lambda: cli.run(blab, names, cfg["cmd_reps"]))

    def curve() -> list[scale.Point]:
        # the supervisor may be fresh (steps restarts it): its first apply reads facts
        # and connects cold, which is not the cost of the curve's first point
        bringup.nirunner(blab, 1, "cw")
        points = []
        for count in cfg["curve"]:
            detail = count == cfg["n_scale"]
            say(f"scale curve: {count} NIs at once" + (
                f"; then idle {cfg['idle']:g} s, no-op apply, status, reconcile, restarts, "
                "the CLI's cost" if detail else ""))
            p = section(f"curve-{count}", lambda c=count, d=detail: scale.point(
                blab, c, at_n if d else None))
            if p is not None:
                pt = r.pop(f"curve-{count}")
                for k in range(1, cfg["curve_reps"] if count <= 10 else 1):
                    say(f"scale curve: {count} NIs at once, round {k + 1}/{cfg['curve_reps']}")
                    pt.more.append(bringup.nirunner(blab, count, f"c{k}").total)
                points.append(pt)
        return points

    def groups() -> dict[str, bringup.Run]:
        return {str(g): bringup.manual_run(blab, "floor-par", cfg["groups_n"], f"g{g}",
                                           group_size=g if g > 1 else 0, footprint=True)
                for g in cfg["groups"]}

    plan: list[tuple[str, str, Any]] = [
        ("one", f"bring-up of 1 NI, {cfg['reps1']} rounds", one),
        ("many", f"bring-up of {n} NIs at once, {cfg['reps_many']} round(s)", many),
        ("steps", f"where the time goes: a Supervisor in-process, apply of 1 and of {n} "
                  "NIs, timed per step", lambda: steps(blab, n)),
        ("curve", f"scale curve: {cfg['curve']} NIs", curve),
        ("groups", f"shared shims by hand: {cfg['groups_n']} NIs, groups of "
                   f"{cfg['groups']}", groups),
        ("podman", f"podman + netavark side by side: {cfg['podman']} networks",
         lambda: podman.run(blab, cfg["podman"], cfg["podman_reps"], say)),
        ("change", f"change latency: {cfg['change']} port maps added",
         lambda: change.run(blab, cfg["change"])),
        ("throughput", f"throughput: iperf3 {cfg['iperf_s']:g}s x {cfg['iperf_reps']} per "
                       "path", lambda: throughput.run(blab, cfg["iperf_s"], cfg["iperf_reps"])),
        ("appedge", f"app edge: throughput with anti-spoofing + 50 ACL rules and with the flow "
                    f"log (hand-made NI, {cfg['edge_reps']} rotated rounds); the flow log at "
                    f"{cfg['flows']} new flows/s, standalone",
         lambda: appedge.handmade(cfg["iperf_s"], cfg["edge_reps"], cfg["flows"],
                                  cfg["flow_window"], f"{blab.prefix}e")),
        ("appedge_sup", f"app edge: the flow log in the supervisor at {cfg['flows']} new "
                        "flows/s",
         lambda: appedge.in_supervisor(blab, cfg["flows"], cfg["flow_window"])),
        ("switch", f"switch NI throughput: iperf3 {cfg['iperf_s']:g}s x {cfg['iperf_reps']} "
                   "per path", lambda: switch.run(blab, cfg["iperf_s"], cfg["iperf_reps"])),
    ]
    for key, what, fn in plan:
        if key in only:
            say(what)
            section(key, fn)
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


# -- main ------------------------------------------------------------------------------------


def _run(d: dict[str, Any]) -> bringup.Run:
    fp = d.get("footprint")
    return bringup.Run(**{**d, "footprint": memory.Footprint(**fp) if fp else None})


def _load(r: dict[str, Any]) -> dict[str, Any]:
    """The results of a --json file as the dataclasses report() takes."""
    def runs(d: dict[str, list[dict]]) -> dict[str, list[bringup.Run]]:
        return {k: [_run(x) for x in v] for k, v in d.items()}

    out: dict[str, Any] = {"errors": r.get("errors", {})}
    for key in ("one", "many"):
        if key in r:
            out[key] = runs(r[key])
    if "steps" in r:
        out["steps"] = r["steps"]
    if "curve" in r:
        out["curve"] = [scale.Point(**{
            **p, "up": _run(p["up"]) if p.get("up") else None,
            "footprint": memory.Footprint(**p["footprint"]) if p.get("footprint") else None})
            for p in r["curve"]]
    if "scale" in r:
        out["scale"] = scale.Scale(**r["scale"])
    if "cli" in r:
        out["cli"] = cli.Cli(**r["cli"])
    if "groups" in r:
        out["groups"] = {g: _run(x) for g, x in r["groups"].items()}
    if "podman" in r:
        pm = dict(r["podman"])
        pm["runs"] = runs(pm["runs"])
        out["podman"] = podman.PodmanSide(**pm)
    if "change" in r:
        out["change"] = change.Change(**r["change"])
    if "throughput" in r:
        out["throughput"] = throughput.Throughput(**r["throughput"])
    if "appedge" in r:
        h = r["appedge"]
        out["appedge"] = appedge.Handmade(h["throughput"], {
            k: (v[0], v[1], v[2]) for k, v in h["collector"].items()})
    if "appedge_sup" in r:
        out["appedge_sup"] = appedge.InSupervisor(**r["appedge_sup"])
    if "switch" in r:
        out["switch"] = switch.SwitchThroughput(**r["switch"])
    return out


def _lock(path: Path) -> int:
    """One benchmark at a time: its lab's names (the prefix, the NIs' netns nr-bench-*)
    are machine-wide, and a run removes what an earlier one left, which must never be
    the lab of a run still going. The lock file stays; the lock goes with the process."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        sys.exit(f"bench: another benchmark is running (pid {holder}, lock {path}); "
                 "wait for it, or stop it: its lab goes at its end")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


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
    ap.add_argument("--only", metavar="SECTIONS", help="comma-separated, of: "
                    + ", ".join(SECTIONS) + " (curve includes idle, status, restarts and "
                    "the CLI's cost at its N)")
    args = ap.parse_args(argv)
    if args.report:
        d = json.loads(Path(args.report).read_text())
        print(report(_load(d["results"]), d["machine"], d["config"], d["quick"],
                     d.get("wall", 0.0)), end="")
        return 0
    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces, containerd, runc)")
    _lock(Path("/run", f"{PREFIX}.lock"))  # held until this process exits
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
    only = args.only.split(",") if args.only else list(SECTIONS)
    if set(only) - set(SECTIONS):
        sys.exit(f"bench: --only: unknown {', '.join(sorted(set(only) - set(SECTIONS)))}")
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
        results = measure(blab, cfg, profile_dir, only)
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
    m["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    table = report(results, m, cfg, args.quick, wall)
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    if args.json:
        Path(args.json).write_text(dumps(
            {"machine": m, "quick": args.quick, "config": cfg, "wall": wall,
             "results": results}))
    return 0


def dumps(payload: dict[str, Any]) -> str:
    """The --json file: the results' dataclasses as objects (_load reads them back)."""
    return json.dumps(payload, indent=1, default=lambda o: asdict(o)
                      if hasattr(o, "__dataclass_fields__") else str(o))


if __name__ == "__main__":
    sys.exit(main())
