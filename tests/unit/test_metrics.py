"""Metrics without root: the families a sample gives, the supervisor's counters, and a
sampler that never waits for a busy supervisor (fake configurators, fake reads)."""

from __future__ import annotations

import threading
import time
from collections import namedtuple
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runner.containerd import metrics
from runner.metrics import sample as sm
from runner.metrics.families import families
from runner.metrics.instruments import Instruments
from runner.metrics.wiring import Metrics
from runner.model.types import SupervisorConfig, Uplink
from runner.reconcile.diff import Op
from runner.reconcile.engine import Done, Run
from runner.reconcile.items import Action
from runner.reconcile.kinds import StateDir
from runner.supervisor.core import Supervisor
from tests.unit.plan.sample import FACTS
from tests.unit.reconcile.test_reconcile import Fakes
from tests.unit.supervisor.test_supervisor import apply, manifest

USAGE = metrics.Usage("v1", 5 << 20, 64 << 20, 6 << 20, 0, 0, 2_500_000_000, 40, 3, 128,
                      cpu_periods=1000, cpu_throttled_ns=1_500_000_000)


def ni(name: str, **kw: Any) -> sm.NISample:
    base = dict(name=name, type="local", uplink="eth0", state="running", task_running=True,
                restarts=2, usage=USAGE, memory_limit=64 << 20, cpu_limit=0.5, pids_limit=128,
                apps=3, leases=2, attached=1, services={"dnsmasq": "running"},
                transit={"in": (10, 20000), "out": (7, 900)},
                port_maps={"web": (5, 600)}, vpn=None)
    return sm.NISample(**{**base, **kw})


VPN = {"up": True, "ike": {"state": "ESTABLISHED", "uniqueId": "3"},
       "child": {"state": "INSTALLED", "uniqueId": "7", "bytesIn": 100, "bytesOut": 200,
                 "packetsIn": 1, "packetsOut": 2}}


def scrape(s: sm.Sample) -> dict[str, Any]:
    reg = CollectorRegistry(auto_describe=False)

    class C:
        def collect(self) -> Any:
            return families(s)

    reg.register(C())  # type: ignore[arg-type]
    text = generate_latest(reg).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def values(fam: Any) -> dict[tuple[str, ...], float]:
    return {tuple(f"{k}={v}" for k, v in sorted(x.labels.items())): x.value
            for x in fam.samples if not x.name.endswith("_created")}


def test_a_sample_as_families() -> None:
    s = sm.Sample((ni("a"), ni("v", type="vpn", state="degraded", vpn=VPN,
                              vpn_rekeys={"ike": 0, "child": 2}, port_maps={})),
                  {"task": 1}, True, time.time(), 0.01)
    f = scrape(s)
    assert values(f["nirunner_ni_transit_bytes"])[("direction=in", "ni=a")] == 20000
    assert values(f["nirunner_ni_transit_packets"])[("direction=out", "ni=a")] == 7
    assert values(f["nirunner_port_map_bytes"]) == {("ni=a", "port_map=web"): 600}
    assert values(f["nirunner_ni_task_restarts"])[("ni=a",)] == 2
    assert values(f["nirunner_ni_memory_bytes"])[("ni=a",)] == 5 << 20
    assert values(f["nirunner_ni_memory_limit_bytes"])[("ni=a",)] == 64 << 20
    assert values(f["nirunner_ni_cpu_seconds"])[("ni=a",)] == 2.5
    assert values(f["nirunner_ni_cpu_throttled_seconds"])[("ni=a",)] == 1.5
    assert values(f["nirunner_ni_cpu_throttled_periods"])[("ni=a",)] == 40
    state = values(f["nirunner_ni_state"])
    assert state[("ni=v", "state=degraded")] == 1 and state[("ni=v", "state=running")] == 0
    assert values(f["nirunner_ni_apps"])[("ni=a",)] == 3
    assert values(f["nirunner_ni_leases"])[("ni=a",)] == 2
    assert values(f["nirunner_vpn_sa_up"]) == {("ni=v", "sa=child"): 1, ("ni=v", "sa=ike"): 1}
    assert values(f["nirunner_vpn_bytes"]) == {("direction=in", "ni=v"): 100,
                                               ("direction=out", "ni=v"): 200}
    assert values(f["nirunner_vpn_rekeys"])[("ni=v", "sa=child")] == 2
    assert values(f["nirunner_items_in_error"]) == {("kind=task",): 1}
    assert f["nirunner_ni_transit_bytes"].type == "counter"
    # bounded labels: NI, port map, direction, state, service, SA kind; nothing per app
    labels = {k for fam in f.values() for x in fam.samples for k in x.labels}
    assert labels <= {"ni", "type", "uplink", "state", "direction", "port_map", "service",
                      "sa", "kind"}


def test_a_stopped_task_has_no_usage_but_keeps_its_limits() -> None:
    f = scrape(sm.Sample((ni("a", usage=None, task_running=False, state="pending"),),
                         {}, False, time.time(), 0.0))
    assert ("ni=a",) not in values(f["nirunner_ni_memory_bytes"])
    assert values(f["nirunner_ni_memory_limit_bytes"])[("ni=a",)] == 64 << 20
    assert values(f["nirunner_containerd_up"]) == {(): 0}


