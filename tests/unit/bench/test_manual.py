"""The hand-made floors' scripts: the parallel one does the same work as the sequential
one, in 2 kernel shards and 4 `ctr run -d` at a time; shim groups by annotation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from bench import manual
from bench.bringup import PORT_BASE, manifest, ni_name
from tests.unit.plan.sample import FACTS


def _nis(tmp_path: Path, n: int, kind: str, group_size: int = 0) -> list[manual.ManualNI]:
    names = [ni_name(i) for i in range(n)]
    ports = {nm: PORT_BASE + i for i, nm in enumerate(names)}
    plans, _ = manual.plans_for(manual.bench_config("/dev/null"), FACTS,
                                [manifest(nm, ports[nm]) for nm in names])
    blab = SimpleNamespace(base=tmp_path, prefix="nrtest", address="/run/x.sock",
                           image="nirunner/ni:test")
    return manual._prepare(blab, kind, "t", plans, ports, group_size)  # type: ignore[arg-type]


def _blab(tmp_path: Path) -> SimpleNamespace:
    return SimpleNamespace(base=tmp_path, address="/run/x.sock", image="nirunner/ni:test")


def test_parallel_floor_does_the_sequential_floors_work(tmp_path: Path) -> None:
    nis = _nis(tmp_path, 5, "floor-par")
    work = tmp_path / "floor-par"
    dev = tmp_path / "dev.nft"
    par = manual.floor_parallel_script(_blab(tmp_path), nis, dev, work)  # type: ignore[arg-type]
    seq = manual.floor_script(_blab(tmp_path), nis, dev)  # type: ignore[arg-type]
    shards = [(work / f"shard{k}.sh").read_text().splitlines() for k in range(2)]
    runs = (work / "ctr-runs").read_text().splitlines()
    # the same lines, only spread over the shards, the main script and the list of runs
    assert Counter(seq.splitlines()[1:]) == Counter(
        shards[0][1:] + shards[1][1:] + runs + [f"nft -f {dev}"])
    # shard 0: NIs 0, 2, 4; shard 1: NIs 1, 3 (each NI's lines in order, in one shard)
    assert [x for x in shards[0] if x.startswith("ip netns add")] == [
        f"ip netns add {nis[i].netns}" for i in (0, 2, 4)]
    assert [x for x in shards[1] if x.startswith("ip netns add")] == [
        f"ip netns add {nis[i].netns}" for i in (1, 3)]
    lines = par.splitlines()
    # both shards at once, both waited for, then the device table, then 4 runs at a time
    assert lines[1].startswith("bash ") and lines[1].endswith("& p0=$!")
    assert lines[2].endswith("& p1=$!")
    assert lines[3:5] == ["wait $p0", "wait $p1"]
    assert lines[5] == f"nft -f {dev}"
    assert lines[6] == f"xargs -a {work / 'ctr-runs'} -d '\\n' -P 4 -n 1 bash -c"
    assert len(runs) == 5 and all(r.startswith("ctr ") and " run -d " in r for r in runs)
    assert not any(manual.SHIM_GROUP in r for r in runs)


def test_shim_groups_by_annotation(tmp_path: Path) -> None:
    nis = _nis(tmp_path, 5, "floor-par", group_size=2)
    assert [n.group for n in nis] == ["bfp-t-g0", "bfp-t-g0", "bfp-t-g1", "bfp-t-g1",
                                      "bfp-t-g2"]
    manual.floor_parallel_script(_blab(tmp_path), nis, tmp_path / "d.nft",  # type: ignore[arg-type]
                                 tmp_path / "floor-par")
    runs = (tmp_path / "floor-par" / "ctr-runs").read_text().splitlines()
    assert f"--annotation {manual.SHIM_GROUP}=bfp-t-g0" in runs[1]
    assert f"--annotation {manual.SHIM_GROUP}=bfp-t-g2" in runs[4]


def test_names_per_kind_do_not_collide(tmp_path: Path) -> None:
    seen: set[str] = set()
    for kind in manual.KINDS:
        for n in _nis(tmp_path, 2, kind):
            assert n.netns not in seen and n.cid not in seen
            seen |= {n.netns, n.cid}
