"""The metrics endpoint, scraped by a real Prometheus (Debian's) in the lab.

The supervisor serves metrics on 127.0.0.1:9464 of the lab's device netns; a
Prometheus started in that netns (listening on its 127.0.0.1:9090 only, its data
under the lab's /run dir) scrapes it every second. The test asks Prometheus over
its HTTP API, from inside that netns:

- `promtool check metrics` passes on a scrape;
- after 20 MB sent by an app through its NI's NAT (iperf3 to the inet host), the
  NI's transit byte counter grew by the transfer's size within 5%; a port map's
  counter grew by what went through it;
- after the NI's task is killed, its restart counter grew;
- with 20 NIs, what a scrape costs (cold: the sample is taken; warm: cached), and
  that a pass is not held up by scrapes.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from runner.drivers import netns as ns
from runner.image.build import build_image
from runner.lab.topology import INET_IP, Lab, sh, wait_for
from tests.integration.conftest import RUN_ID

R = RUN_ID
M1 = f"m1-{R}"
METRICS, PROM = "127.0.0.1:9464", "127.0.0.1:9090"
CACHE = 1  # the supervisor's metrics cacheSeconds here
SIZE = 20_000_000  # bytes the app sends through the NAT
PM_SIZE = 5_000_000  # bytes sent to the app through its port map
WEB_MAC = "02:00:00:00:09:10"


def manifest(name: str, subnet: str = "10.1.0.0/24", port_map: bool = False) -> str:
    text = (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {name}}}\n"
            f"spec:\n  type: local\n  uplink: eth0\n  subnet: {subnet}\n"
            f"  dns: {{upstream: [{INET_IP}]}}\n")
    if port_map:
        text += (f"  dhcp: {{reservations: [{{name: web, mac: '{WEB_MAC}', ip: 10.1.0.10}}]}}\n"
                 "  portMaps: [{name: perf, protocol: tcp, uplinkPort: 5201, target: web, "
                 "targetPort: 5201}]\n")
    return text


class Site:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def http(self, url: str, timeout: float = 5) -> bytes:
        """GET from inside the device netns (where 127.0.0.1 is the lab's)."""
        def get() -> bytes:
            with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - lab URL
                return bytes(r.read())
        return ns.run_in(self.lab.device, get)

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"http://{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        data = json.loads(self.http(url))
        assert data["status"] == "success", data
        return list(data["data"]["result"])

    def value(self, promql: str) -> float | None:
        res = self.query(promql)
        return float(res[0]["value"][1]) if res else None

    def apply(self, text: str) -> None:
        f = self.lab.base / f"m{time.monotonic_ns()}.yaml"
        f.write_text(text)
        self.lab.cli("apply", "-f", str(f))


def start_prometheus(lab: Lab) -> None:
    data = lab.base / "prometheus"
    data.mkdir()
    conf = lab.base / "prometheus.yml"
    conf.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                    "scrape_configs:\n"
                    "  - job_name: nirunner\n"
                    "    scrape_interval: 1s\n    scrape_timeout: 1s\n"
                    f"    static_configs: [{{targets: ['{METRICS}']}}]\n")
    log = open(lab.base / "prometheus.log", "ab")  # noqa: SIM115 - the child owns it
    p = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{lab.device}", "prometheus",
         f"--config.file={conf}", f"--storage.tsdb.path={data}",
         f"--web.listen-address={PROM}", "--storage.tsdb.retention.time=1h"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    lab.track(p, "prometheus")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    lab = Lab(f"nrm{R}", image_archive=str(build_image().archive))
    try:
        lab.build()
        lab.start_dns({"www.example.test": INET_IP})
        lab.start_containerd()
        lab.write_config(lab.image)
        with lab.config_path.open("a") as f:
            f.write(f"metrics: {{listen: '{METRICS}', cacheSeconds: {CACHE}}}\n")
        lab.start_supervisor()
        start_prometheus(lab)
        s = Site(lab)
        wait_for(lambda: _ready(s), 30, "Prometheus to be ready")
        yield s
    finally:
        lab.teardown()  # the supervisor, Prometheus, containerd, namespaces, /run/<lab>


def _ready(s: Site) -> bool:
    try:
        return s.http(f"http://{PROM}/-/ready", timeout=1).startswith(b"Prometheus")
    except OSError:
        return False


def _after(s: Site, promql: str, t: float, timeout: float = 30) -> float:
    """The value from a scrape made after wall-clock time `t` plus the sampler's cache
    age (a failed or slow scrape leaves the last value standing: not good enough)."""
    got: list[float] = []

    def fresh() -> bool:
        res = s.query(f"timestamp({promql})")
        if not res or float(res[0]["value"][1]) < t + CACHE + 0.2:
            return False
        v = s.value(promql)
        if v is not None:
            got.append(v)
        return bool(got)

    wait_for(fresh, timeout, f"a scrape of {promql} after the transfer", step=0.5)
    return got[-1]


