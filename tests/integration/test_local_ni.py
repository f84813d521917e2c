"""Local NIs end to end: a lab device with two uplinks, the supervisor, real traffic.

One lab for the module: a device netns (eth0 198.51.100.2, eth1 203.0.113.2), a
wan router, an inet host (192.0.2.10) with TCP/UDP servers and DNS, and the NIs:

    a, b   10.1.0.0/24 on eth0 (overlap), a has a port map 8080 -> plc:80
    c      198.51.100.0/24 on eth0 (the uplink's own subnet)
    d      10.2.0.0/24 on eth1, port map 8090 -> its app's 9000
    e      10.3.0.0/24, air-gapped
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.image.build import build_image
from runner.lab.topology import INET_IP, Lab, sh
from tests.integration.conftest import RUN_ID

R = RUN_ID  # NI names carry the run id: nothing can clash with a real NI
A, B, C, D, E = (f"{x}-{R}" for x in "abcde")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def manifest(name: str, subnet: str, uplink: str | None = None, extra: str = "") -> str:
    up = f"  uplink: {uplink}\n" if uplink else ""
    dns = f"  dns: {{upstream: [{INET_IP}], domain: {name}.lan, " \
          f"static: [{{name: historian, addresses: [{subnet.rsplit('.', 1)[0]}.20]}}]}}\n"
    return (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {name}}}\n"
            f"spec:\n  type: local\n{up}  subnet: {subnet}\n{dns}{extra}")


SITE = "---\n".join([
    manifest(A, "10.1.0.0/24", "eth0",
             "  dhcp: {reservations: [{name: plc, mac: '02:00:00:00:0a:10', ip: 10.1.0.10}]}\n"
             "  portMaps: [{name: web, protocol: tcp, uplinkPort: 8080, target: plc, "
             "targetPort: 80}]\n"),
    manifest(B, "10.1.0.0/24", "eth0",
             "  dhcp: {reservations: [{name: twin, mac: '02:00:00:00:0b:10', ip: 10.1.0.10}]}\n"
             "  mtu: 1400\n  ntp: [192.0.2.123]\n"),
    manifest(C, "198.51.100.0/24", "eth0"),
    manifest(D, "10.2.0.0/24", "eth1",
             "  dhcp: {reservations: [{name: srv, mac: '02:00:00:00:0d:10', ip: 10.2.0.10}]}\n"
             "  portMaps: [{name: svc, protocol: tcp, uplinkPort: 8090, target: srv, "
             "targetPort: 9000}]\n"),
    manifest(E, "10.3.0.0/24"),
])


class Site:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.apps: dict[str, str] = {}  # app -> netns
        self.ips: dict[str, str] = {}
        self.leases: dict[str, dict[str, str]] = {}

    def plug(self, app: str, ni: str, mac: str = "") -> str:
        ns = self.lab.app(app, ni, mac)
        self.apps[app] = ns
        self.leases[app] = self.lab.dhcp_lease(ns, app)
        self.ips[app] = self.leases[app]["ip"]
        return ns

    def status(self) -> dict[str, dict]:
        out = self.lab.cli("status", "--json").stdout
        return {s["name"]: s for s in json.loads(out)}

    def dns(self, app: str, server: str, name: str) -> list[str]:
        res = sh(sys.executable, "-m", "runner.lab.dnsq", server, name,
                 netns=self.apps[app], check=False)
        return res.stdout.split()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    lab = Lab(f"nrt{R}", image_archive=str(build_image().archive))
    try:
        lab.build()
        lab.start_dns({"www.example.test": INET_IP})
        lab.serve(lab.inet, "both", 7000, "inet")
        lab.start_containerd()
        lab.write_config(lab.image)
        lab.start_supervisor()
        (lab.base / "site.yaml").write_text(SITE)
        lab.cli("apply", "-f", str(lab.base / "site.yaml"))
        s = Site(lab)
        s.plug("plc", A, "02:00:00:00:0a:10")
        s.plug("hmi", A)
        s.plug("twin", B, "02:00:00:00:0b:10")
        s.plug("cee", C)
        s.plug("srv", D, "02:00:00:00:0d:10")
        s.plug("gap1", E)
        s.plug("gap2", E)
        lab.serve(s.apps["plc"], "tcp", 80, "plc")
        lab.serve(s.apps["srv"], "both", 9000, "srv")
        lab.serve(s.apps["gap2"], "both", 9000, "gap2")
        yield s
    finally:
        lab.teardown()


def test_overlapping_subnets_reach_the_outside_at_once(site: Site) -> None:
    assert site.ips["plc"] == site.ips["twin"] == "10.1.0.10"
    replies: dict[str, str | None] = {}

    def go(app: str) -> None:
        replies[app] = site.lab.connect(site.apps[app], "tcp", INET_IP, 7000)

    threads = [threading.Thread(target=go, args=(a,)) for a in ("plc", "twin", "cee")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # both apps with the same IP, and the NI that equals the uplink's subnet, get out
    # through the double NAT: the inet host sees the uplink address
    assert replies == {a: "inet sees 198.51.100.2" for a in ("plc", "twin", "cee")}
    assert site.ips["cee"].startswith("198.51.100.")
    assert site.lab.connect(site.apps["srv"], "udp", INET_IP, 7000) == "inet sees 203.0.113.2"


def test_dhcp_and_dns(site: Site) -> None:
    assert site.ips["hmi"].startswith("10.1.0.") and site.ips["hmi"] != "10.1.0.10"
    assert site.dns("hmi", "10.1.0.1", f"plc.{A}.lan") == ["10.1.0.10"]  # reservation
    assert site.dns("plc", "10.1.0.1", "hmi") == [site.ips["hmi"]]  # name the client sent
    assert site.dns("hmi", "10.1.0.1", "historian") == ["10.1.0.20"]  # static entry
    assert site.dns("hmi", "10.1.0.1", "www.example.test") == [INET_IP]  # upstream
    leases = {x["hostname"]: x["ip"] for x in site.status()[A]["apps"]}
    assert leases == {"plc": "10.1.0.10", "hmi": site.ips["hmi"]}


def test_dhcp_options(site: Site) -> None:
    assert site.leases["twin"] == {
        "ip": "10.1.0.10", "mask": "24", "router": "10.1.0.1", "dns": "10.1.0.1",
        "mtu": "1400", "ntp": "192.0.2.123", "domain": f"{B}.lan"}
    assert site.leases["plc"]["ntp"] == "none" and site.leases["plc"]["mtu"] == "1500"
    assert "mtu 1400" in sh("ip", "link", "show", "eth0", netns=site.apps["twin"]).stdout
    assert "mtu 1400" in sh("ip", "link", "show", "br0", netns=f"nr-{B}").stdout


def test_api_socket_is_root_only(site: Site) -> None:
    assert (Path(site.lab.socket).stat().st_mode & 0o777) == 0o600


def test_dry_run_changes_nothing(site: Site) -> None:
    hosts = site.lab.state_dir / "ni" / A / "config" / "hosts"
    before = hosts.read_text()
    changed = SITE.replace("historian, addresses: [10.1.0.20]", "archive, addresses: [10.1.0.21]")
    f = site.lab.base / "changed.yaml"
    f.write_text(changed)
    out = site.lab.cli("apply", "--dry-run", "-f", str(f)).stdout
    assert f"{A}: update" in out
    assert hosts.read_text() == before
    assert site.dns("hmi", "10.1.0.1", "archive") == []


def test_detach(site: Site) -> None:
    lab = site.lab
    ns = lab.app("tmp", E)
    assert "eth0" in sh("ip", "-o", "link", netns=ns).stdout
    lab.cli("detach", E, "--netns", f"/run/netns/{ns}")
    assert "eth0" not in sh("ip", "-o", "link", netns=ns).stdout
    assert all(a["netns"] != f"/run/netns/{ns}" for a in site.status()[E]["attached"])


def _wan_counter(lab: Lab) -> int:
    out = sh("nft", "list", "counter", "inet", "labwatch", "hairpin", netns=lab.wan).stdout
    return int(out.split("packets")[1].split()[0])


def test_port_maps_and_hairpins(site: Site) -> None:
    lab = site.lab
    assert lab.connect(lab.wan, "tcp", "198.51.100.2", 8080) == "plc sees 198.51.100.1"
    # another NI on the same uplink: hairpin inside the box
    assert lab.connect(site.apps["twin"], "tcp", "198.51.100.2", 8080) is not None
    # another app of the same NI
    assert lab.connect(site.apps["hmi"], "tcp", "198.51.100.2", 8080) is not None
    # an NI on another uplink: out through eth1, across the wan router, in on eth0
    sh("nft", "-f", "-", netns=lab.wan, input=(
        "table inet labwatch {\n counter hairpin {}\n chain watch {\n"
        "  type filter hook forward priority 0;\n"
        "  ip saddr 203.0.113.2 ip daddr 198.51.100.2 tcp dport 8080 counter name hairpin\n"
        " }\n}\n"))
    before = _wan_counter(lab)
    assert lab.connect(site.apps["srv"], "tcp", "198.51.100.2", 8080) == "plc sees 203.0.113.2"
    assert _wan_counter(lab) > before
    # and the port map on eth1 works from the wan side
    assert lab.connect(lab.wan, "tcp", "203.0.113.2", 8090) == "srv sees 203.0.113.1"
    # a port that is not mapped is not open
    assert lab.connect(lab.wan, "tcp", "198.51.100.2", 8081, timeout=1) is None


@pytest.fixture(scope="module")
def listeners(site: Site) -> dict[str, str]:
    """Servers where only the firewall can stop a connection: in the device netns and
    inside NI D's own netns (each reachable from where it should be: see the tests)."""
    st = site.status()
    site.lab.serve(site.lab.device, "both", 9100, "device")
    site.lab.serve(f"nr-{D}", "both", 9100, "ni-d")
    site.lab.serve(f"nr-{A}", "both", 9100, "ni-a")
    return {"device": st[A]["transit"]["device"].split("/")[0],
            "d_transit": st[D]["transit"]["ni"].split("/")[0],
            "a_transit": st[A]["transit"]["ni"].split("/")[0]}


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_no_direct_traffic_between_nis(site: Site, listeners: dict[str, str],
                                       proto: str) -> None:
    lab, plc, srv = site.lab, site.apps["plc"], site.apps["srv"]
    # the listeners answer where they should: the device from the wan, NIs locally
    assert lab.connect(lab.wan, proto, "198.51.100.2", 9100) == "device sees 198.51.100.1"
    assert lab.connect(f"nr-{D}", proto, listeners["d_transit"], 9100) is not None
    assert lab.connect(f"nr-{A}", proto, "10.1.0.1", 9100) is not None
    # an app reaches its own gateway for DHCP and DNS only (and ICMP)
    assert lab.connect(plc, proto, "10.1.0.1", 9100, timeout=1) is None
    # but not from another NI's app
    assert lab.connect(plc, proto, listeners["d_transit"], 9100, timeout=1) is None
    assert lab.connect(plc, proto, site.ips["srv"], 9000, timeout=1) is None
    assert lab.connect(srv, proto, site.ips["plc"], 80, timeout=1) is None
    assert lab.connect(srv, proto, listeners["a_transit"], 8080, timeout=1) is None
    # and nothing of the device netns is reachable from an NI
    assert lab.connect(plc, proto, listeners["device"], 9100, timeout=1) is None
    assert lab.connect(plc, proto, "198.51.100.2", 9100, timeout=1) is None
    assert lab.connect(srv, proto, "203.0.113.2", 9100, timeout=1) is None


