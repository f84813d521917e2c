"""A Supervisor object in this process, its steps timed: where apply and reconcile spend.

Run inside the lab's device netns while the daemon is stopped (both would own
the same state):

    nsenter --net=/run/netns/<lab>-dev python -m bench.inproc --config FILE \\
        reconcile --rounds 5 [--cprofile OUT]
    ... apply FILE.yaml [--delete]

Prints one JSON object: the wall time of each round and, per step, how often it
ran and its total time (steps nest: an NI's nft apply is inside ensure_ni).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from typing import Any


class Timers:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)

    def wrap(self, obj: Any, attr: str, name: str) -> None:
        fn = getattr(obj, attr)

        @functools.wraps(fn)
        def timed(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                with self.lock:
                    self.total[name] += time.perf_counter() - t
                    self.count[name] += 1

        setattr(obj, attr, timed)

    def reset(self) -> None:
        self.total.clear()
        self.count.clear()

    def report(self) -> dict[str, dict[str, float]]:
        return {k: {"ms": round(self.total[k] * 1000, 2), "calls": self.count[k]}
                for k in sorted(self.total, key=lambda k: -self.total[k])}


def instrument(t: Timers) -> None:
    import pyroute2

    from runner import configurators
    from runner.containerd import tasks
    from runner.drivers import files, links, nft, routes
    from runner.drivers import netns as ns
    from runner.reconcile import engine
    from runner.supervisor import core, store

    t.wrap(subprocess, "Popen", "subprocess.Popen (all spawns)")
    t.wrap(pyroute2.IPRoute, "__init__", "pyroute2 IPRoute() socket")
    t.wrap(ns, "run_in", "netns.run_in (a thread enters the netns)")
    t.wrap(core.Supervisor, "_plan", "Supervisor._plan (facts+plan)")
    t.wrap(core.live_facts, "read", "facts.read (netlink dumps)")
    t.wrap(core.site, "build", "site.build (pure plan)")
    t.wrap(core, "build", "items.build (pure items)")
    t.wrap(core, "diff", "diff (pure)")
    t.wrap(engine.Engine, "read", "Engine.read (read back)")
    t.wrap(engine.Engine, "run", "Engine.run (ops)")
    t.wrap(store.Store, "save", "Store.save")
    t.wrap(ns, "ensure", "netns.ensure (ip netns add)")
    t.wrap(links, "add_veth", "links.add_veth")
    t.wrap(links, "names", "links.names (dump)")
    t.wrap(routes, "sync", "routes.sync")
    t.wrap(nft, "apply_table", "nft.apply_table (nft -f)")
    t.wrap(files, "write_atomic", "files.write_atomic")
    for cls in (configurators.NetnsConf, configurators.SysctlsConf, configurators.VethConf,
                configurators.BridgeConf, configurators.RoutesConf, configurators.RuleConf,
                configurators.LocalRuleConf, configurators.NftConf,
                configurators.ConfigFilesConf, configurators.TaskConf,
                configurators.PlugConf, configurators.StateDirConf):
        for method in ("create", "modify", "delete", "read"):
            t.wrap(cls, method, f"{cls.__name__}.{method}")
    for fn in ("get_container", "get_task", "create_container", "start_task",
               "list_containers", "list_tasks", "remove_container", "stop_task"):
        t.wrap(tasks, fn, f"containerd {fn}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.inproc")
    ap.add_argument("--config", required=True)
    sub = ap.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("reconcile")
    r.add_argument("--rounds", type=int, default=5)
    r.add_argument("--cprofile")
    a = sub.add_parser("apply")
    a.add_argument("file")
    a.add_argument("--delete", action="store_true", help="then delete those NIs, timed")
    a.add_argument("--cprofile")
    args = ap.parse_args(argv)

    from runner.containerd.client import Client
    from runner.model.config import load_config
    from runner.supervisor.core import Document, Supervisor

    config = load_config(args.config)
    timers = Timers()
    instrument(timers)
    out: dict[str, Any] = {}
    with Client(config.containerd_address, config.containerd_namespace) as client:
        sup = Supervisor(config, client)
        prof = cProfile.Profile() if args.cprofile else None
        if args.mode == "reconcile":
            sup.reconcile()  # warm: imports, first netlink sockets
            timers.reset()
            rounds, cpu = [], []
            for _ in range(args.rounds):
                t, c = time.perf_counter(), time.process_time()
                if prof:
                    prof.enable()
                sup.reconcile()
                if prof:
                    prof.disable()
                rounds.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)  # all threads of this process
            out = {"rounds": rounds, "cpu": cpu, "nis": len(sup.desired.nis),
                   "steps": timers.report(), "per": args.rounds}
        else:
            with open(args.file) as f:
                doc = Document(args.file, f.read())
            t = time.perf_counter()
            if prof:
                prof.enable()
            report = sup.apply([doc])
            if prof:
                prof.disable()
            out = {"apply": time.perf_counter() - t, "nis": len(report.results),
                   "actions": sorted({r.action for r in report.results}),
                   "steps": timers.report()}
            if args.delete:
                timers.reset()
                t = time.perf_counter()
                sup.delete([r.name for r in report.results])
                out["delete"] = time.perf_counter() - t
                out["delete_steps"] = timers.report()
        if prof and args.cprofile:
            prof.dump_stats(args.cprofile)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