def test_ops_by_kind_action_and_result() -> None:
    reg = CollectorRegistry()
    inst = Instruments(reg)
    item = StateDir("a", "/x")
    run = Run(done=[Done(Op(Action.CREATE, None, item)),
                    Done(Op(Action.CREATE, None, item), error="boom"),
                    Done(Op(Action.CREATE, None, item), inverse=True)])
    inst.ran(run)
    inst.pass_done("light", 0.02)
    got = {(s.labels.get("result")): s.value for s in
           next(m for m in reg.collect() if m.name == "nirunner_reconcile_ops").samples
           if s.name.endswith("_total")}
    assert got == {"ok": 1, "error": 1, "undone": 1}
    assert reg.get_sample_value("nirunner_reconcile_pass_seconds_count", {"pass": "light"}) == 1


def test_api_calls_and_errors_are_counted() -> None:
    reg = CollectorRegistry()
    inst = Instruments(reg)

    def ok(req: Any, ctx: Any) -> str:
        return "fine"

    def bad(req: Any, ctx: Any) -> str:
        ctx.code_value = grpc.StatusCode.FAILED_PRECONDITION
        raise RuntimeError("aborted")

    class Ctx:
        code_value: Any = None

        def code(self) -> Any:
            return self.code_value

    Details = namedtuple("Details", "method invocation_metadata")
    for name, fn in (("Apply", ok), ("Delete", bad)):
        handler = inst.interceptor().intercept_service(
            lambda d, fn=fn: grpc.unary_unary_rpc_method_handler(fn),
            Details(f"/nirunner.v1.Supervisor/{name}", ()))
        if fn is ok:
            assert handler.unary_unary(None, Ctx()) == "fine"
        else:
            with pytest.raises(RuntimeError):
                handler.unary_unary(None, Ctx())
    assert reg.get_sample_value("nirunner_api_requests_total", {"method": "Apply"}) == 1
    assert reg.get_sample_value("nirunner_api_requests_total", {"method": "Delete"}) == 1
    assert reg.get_sample_value("nirunner_api_errors_total",
                                {"method": "Delete", "code": "FAILED_PRECONDITION"}) == 1
    assert reg.get_sample_value("nirunner_api_errors_total",
                                {"method": "Apply", "code": "OK"}) is None


@pytest.fixture
def sup(tmp_path: Path) -> Supervisor:
    fakes = Fakes()
    confs = fakes.configurators()
    confs["task"].observe = lambda: {}  # type: ignore[attr-defined]
    config = SupervisorConfig(state_dir=str(tmp_path / "state"),
                              uplinks=(Uplink("eth0", "eth0"), Uplink("eth1", "eth1")))
    return Supervisor(config, client=None, confs=confs,  # type: ignore[arg-type]
                      read_facts=lambda: FACTS)


def test_sampler_reads_outside_the_lock_and_caches(sup: Supervisor,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    apply(sup, manifest("a"))
    monkeypatch.setattr(sm.tasks, "list_tasks", lambda c: [])
    monkeypatch.setattr(sm.tasks, "all_metrics", lambda c: {})
    reads: list[float] = []

    def counters() -> dict[str, tuple[int, int]]:
        reads.append(time.monotonic())
        return {"ni_nr0_in": (4, 400), "ni_nr0_out": (3, 300), "pm_nr0_tcp_8080": (2, 200)}

    sampler = sm.Sampler(sup, max_age=60, read_counters=counters)
    first = sampler.get()
    assert [(n.name, n.transit, n.port_maps) for n in first.nis] == [
        ("a", {"in": (4, 400), "out": (3, 300)}, {"web": (2, 200)})]
    assert first.nis[0].state == "pending" and not first.nis[0].task_running
    assert sampler.get() is first and len(reads) == 1  # cached

    sampler.max_age = 0
    held, release = threading.Event(), threading.Event()

    def busy() -> None:  # a long pass holds the supervisor's lock
        with sup.lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=busy)
    t.start()
    held.wait(5)
    t0 = time.monotonic()
    second = sampler.get()  # not held up: the last copy of the records serves
    took = time.monotonic() - t0
    release.set()
    t.join()
    assert second is not first and [n.name for n in second.nis] == ["a"]
    assert took < 1.0 and len(reads) == 2


def test_metrics_hooks_count_passes_and_events(sup: Supervisor) -> None:
    m = Metrics(sup)
    apply(sup, manifest("a"))
    sup.reconcile()
    sup.on_pass("light", 0.01)
    reg = m.registry
    assert reg.get_sample_value("nirunner_events_total", {"kind": "ni.created"}) == 1
    assert reg.get_sample_value("nirunner_reconcile_ops_total",
                                {"kind": "task", "action": "create", "result": "ok"}) == 1
    assert reg.get_sample_value("nirunner_reconcile_pass_seconds_count",
                                {"pass": "light"}) == 1


def test_the_unix_socket_endpoint(tmp_path: Path) -> None:
    import http.client
    import socket as so

    from runner.metrics.endpoint import Endpoint
    from runner.model.types import MetricsConfig

    reg = CollectorRegistry()
    Instruments(reg).events.labels("ni.created").inc()
    path = tmp_path / "run" / "metrics.sock"
    ep = Endpoint(MetricsConfig(str(path)), reg)
    ep.start()
    try:
        assert path.stat().st_mode & 0o777 == 0o600

        class Conn(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = so.socket(so.AF_UNIX, so.SOCK_STREAM)
                self.sock.connect(str(path))

        c = Conn("localhost", timeout=5)
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
        assert 'nirunner_events_total{kind="ni.created"} 1.0' in body
    finally:
        ep.stop()
    assert not path.exists()