def test_no_icmp_between_nis_or_to_the_device(site: Site, listeners: dict[str, str]) -> None:
    lab, plc = site.lab, site.apps["plc"]
    assert lab.ping(plc, "10.1.0.1")  # its own gateway answers
    assert lab.ping(plc, INET_IP)  # ICMP through the NAT is fine
    assert lab.ping(lab.wan, "198.51.100.2")  # the device answers the wan
    assert lab.ping(f"nr-{D}", listeners["d_transit"])
    assert not lab.ping(plc, site.ips["srv"])
    assert not lab.ping(plc, listeners["d_transit"])
    assert not lab.ping(plc, listeners["device"])
    assert not lab.ping(plc, "198.51.100.2")


def test_air_gapped_ni(site: Site) -> None:
    lab = site.lab
    gap1 = site.apps["gap1"]
    assert site.status()[E]["uplink"] == "" and "transit" not in site.status()[E]
    assert lab.connect(gap1, "tcp", site.ips["gap2"], 9000) == f"gap2 sees {site.ips['gap1']}"
    assert site.dns("gap1", "10.3.0.1", "gap2") == [site.ips["gap2"]]
    assert site.dns("gap1", "10.3.0.1", "www.example.test") == []
    assert lab.connect(gap1, "tcp", INET_IP, 7000, timeout=1) is None
    assert not lab.ping(gap1, INET_IP)
    assert not lab.ping(gap1, "198.51.100.2")