def test_prometheus_scrapes_and_counts_bytes_restarts(site: Site) -> None:
    lab = site.lab
    site.apply(manifest(M1, port_map=True))
    app = lab.app("app", M1)
    web = lab.app("web", M1, mac=WEB_MAC)
    lab.dhcp(app, "app")
    assert lab.dhcp(web, "web") == "10.1.0.10"

    text = site.http(f"http://{METRICS}/metrics").decode()
    check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f'nirunner_ni_state{{ni="{M1}",state="running"}} 1.0' in text

    target = 'up{job="nirunner"}'
    wait_for(lambda: site.value(target) == 1, 30, "Prometheus to scrape the supervisor")
    out = f'nirunner_ni_transit_bytes_total{{ni="{M1}",direction="out"}}'
    wait_for(lambda: site.value(out) is not None, 30, "the NI's byte counter in Prometheus")
    before = site.value(out)
    assert before is not None
    lab.spawn(lab.inet, "iperf3", "-s", "-1", "-p", "5300")
    wait_for(lambda: "5300" in sh("ss", "-Hlnt", netns=lab.inet).stdout, 10, "iperf3 server")
    sh("iperf3", "-c", INET_IP, "-p", "5300", "-n", str(SIZE), netns=app, timeout=60)
    after = _after(site, out, time.time())
    print(f"\n{M1} out: {after - before:.0f} bytes counted for {SIZE} sent "
          f"({(after - before) / SIZE - 1:+.2%})")
    assert abs((after - before) - SIZE) <= SIZE * 0.05

    pm = f'nirunner_port_map_bytes_total{{ni="{M1}",port_map="perf"}}'
    pm_before = site.value(pm) or 0.0
    lab.spawn(web, "iperf3", "-s", "-1", "-p", "5201")
    wait_for(lambda: "5201" in sh("ss", "-Hlnt", netns=web).stdout, 10, "iperf3 in the app")
    sh("iperf3", "-c", "198.51.100.2", "-p", "5201", "-n", str(PM_SIZE), netns=lab.wan,
       timeout=60)
    pm_after = _after(site, pm, time.time())
    print(f"{M1} port map perf: {pm_after - pm_before:.0f} bytes for {PM_SIZE} sent")
    # both directions count: the data, and the ACKs and iperf3's control connection's
    # replies coming back, so a little more than what was sent
    assert PM_SIZE <= pm_after - pm_before <= PM_SIZE * 1.10

    restarts = f'nirunner_ni_task_restarts_total{{ni="{M1}"}}'
    assert site.value(restarts) == 0
    sh("ctr", "--address", lab.containerd.address, "-n", lab.namespace, "tasks", "kill",
       "-s", "SIGKILL", f"ni-{M1}")
    wait_for(lambda: (site.value(restarts) or 0) >= 1, 30, "the restart counter to grow")
    wait_for(lambda: site.value(f'nirunner_ni_state{{ni="{M1}",state="running"}}') == 1, 30,
             "the NI to run again")
    ops = site.value('sum(nirunner_reconcile_ops_total{kind="task",action="create"})')
    assert ops is not None and ops >= 1
    assert site.value('nirunner_api_requests_total{method="Apply"}') == 1
    assert (site.value('nirunner_events_total{kind="task.exited"}') or 0) >= 1
    lab.cli("detach", M1, "--netns", f"/run/netns/{app}")
    lab.cli("detach", M1, "--netns", f"/run/netns/{web}")
    lab.cli("delete", M1)


def test_scrape_cost_with_20_nis(site: Site) -> None:
    lab = site.lab
    nis = [f"s{i}-{R}" for i in range(20)]
    site.apply("---\n".join(manifest(n, f"10.{i + 20}.0.0/24") for i, n in enumerate(nis)))
    wait_for(lambda: site.value('sum(nirunner_ni_state{state="running"})') == 20, 90,
             "20 NIs running")
    cold, warm = [], []
    for _ in range(5):
        time.sleep(1.1)  # the cache (cacheSeconds: 1) has expired: this scrape samples
        t0 = time.monotonic()
        site.http(f"http://{METRICS}/metrics")
        cold.append(time.monotonic() - t0)
        t0 = time.monotonic()
        body = site.http(f"http://{METRICS}/metrics")
        warm.append(time.monotonic() - t0)
    sample = float(next(ln.split()[1] for ln in body.decode().splitlines()
                        if ln.startswith("nirunner_metrics_sample_seconds ")))
    # what scrapes do to the supervisor's own work: `status` takes its lock, as a pass does
    alone = _timed(lambda: lab.cli("status"))
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            site.http(f"http://{METRICS}/metrics")
            time.sleep(0.2)

    t = threading.Thread(target=scrape)
    t.start()
    try:
        scraped = _timed(lambda: lab.cli("status"))
    finally:
        stop.set()
        t.join(30)
    print(f"\nscrape with 20 NIs: cold {_ms(cold)} (sample {sample * 1000:.0f} ms), "
          f"warm {_ms(warm)}; {len(body)} bytes; `nirunner status`: {_ms(alone)} alone, "
          f"{_ms(scraped)} while scraped every 0.2 s")
    assert max(cold) < 2.0 and max(warm) < 0.5
    lab.cli("delete", *nis, timeout=300)


def _timed(fn: Any, n: int = 5) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        fn()
        out.append(time.monotonic() - t0)
    return out


def _ms(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"median {xs[len(xs) // 2] * 1000:.0f} ms / max {xs[-1] * 1000:.0f} ms"

