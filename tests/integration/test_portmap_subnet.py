"""Port maps for clients inside the NI's own subnet.

An NI may reuse an uplink's subnet. Here `same` has eth1's subnet 203.0.113.0/24
and a port map on eth0 (198.51.100.2:8080 -> its app srv 203.0.113.10:80):

    seg host 203.0.113.50 --- wan s1 (203.0.113.1) --- device eth1 --- NI other (10.2.0.0/24)
                                  |                                      app cli
    wan router 198.51.100.1 ---- w0 ---- device eth0 --- NI same (203.0.113.0/24)
                                                           app srv 203.0.113.10

A host on eth1's segment and an app of `other` (whose traffic leaves through eth1
and so arrives as 203.0.113.2) both reach srv through the port map, although
their addresses lie in `same`'s subnet: srv would answer them on its own bridge.
They arrive from the device's end of `same`'s transit link instead, and srv's
answer goes back through the NI. Clients from other segments keep their address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from runner.image.build import build_image
from runner.lab.topology import INET_IP, Lab, sh
from tests.integration.conftest import RUN_ID

SAME, OTHER = f"same-{RUN_ID}", f"other-{RUN_ID}"
SEG_HOST = "203.0.113.50"

MANIFESTS = f"""\
apiVersion: nirunner/v1
kind: NetworkInstance
metadata: {{name: {SAME}}}
spec:
  type: local
  uplink: eth0
  subnet: 203.0.113.0/24
  dhcp: {{reservations: [{{name: srv, mac: '02:00:00:00:5a:10', ip: 203.0.113.10}}]}}
  portMaps: [{{name: web, protocol: tcp, uplinkPort: 8080, target: srv, targetPort: 80}}]
---
apiVersion: nirunner/v1
kind: NetworkInstance
metadata: {{name: {OTHER}}}
spec: {{type: local, uplink: eth1, subnet: 10.2.0.0/24}}
"""


@dataclass
class Site:
    lab: Lab
    srv: str  # app netns in SAME
    cli: str  # app netns in OTHER
    seg: str  # host netns on eth1's segment
    transit: dict[str, str]  # SAME's transit link: device and NI address


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    lab = Lab(f"nrp{RUN_ID}", image_archive=str(build_image().archive))
    try:
        lab.build()
        seg = lab.segment_host("eth1", "seg", f"{SEG_HOST}/24")
        lab.start_containerd()
        lab.write_config(lab.image)
        lab.start_supervisor()
        (lab.base / "site.yaml").write_text(MANIFESTS)
        lab.cli("apply", "-f", str(lab.base / "site.yaml"))
        srv = lab.app("srv", SAME, "02:00:00:00:5a:10")
        assert lab.dhcp(srv, "srv") == "203.0.113.10"
        cli = lab.app("cli", OTHER)
        assert lab.dhcp(cli, "cli").startswith("10.2.0.")
        lab.serve(srv, "tcp", 80, "srv")
        lab.serve(lab.inet, "tcp", 7000, "inet")
        status = {s["name"]: s for s in json.loads(lab.cli("status", "--json").stdout)}
        transit = {k: v.split("/")[0] for k, v in status[SAME]["transit"].items()
                   if k in ("device", "ni")}
        yield Site(lab, srv, cli, seg, transit)
    finally:
        lab.teardown()


def test_the_segment_host_really_sits_on_eth1s_segment(site: Site) -> None:
    # on-link with the device's eth1 (and so inside the NI's subnet), no NI involved
    assert site.lab.ping(site.seg, "203.0.113.2")
    route = sh("ip", "-4", "route", "get", "203.0.113.2", netns=site.seg).stdout
    assert "via" not in route and "dev eth0" in route


def test_a_host_inside_the_ni_subnet_reaches_the_port_map(site: Site) -> None:
    reply = site.lab.connect(site.seg, "tcp", "198.51.100.2", 8080)
    assert reply == f"srv sees {site.transit['device']}"


def test_an_app_of_an_ni_on_that_uplink_reaches_the_port_map(site: Site) -> None:
    # out through eth1 (masqueraded to 203.0.113.2, inside SAME's subnet), across the
    # wan router, in on eth0
    assert site.lab.connect(site.cli, "tcp", INET_IP, 7000) == "inet sees 203.0.113.2"
    reply = site.lab.connect(site.cli, "tcp", "198.51.100.2", 8080)
    assert reply == f"srv sees {site.transit['device']}"


def test_clients_of_other_segments_keep_their_address(site: Site) -> None:
    assert site.lab.connect(site.lab.wan, "tcp", "198.51.100.2", 8080) == \
        "srv sees 198.51.100.1"
    assert site.lab.connect(site.lab.inet, "tcp", "198.51.100.2", 8080) == \
        f"srv sees {INET_IP}"


def test_the_apps_own_traffic_is_unchanged(site: Site) -> None:
    assert site.lab.connect(site.srv, "tcp", INET_IP, 7000) == "inet sees 198.51.100.2"