def test_one_labelled_task_per_ni(site: Site) -> None:
    ctr = ["ctr", "--address", site.lab.containerd.address, "-n", site.lab.namespace]
    tasks = sh(*ctr, "tasks", "ls").stdout.splitlines()[1:]
    running = {ln.split()[0] for ln in tasks if ln.split()[-1] == "RUNNING"}
    assert running == {f"ni-{n}" for n in (A, B, C, D, E)}
    info = json.loads(sh(*ctr, "containers", "info", f"ni-{D}").stdout)
    assert info["Labels"]["io.nirunner.ni.name"] == D
    assert info["Labels"]["io.nirunner.ni.type"] == "local"
    assert info["Labels"]["io.nirunner.ni.uplink"] == "eth1"
    assert info["Labels"]["io.nirunner.ni.generation"]
    st = site.status()
    assert all(s["state"] == "running" for s in st.values()), st


BAD = [
    ("bad CIDR", "subnet: 10.1.0.0/33", "spec.subnet"),
    ("host bits", "subnet: 10.1.0.5/24", "spec.subnet"),
    ("gateway outside", "subnet: 10.1.0.0/24\n  gateway: 10.9.0.1", "spec.gateway"),
    ("range outside",
     "subnet: 10.1.0.0/24\n  dhcp: {range: {start: 10.2.0.5, end: 10.1.0.50}}",
     "spec.dhcp.range.start"),
    ("reservation twice",
     "subnet: 10.1.0.0/24\n  dhcp: {reservations: [{name: a, mac: '02:00:00:00:00:01', "
     "ip: 10.1.0.9}, {name: b, mac: '02:00:00:00:00:02', ip: 10.1.0.9}]}",
     "spec.dhcp.reservations[1].ip"),
    ("unknown uplink", "subnet: 10.1.0.0/24\n  uplink: eth7", "spec.uplink"),
    ("port clash with a running NI",
     "subnet: 10.9.0.0/24\n  uplink: eth0\n  dhcp: {reservations: [{name: x, "
     "mac: '02:00:00:00:00:03', ip: 10.9.0.9}]}\n  portMaps: [{name: p, protocol: tcp, "
     "uplinkPort: 8080, target: x, targetPort: 80}]", "portMaps"),
    ("port map air-gapped",
     "subnet: 10.1.0.0/24\n  portMaps: [{name: p, protocol: tcp, uplinkPort: 81, "
     "target: 10.1.0.9, targetPort: 80}]", "spec.portMaps"),
    ("injection in a reservation name",
     "subnet: 10.1.0.0/24\n  dhcp: {reservations: [{name: \"x\\nserver=1.2.3.4\", "
     "mac: '02:00:00:00:00:04', ip: 10.1.0.9}]}", "spec.dhcp.reservations[0].name"),
    ("injection in a static name",
     "subnet: 10.1.0.0/24\n  dns: {static: [{name: 'a;b', addresses: [10.1.0.7]}]}",
     "spec.dns.static[0].name"),
    ("hostname with a space",
     "subnet: 10.1.0.0/24\n  dns: {static: [{name: 'a b', addresses: [10.1.0.7]}]}",
     "spec.dns.static[0].name"),
    ("domain with a semicolon", "subnet: 10.1.0.0/24\n  dns: {domain: 'x;reboot'}",
     "spec.dns.domain"),
    ("unknown field", "subnet: 10.1.0.0/24\n  subnett: 1", "spec.subnett"),
    ("wrong type", "subnet: 10.1.0.0/24\n  mtu: big", "spec.mtu"),
    ("bad memory", "subnet: 10.1.0.0/24\n  resources: {memory: lots}", "spec.resources.memory"),
    ("bad port", "subnet: 10.1.0.0/24\n  uplink: eth0\n  portMaps: [{name: p, protocol: tcp, "
     "uplinkPort: 70000, target: 10.1.0.9, targetPort: 80}]", "spec.portMaps[0].uplinkPort"),
]


