"""The benchmark's tables from results, also after a round trip through --json: each
target row compares the right numbers and says whether the target is met."""

from __future__ import annotations

import json

from bench import run as bench_run
from bench.bringup import Run
from bench.cli import Cli
from bench.memory import Footprint
from bench.podman import PodmanSide
from bench.report import report
from bench.scale import Point, Scale

MIB = 1 << 20
MACHINE = {"date": "2026-01-01 00:00", "os": "Debian", "kernel": "6.1", "nproc": "2",
           "cpu": "x", "mem": "8 GiB", "cgroup": "v1", "containerd": "1.6", "load": "1 1 1"}
CFG = {**bench_run.FULL, "n_many": 100, "n_scale": 100, "groups_n": 20}


def _run(method: str, n: int, total: float, setup: float = 0.0,
         attach: tuple[float, ...] = (), footprint: Footprint | None = None) -> Run:
    return Run(method, n, total=total, setup=setup or total / 2, plugged=setup or total / 2,
               ready=[total] * n, offer=[total * 0.8] * n, attach=list(attach),
               footprint=footprint)


def _fp(n: int, cgroup: int, shim: int, shims: int) -> Footprint:
    per = shim * shims / n
    return Footprint(cgroup=[cgroup] * n, cgroup_rss=[cgroup // 2] * n,
                     monitor_rss=[per] * n, monitor_pss=[per / 4] * n, monitors=shims)


def _results() -> dict:
    def pt(n: int, total: float, attach_ms: float, delete: float) -> Point:
        return Point(n, up=_run("nirunner", n, total, attach=(attach_ms / 1000,) * n),
                     attach=[attach_ms / 1000] * 5, detach=[0.02] * 5, sup_rss=60 * MIB,
                     sup_hwm=61 * MIB, sup_threads=12,
                     footprint=_fp(n, MIB, 13 * MIB, n), delete=delete,
                     free_drop=int(2.5 * MIB) * n)

    return {
        "errors": {},
        "one": {"nirunner": [_run("nirunner", 1, 0.3)], "floor": [_run("floor", 1, 0.25)],
                "cni": [_run("cni", 1, 0.35)], "nirunner-cli": [_run("nirunner-cli", 1, 0.6)]},
        "many": {"nirunner": [_run("nirunner", 100, 12.0)] * 3,
                 "floor": [_run("floor", 100, 15.0)] * 3,
                 "floor-par": [_run("floor-par", 100, 10.0)] * 3,
                 "cni": [_run("cni", 100, 30.0)] * 3},
        "curve": [pt(1, 0.3, 10, 0.1), pt(10, 1.5, 12, 0.6), pt(100, 13.5, 14, 2.5),
                  pt(250, 34.0, 16, 7.0)],
        "scale": Scale(100, idle_window=300.0, idle_cpu=0.6, noop_apply=[0.2],
                       status_call=[0.05, 0.06, 0.07], reconcile=[0.03], reconcile_cpu=[0.02],
                       restart=[2.0, 2.5, 2.2], restarted_tasks=0),
        "cli": Cli(100, cmds={"status (100 NIs)": {"cli": [0.30, 0.31], "api": [0.05, 0.06]},
                              "events": {"cli": [0.10], "api": [0.01]}},
                   python_start=[0.02], imports={"runner.cli.main": [0.17]}),
        "groups": {"1": _run("floor-par", 20, 2.0, footprint=_fp(20, MIB, 13 * MIB, 20)),
                   "20": _run("floor-par-g20", 20, 1.8, footprint=_fp(20, MIB, 14 * MIB, 1))},
        "podman": PodmanSide("podman 4.3.1", runs={
            "podman 1": [_run("podman", 1, 0.26)], "nirunner 1": [_run("nirunner", 1, 0.25)],
            "podman 20": [_run("podman", 20, 4.8, footprint=_fp(20, MIB // 4, 2 * MIB, 20))],
            "nirunner 20": [_run("nirunner", 20, 3.3, footprint=_fp(20, MIB, 13 * MIB, 20))]},
            delete={"podman 20": [18.0], "nirunner 20": [1.1]}),
    }


def _table(results: dict) -> dict[str, list[str]]:
    """Main table rows by their first cell (without the markdown)."""
    text = report(results, MACHINE, CFG, False, 600)
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 2:
            rows.setdefault(cells[0], cells)
    return rows


def test_targets() -> None:
    rows = _table(_results())
    best = rows["100 NIs at once, all ready: nirunner against the best floor"]
    assert best[1].startswith("12.00 s") and best[2].startswith("10.00 s")  # floor-par won
    assert best[4] == "1.20x" and best[-1] == "**no**"
    att = rows["attach of one app with 100 NIs applied (API; every call)"]
    assert att[1].startswith("14 ms") and att[-1] == "yes"
    flat = rows["attach from 1 to 250 NIs (median at each N)"]
    assert flat[1] == "1: 10 ms, 10: 12 ms, 100: 14 ms, 250: 16 ms" and flat[-1] == "**no**"
    mem = next(v for k, v in rows.items() if k.startswith("per-NI memory, RSS-equivalent"))
    assert mem[1].startswith("14.0 MiB") and mem[-1] == "**no**"
    assert rows["delete of 100 NIs (API)"][-1] == "yes"
    idle = rows["supervisor CPU while idle with 100 NIs (300 s window)"]
    assert idle[1] == "600 ms CPU = 0.20%" and idle[-1] == "yes"
    assert rows["`status` of 100 NIs (API)"][1].startswith("60 ms")
    restart = next(v for k, v in rows.items() if k.startswith("supervisor restart"))
    assert restart[1].startswith("2.20 s") and restart[-1] == "yes"
    linear = rows["bring-up cost per added NI: 100→250 against 1→10"]
    assert linear[1] == "137 ms against 133 ms = 1.02x" and linear[-1] == "yes"
    cli = next(v for k, v in rows.items() if k.startswith("CLI: the costliest"))
    assert "(status (100 NIs))" in cli[0] and cli[1] == "+250 ms" and cli[-1] == "**no**"
    one = rows["1 network(s) + one container each → answering: nirunner / podman + netavark"]
    assert one[1].startswith("0.96x") and one[-1] == "yes"
    pm_mem = rows["memory per network, RSS-equivalent, 20 networks: nirunner / podman + "
                  "netavark"]
    assert pm_mem[1].startswith("6.22x") and pm_mem[-1] == "**no**"


def test_the_other_tables() -> None:
    text = report(_results(), MACHINE, CFG, False, 600)
    assert "| 250 | 34.00 s | 136 ms | 137 ms | 17.00 s | 16 / 16 ms (255) |" in text
    assert "| 20 | 1 | 1.80 s | 1.7 MiB | 1.2 MiB | 0.7 MiB | 0.2 MiB |" in text
    assert "| `events` | 100 ms (n=1) | 10 ms (n=1) | +90 ms | ≤ 150 ms | yes |" in text
    assert "| delete of the 20 network(s) (API / `podman rm -f` + `network rm`) | 1.10 s" in text


def test_memory_the_whole_machine_lost() -> None:
    rows = _table(_results())
    lost = next(v for k, v in rows.items() if k.startswith("… the whole machine: MemFree "
                                                          "lost from the apply to all 100"))
    assert lost[1].startswith("2.5 MiB (n=1)")
    text = report(_results(), MACHINE, CFG, False, 600)
    assert "| 14.0 MiB / 4.2 MiB | 2.5 MiB | 250 | 60.0 MiB |" in text  # 250 NIs' row


def test_curve_points_with_more_rounds_count_their_median() -> None:
    results = _results()
    # 1 NI: 0.3 s measured, then 0.2 and 0.4 (median 0.3); 10 NIs: an outlier first
    # round (0.9 s) and two at 1.5 s: the base is 1.5 s, not 0.9 s
    results["curve"][0].more = [0.2, 0.4]
    results["curve"][1].up.total = 0.9
    results["curve"][1].more = [1.5, 1.6]
    rows = _table(results)
    linear = rows["bring-up cost per added NI: 100→250 against 1→10"]
    assert linear[1] == "137 ms against 133 ms = 1.02x"
    text = report(results, MACHINE, CFG, False, 600)
    assert "| 10 | 1.50 s (median, n=3) | 150 ms | 133 ms |" in text
    assert "| 100 | 13.50 s | 135 ms | 133 ms |" in text


def test_round_trip_through_json() -> None:
    results = _results()
    results["curve"][0].more = [0.2, 0.4]
    payload = json.loads(bench_run.dumps({"results": results}))
    assert report(bench_run._load(payload["results"]), MACHINE, CFG, False, 600) == report(
        results, MACHINE, CFG, False, 600)


def test_a_failed_section_is_a_row_and_the_rest_stays() -> None:
    results = {"errors": {"curve-250": "TimeoutError: no DHCP offer"},
               "curve": _results()["curve"][:3]}
    rows = _table(results)
    assert rows["section curve-250: FAILED"][1] == "TimeoutError: no DHCP offer"
    assert "attach from 1 to 100 NIs (median at each N)" in rows
    assert rows["attach from 1 to 100 NIs (median at each N)"][-1] == "n/a"  # 250 missing

