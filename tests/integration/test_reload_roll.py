"""Live config reload and NI image rolls on a lab device.

- SIGHUP with a new uplink (eth2, added to the lab device) in the config: an NI
  applied on it afterwards works (DHCP, NAT to the inet host through eth2), the NIs
  there before keep their task PIDs; a bad config (a field error, an uplink still
  in use removed) is refused with the reason, in the events and in `nirunner
  reload`'s answer, and the old config stays in force.
- A roll v1 -> v2 (two builds of the same definition with different tags) with 5
  NIs whose apps hold TCP flows through the NAT: each NI ends on v2, the apps keep
  their addresses and flows, DHCP, DNS, NAT and a port map work afterwards, and the
  downtime of each NI is printed; then a broken v2 (the same definition with an
  init that exits) rolls the first NI back and stops the roll; a supervisor
  restarted with v1 in its config adopts the v2 tasks and rolls them back to v1.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.containerd.client import Client
from runner.containerd.images import import_archive
from runner.image.build import INIT_SOURCE, BuildResult, build_image, cache_dir
from runner.lab.topology import INET_IP, Lab, sh, wait_for
from tests.integration.conftest import RUN_ID

R = RUN_ID
EXTRA = ("eth2", "198.18.2.2/24", "198.18.2.1/24")  # the uplink a reload adds
A, B = f"a-{R}", f"b-{R}"
ROLLED = [f"r{i}-{R}" for i in range(5)]
WEB_MAC = "02:00:00:00:0a:10"


def manifest(name: str, subnet: str, uplink: str = "eth0", port: int | None = None) -> str:
    text = (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {name}}}\n"
            f"spec:\n  type: local\n  uplink: {uplink}\n  subnet: {subnet}\n"
            f"  dns: {{upstream: [{INET_IP}]}}\n")
    if port is not None:
        ip = subnet.rsplit(".", 1)[0] + ".10"
        text += (f"  dhcp: {{reservations: [{{name: web, mac: '{WEB_MAC}', ip: {ip}}}]}}\n"
                 f"  portMaps: [{{name: web, protocol: tcp, uplinkPort: {port}, target: web, "
                 "targetPort: 80}]\n")
    return text


def images() -> tuple[BuildResult, BuildResult]:
    """v2 and a broken v2: the NI image's own definition built under other tags, the
    broken one with an init that exits at once (cached apart from the default image)."""
    cache = cache_dir() / "rolltest"
    v2 = build_image(version="rolltest-v2", cache=cache)
    src = Path(tempfile.mkdtemp(prefix="nirunner-broken-")) / "ni-init.c"
    text, n = re.subn(r"(int main\(void\)\n\{\n)",
                      r'\1\tfputs("ni-init: broken on purpose\\n", stderr);\n\treturn 3;\n',
                      INIT_SOURCE.read_text(), count=1)
    assert n == 1, "ni-init.c's main() is not where the test expects it"
    src.write_text(text)
    try:
        broken = build_image(version="rolltest-broken", cache=cache, init_source=src)
    finally:
        src.unlink()
        src.parent.rmdir()
    return v2, broken


class Site:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.config = lab.config_path.read_text()

    def apply(self, text: str) -> None:
        f = self.lab.base / f"m{time.monotonic_ns()}.yaml"
        f.write_text(text)
        self.lab.cli("apply", "-f", str(f))

    def status(self) -> dict[str, dict]:
        import json

        return {s["name"]: s for s in json.loads(self.lab.cli("status", "--json").stdout)}

    def write_config(self, text: str) -> None:
        self.lab.config_path.write_text(text)

    def events(self) -> str:
        return self.lab.cli("events").stdout

    def sighup(self) -> None:
        assert self.lab.supervisor is not None
        os.kill(self.lab.supervisor.pid, signal.SIGHUP)

    def containers(self) -> dict[str, str]:
        """container id -> image, from containerd."""
        out = sh("ctr", "--address", self.lab.containerd.address, "-n", self.lab.namespace,
                 "containers", "ls").stdout.splitlines()[1:]
        return {w[0]: w[1] for w in (ln.split() for ln in out)}


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    lab = Lab(f"nrl{R}", image_archive=str(build_image().archive))
    try:
        lab.build()
        lab.start_dns({"www.example.test": INET_IP})
        lab.serve(lab.inet, "tcp", 7000, "inet")
        lab.start_containerd()
        lab.write_config(lab.image)
        lab.start_supervisor()
        yield Site(lab)
    finally:
        lab.teardown()


def add_uplink(lab: Lab) -> None:
    ifname, dev_addr, gw_addr = EXTRA
    sh("ip", "link", "add", ifname, "netns", lab.device, "type", "veth", "peer", "name", "w2",
       "netns", lab.wan)
    sh("ip", "addr", "add", dev_addr, "dev", ifname, netns=lab.device)
    sh("ip", "link", "set", ifname, "up", netns=lab.device)
    sh("ip", "addr", "add", gw_addr, "dev", "w2", netns=lab.wan)
    sh("ip", "link", "set", "w2", "up", netns=lab.wan)
    sh("ip", "route", "add", "default", "via", gw_addr.split("/")[0], "dev", ifname,
       "metric", "300", netns=lab.device)


def test_sighup_takes_a_new_uplink_and_refuses_a_bad_config(site: Site) -> None:
    lab = site.lab
    site.apply(manifest(A, "10.1.0.0/24"))
    app_a = lab.app("appa", A)
    lab.dhcp(app_a, "appa")
    pid_a = site.status()[A]["task"]["pid"]

    add_uplink(lab)
    good = site.config + "  - {name: eth2, interface: eth2}\n"
    site.write_config(good)
    site.sighup()
    wait_for(lambda: "uplink eth2 added" in site.events(), 15, "the reload's event")
    site.apply(manifest(B, "10.1.0.0/24", uplink="eth2"))
    app_b = lab.app("appb", B)
    assert lab.dhcp(app_b, "appb").startswith("10.1.0.")
    assert lab.connect(app_b, "tcp", INET_IP, 7000) == "inet sees 198.18.2.2"  # via eth2
    assert lab.connect(app_a, "tcp", INET_IP, 7000) == "inet sees 198.51.100.2"
    st = site.status()
    assert st[A]["task"]["pid"] == pid_a and st[B]["state"] == "running"

    # a field error: refused with its path and line, by SIGHUP and by `nirunner reload`
    site.write_config(good.replace("{name: eth2, interface: eth2}", "{name: eth2}"))
    site.sighup()
    wait_for(lambda: "config.refused" in site.events(), 15, "the refusal's event")
    assert "uplinks[2].interface" in site.events()
    res = lab.cli("reload", "--socket", lab.socket, check=False)
    assert res.returncode == 1 and "uplinks[2].interface" in res.stderr, res.stderr
    # an uplink removed while an NI uses it
    site.write_config(site.config)
    res = lab.cli("reload", "--socket", lab.socket, check=False)
    assert res.returncode == 1, res.stdout
    assert f"uplink eth2 is removed but NI {B} uses it" in res.stderr
    assert "the old config stays" in res.stderr
    # the old config is in force: eth2 still carries B
    assert lab.connect(app_b, "tcp", INET_IP, 7000) == "inet sees 198.18.2.2"
    site.write_config(good)
    assert "no changes" in lab.cli("reload", "--socket", lab.socket).stdout
    st = site.status()
    assert st[A]["task"]["pid"] == pid_a and st[B]["state"] == "running"
    for ns_, ni in ((app_a, A), (app_b, B)):
        lab.cli("detach", ni, "--netns", f"/run/netns/{ns_}")
    lab.cli("delete", A, B)


FLOW = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], 7000), timeout=5)
end = time.monotonic() + float(sys.argv[2])
ok = bad = 0
while time.monotonic() < end:
    try:
        s.sendall(b"x"); ok += bool(s.recv(256))
    except OSError:
        bad += 1
        break
    time.sleep(0.1)
print(ok, bad, flush=True)
"""


