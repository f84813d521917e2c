"""The metrics endpoint, scraped by a real Prometheus (Debian's) in the lab.

The supervisor serves metrics on 127.0.0.1:9464 of the lab's device netns; a
Prometheus started in that netns (listening on its 127.0.0.1:9090 only, its data
under the lab's /run dir) scrapes it every second. The test asks Prometheus over
its HTTP API, from inside that netns:

- `promtool check metrics` passes on a scrape;
- after 20 MB sent by an app through its NI's NAT to the inet host, the
  NI's transit byte counter grew by the transfer's size within 5%; a port map's
  counter grew by what went through it;
- after the NI's task is killed, its restart counter grew;
- a VPN NI's SAs are up in Prometheus and its CHILD SA's byte counter grows;
- with 20 NIs, what a scrape costs (cold: the sample is taken; warm: cached), and
  that a pass is not held up by scrapes.
"""

from __future__ import annotations

import json
import subprocess
import sys
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


# iperf3 -n counts what it wrote to its socket, not what arrived (its server may close
# with data still in flight): a transfer whose receiver confirms every byte instead
SINK = """
import socket, sys
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])))
srv.settimeout(60)
conn, _ = srv.accept()
got = 0
while chunk := conn.recv(1 << 16):
    got += len(chunk)
conn.sendall(str(got).encode())
conn.close()
"""
SEND = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
block, left = bytes(1 << 16), int(sys.argv[3])
while left > 0:
    left -= s.send(block[:left])
s.shutdown(socket.SHUT_WR)
print(s.recv(64).decode())
"""


def transfer(lab: Lab, server_ns: str, client_ns: str, host: str, port: int, size: int) -> None:
    """`size` bytes from client_ns to host:port (a sink in server_ns), all of them arrived."""
    lab.spawn(server_ns, sys.executable, "-c", SINK, str(port))
    wait_for(lambda: f":{port} " in sh("ss", "-Hlnt", netns=server_ns).stdout, 10,
             f"the sink on port {port}")
    got = sh(sys.executable, "-c", SEND, host, str(port), str(size), netns=client_ns,
             timeout=60).stdout.strip()
    assert got == str(size), got


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
    transfer(lab, lab.inet, app, INET_IP, 5300, SIZE)
    after = _after(site, out, time.time())
    print(f"\n{M1} out: {after - before:.0f} bytes counted for {SIZE} sent "
          f"({(after - before) / SIZE - 1:+.2%})")
    assert abs((after - before) - SIZE) <= SIZE * 0.05

    pm = f'nirunner_port_map_bytes_total{{ni="{M1}",port_map="perf"}}'
    pm_before = site.value(pm) or 0.0
    transfer(lab, web, lab.wan, "198.51.100.2", 5201, PM_SIZE)
    pm_after = _after(site, pm, time.time())
    print(f"{M1} port map perf: {pm_after - pm_before:.0f} bytes for {PM_SIZE} sent")
    # both directions count: the data, its headers and the ACKs coming back
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
    running = f'count(nirunner_ni_state{{state="running",ni=~"s[0-9]+-{R}"}} == 1)'
    wait_for(lambda: site.value(running) == 20, 120, "20 NIs running")
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



def test_vpn_sa_state_and_bytes(site: Site) -> None:
    from runner.lab.vpnpeer import PeerConn, VpnPeer

    lab = site.lab
    psk = f"metrics-psk-{R}"
    peer = VpnPeer(lab, 1)
    peer.build()
    peer.add(PeerConn("edge", "hq", "edge@metrics", "10.50.0.0/24", psk=psk.encode()))
    peer.start()
    peer.serve(7000, "site")
    lab.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (lab.secrets_dir / "v.psk").write_text(psk + "\n")
    (lab.secrets_dir / "v.psk").chmod(0o600)
    v = f"v-{R}"
    site.apply(
        f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {v}}}\n"
        f"spec:\n  type: vpn\n  uplink: eth0\n  subnet: 10.50.0.0/24\n  vpn:\n"
        f"    remote: {peer.address}\n"
        f"    auth: {{psk: {{secretFile: {lab.secrets_dir / 'v.psk'}}}}}\n"
        "    localId: edge@metrics\n    remoteId: hq\n    remoteSubnets: [10.99.1.0/24]\n"
        "    ike: {proposals: [aes256-sha256-modp2048]}\n"
        "    esp: {proposals: [aes256gcm16]}\n")
    app = lab.app("vapp", v)
    lab.dhcp(app, "vapp")
    wait_for(lambda: site.value(f'nirunner_vpn_up{{ni="{v}"}}') == 1, 60, "the tunnel up")
    assert site.value(f'nirunner_vpn_sa_state{{ni="{v}",sa="ike",state="ESTABLISHED"}}') == 1
    assert site.value(f'nirunner_vpn_sa_up{{ni="{v}",sa="child"}}') == 1
    out = f'nirunner_vpn_bytes_total{{ni="{v}",direction="out"}}'
    before = site.value(out) or 0.0
    for _ in range(5):
        assert lab.connect(app, "tcp", peer.site_host(), 7000) is not None
    after = _after(site, out, time.time())
    print(f"\n{v}: CHILD SA bytes out grew by {after - before:.0f} for 5 connections")
    assert after > before
    assert site.value(f'nirunner_vpn_rekeys_total{{ni="{v}",sa="child"}}') == 0
    lab.cli("detach", v, "--netns", f"/run/netns/{app}")
    lab.cli("delete", v)