@pytest.mark.parametrize("case,spec,path", BAD, ids=[b[0] for b in BAD])
def test_bad_manifest_is_rejected_and_changes_nothing(
    site: Site, case: str, spec: str, path: str
) -> None:
    doc = ("apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {name: bad}\n"
           f"spec:\n  type: local\n  {spec}\n")
    f = site.lab.base / "bad.yaml"
    f.write_text(doc)
    before = (sorted(site.status()), _our_netns())
    res = site.lab.cli("apply", "-f", str(f), check=False)
    assert res.returncode == 1, res.stdout
    assert path in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert "line" in res.stderr or case.startswith("port clash")
    assert (sorted(site.status()), _our_netns()) == before


def _our_netns() -> list[str]:
    """Network namespaces of this run (other labs may come and go meanwhile)."""
    return sorted(n.split()[0] for n in sh("ip", "netns", "list").stdout.splitlines()
                  if R in n or n.startswith("nr-bad"))


def test_injection_in_the_ni_name_is_rejected(site: Site) -> None:
    f = site.lab.base / "bad.yaml"
    f.write_text("apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {name: 'a;b'}\n"
                 "spec: {type: local, subnet: 10.1.0.0/24}\n")
    res = site.lab.cli("apply", "-f", str(f), check=False)
    assert res.returncode == 1 and "metadata.name" in res.stderr and "'a;b'" in res.stderr