def roll(site: Site) -> tuple[int, str]:
    res = site.lab.cli("roll", "--socket", site.lab.socket, check=False, timeout=300)
    print("\n$ nirunner roll\n" + res.stdout + res.stderr)
    return res.returncode, res.stdout


def test_roll_v1_to_v2_keeps_apps_and_a_broken_v2_rolls_back(site: Site) -> None:
    lab = site.lab
    v2, broken = images()
    with Client(lab.containerd.address, lab.namespace) as c:
        v2_name = import_archive(c, str(v2.archive)).name
        broken_name = import_archive(c, str(broken.archive)).name
    site.apply("---\n".join(manifest(n, f"10.{i + 1}.0.0/24", port=8080 if i == 0 else None)
                            for i, n in enumerate(ROLLED)))
    apps, ips, flows = {}, {}, {}
    for i, n in enumerate(ROLLED):
        apps[n] = lab.app(f"ra{i}", n)
        ips[n] = lab.dhcp(apps[n], f"ra{i}")
        flows[n] = lab.base / f"flow{i}.out"
        with flows[n].open("w") as out:  # a TCP flow through the NAT, for 40 s
            lab.track(subprocess.Popen(
                ["ip", "netns", "exec", apps[n], sys.executable, "-c", FLOW, INET_IP, "40"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True), f"flow{i}")
    web = lab.app("rweb", ROLLED[0], mac=WEB_MAC)
    assert lab.dhcp(web, "web") == "10.1.0.10"
    lab.serve(web, "tcp", 80, "web")
    before = site.status()
    v1 = site.containers()[f"ni-{ROLLED[0]}"]

    site.write_config(site.config.replace(f"image: {lab.image}", f"image: {v2_name}"))
    res = lab.cli("reload", "--socket", lab.socket)
    assert f"image: {lab.image} -> {v2_name}" in res.stdout, res.stdout
    assert "rolling to the new image" in res.stdout
    code, out = roll(site)
    assert code == 0, out
    rows = [ln.split() for ln in out.splitlines() if ln.split()[:1] in ([n] for n in ROLLED)]
    assert sorted(r[0] for r in rows) == sorted(ROLLED) and all(r[1] == "rolled" for r in rows)
    downtimes = {r[0]: float(r[-1].rstrip("s")) for r in rows}
    print("downtime per NI (task stopped -> new task's dnsmasq answering): " +
          ", ".join(f"{n} {d:.2f}s" for n, d in downtimes.items()))
    assert all(0 < d < 10 for d in downtimes.values())
    assert {site.containers()[f"ni-{n}"] for n in ROLLED} == {v2_name} != {v1}
    after = site.status()
    for i, n in enumerate(ROLLED):
        assert after[n]["state"] == "running"
        assert after[n]["task"]["pid"] != before[n]["task"]["pid"]  # a new task
        assert lab.dhcp(apps[n], f"ra{i}") == ips[n]  # the same address again
        got = sh(sys.executable, "-m", "runner.lab.dnsq", f"10.{i + 1}.0.1",
                 "www.example.test", netns=apps[n], check=False).stdout.split()
        assert got == [INET_IP]
        assert lab.connect(apps[n], "tcp", INET_IP, 7000) == "inet sees 198.51.100.2"
    assert lab.connect(lab.wan, "tcp", "198.51.100.2", 8080) == "web sees 198.51.100.1"
    # the flows opened before the roll went on through it (NAT state is in the netns)
    for n in ROLLED:
        wait_for(lambda n=n: flows[n].read_text().strip() != "", 90, f"{n}'s flow to end")
        ok, bad = map(int, flows[n].read_text().split())
        assert bad == 0 and ok > 100, (n, ok, bad)

    # a broken image: the first NI goes back to v2 and the roll stops
    site.write_config(site.config.replace(f"image: {lab.image}", f"image: {broken_name}"))
    lab.cli("reload", "--socket", lab.socket)
    code, out = roll(site)
    assert code == 1, out
    first = sorted(ROLLED)[0]
    assert re.search(rf"^{first}\s+rolled back\s", out, re.M), out
    assert "roll stopped" in out and "the new task exited" in out
    assert f"still on their old image: {', '.join(sorted(ROLLED))}" in out
    assert {site.containers()[f"ni-{n}"] for n in ROLLED} == {v2_name}
    wait_for(lambda: site.status()[first]["state"] == "running", 30, "the first NI on v2")
    i = ROLLED.index(first)
    assert lab.dhcp(apps[first], f"ra{i}") == ips[first]
    assert "roll.failed" in site.events()

    # a supervisor started with another image in its config adopts the running tasks
    # (no mass re-create) and rolls them
    lab.stop_supervisor()
    pids = {n: after[n]["task"]["pid"] for n in ROLLED}
    site.write_config(site.config)  # image: v1 again
    lab.start_supervisor()
    wait_for(lambda: "roll.done" in site.events(), 120, "the roll at start")
    events = site.events()
    assert "roll.started" in events and f"5 NIs run another image than {lab.image}" in events
    assert {site.containers()[f"ni-{n}"] for n in ROLLED} == {lab.image}
    rolled = [ln for ln in events.splitlines() if " ni.rolled " in ln]
    assert len(rolled) == 5, events  # one at a time, each with its downtime
    st = site.status()
    assert all(st[n]["state"] == "running" and st[n]["task"]["pid"] != pids[n]
               for n in ROLLED)

    for n in ROLLED:
        lab.cli("detach", n, "--netns", f"/run/netns/{apps[n]}")
    lab.cli("detach", ROLLED[0], "--netns", f"/run/netns/{web}")
    lab.cli("delete", *ROLLED, timeout=300)
