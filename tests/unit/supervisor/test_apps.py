"""attach --app (which MAC and hostname an attachment of a declared app gets) and inspect's
appEdge view."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from runner.model.types import App
from runner.supervisor.apps import AppError, bind, view
from tests.unit.plan.sample import ALPHA

NI = replace(ALPHA, apps=(App("plc", "02:00:00:00:00:10", IPv4Address("10.1.0.20"), ()),
                          App("hmi", "02:00:00:00:00:11")))


def test_bind_gives_the_declared_mac_and_name() -> None:
    assert bind(NI, "plc") == ("02:00:00:00:00:10", "plc")
    assert bind(NI, "web") == ("52:54:00:00:01:10", "web")  # a reservation is an app
    assert bind(NI, "hmi", "02-00-00-00-00-11", "hmi") == ("02:00:00:00:00:11", "hmi")


@pytest.mark.parametrize("app, mac, hostname, message", [
    ("plcc", "", "", "attach to NI alpha: 'plcc' is not a declared app of it (declared: db, "
                     "hmi, plc, web) (did you mean 'plc'?)"),
    ("plc", "02:00:00:00:00:99", "", "app plc has MAC 02:00:00:00:00:10, not "
                                     "02:00:00:00:00:99; leave --mac out"),
    ("plc", "", "other", "app plc has hostname plc, not other; leave --hostname out"),
])
def test_bind_refuses_what_does_not_match(app: str, mac: str, hostname: str,
                                          message: str) -> None:
    with pytest.raises(AppError) as e:
        bind(NI, app, mac, hostname)
    assert message in str(e.value)


def test_view_names_ports_by_app() -> None:
    counters = {"drops": {"ap2": {"ip": 3, "arp": 1}},
                "rules": {"plc egress default": {"packets": 2, "bytes": 120}}}
    v = view(NI, [("ap1", "02:00:00:00:00:10"), ("ap2", "02:00:00:00:00:77")], counters,
             {"leasesFollowed": True})
    assert v["ports"] == [
        {"port": "ap1", "mac": "02:00:00:00:00:10", "app": "plc", "drops": {}},
        {"port": "ap2", "mac": "02:00:00:00:00:77", "app": None,
         "drops": {"ip": 3, "arp": 1}}]
    assert v["acls"] == {"plc": 0} and v["rules"]["plc egress default"]["packets"] == 2
    assert v["flowLog"] is True and v["leasesFollowed"] is True
    assert view(NI, [], None, {})["rules"] == {}