def test_delete_leaves_nothing_and_others_keep_working(site: Site) -> None:
    lab = site.lab
    name = f"z-{R}"
    f = lab.base / "z.yaml"
    f.write_text(manifest(name, "10.1.0.0/24", "eth0",
                          "  portMaps: [{name: q, protocol: udp, uplinkPort: 5353, "
                          "target: 10.1.0.50, targetPort: 53}]\n"))
    lab.cli("apply", "-f", str(f))
    z = site.status()[name]
    link = z["transit"]["link"]
    assert f"nr-{name}" in sh("ip", "netns", "list").stdout

    stop = threading.Event()
    failures: list[str] = []

    def keep_talking() -> None:  # another NI's app, all through the delete
        while not stop.is_set():
            if lab.connect(site.apps["twin"], "tcp", INET_IP, 7000) is None:
                failures.append("twin lost its connection")

    t = threading.Thread(target=keep_talking)
    t.start()
    try:
        lab.cli("delete", name)
    finally:
        stop.set()
        t.join(30)
    assert failures == []
    dev = lab.device
    assert f"nr-{name}" not in sh("ip", "netns", "list").stdout
    assert link not in sh("ip", "-o", "link", netns=dev).stdout
    assert f"iif {link} " not in sh("ip", "rule", netns=dev).stdout + " "
    assert link not in sh("nft", "list", "ruleset", netns=dev).stdout
    assert "5353" not in sh("nft", "list", "ruleset", netns=dev).stdout
    ctr = ["ctr", "--address", lab.containerd.address, "-n", lab.namespace]
    assert f"ni-{name}" not in sh(*ctr, "containers", "ls", "-q").stdout.split()
    assert f"ni-{name}" not in sh(*ctr, "snapshots", "ls").stdout
    assert not (lab.state_dir / "ni" / name).exists()
    assert name not in json.loads((lab.state_dir / "desired.json").read_text())["body"]["nis"]
    res = lab.cli("delete", name, check=False)
    assert res.returncode == 1 and "no such NI" in res.stderr


def test_cli_errors_without_a_supervisor(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "runner.cli.main", "status", "--socket",
                          str(tmp_path / "none.sock")], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 1
    assert "the supervisor is not running" in res.stderr and "Traceback" not in res.stderr


def test_demo_runs() -> None:
    res = subprocess.run([sys.executable, "-m", "runner.lab.demo"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "10 of 10 checks passed" in res.stdout
