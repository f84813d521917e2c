"""Key layout, status documents, etcd helpers and the fleet CLI's pure parts."""

from __future__ import annotations

import json

import pytest

from runner.cli.fleet_commands import render_fleet
from runner.fleet.etcd import EtcdError, _target, prefix_end
from runner.fleet.keys import Layout, LayoutError
from runner.fleet.report import Rejected, documents
from runner.fleet.wiring import brief

L = Layout("/nirunner")


def test_layout_keys() -> None:
    assert L.ni("edge-1", "factory") == "/nirunner/devices/edge-1/networkinstances/factory"
    assert L.summary("edge-1") == "/nirunner/status/edge-1/device"
    assert L.ni_status("edge-1", "x") == "/nirunner/status/edge-1/networkinstances/x"
    assert L.desired_key(L.ni("a", "n1")) == ("a", "n1")
    assert L.desired_key("/nirunner/devices/a/other/n1") is None
    assert L.desired_key("/nirunner/devices/a/networkinstances/") is None
    assert L.desired_key("/other/devices/a/networkinstances/n1") is None
    assert L.desired_key(L.devices() + "a/networkinstances/x/y") == ("a", "x/y")  # reported
    assert L.status_key(L.summary("a")) == ("a", None)
    assert L.status_key(L.ni_status("a", "n")) == ("a", "n")
    assert L.status_key("/nirunner/status/a/junk") is None


@pytest.mark.parametrize("device", ["", "A", "-a", "a-", "a_b", "a/b", "x" * 64, "a\n"])
def test_bad_device_ids(device: str) -> None:
    with pytest.raises(LayoutError, match="device id"):
        L.device(device)


@pytest.mark.parametrize("prefix", ["", "/", "nirunner", "/a/", "/a//b", "/a/../b", "/a b",
                                    "/a\n"])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(LayoutError, match="prefix"):
        Layout(prefix)


def test_prefix_end() -> None:
    assert prefix_end("/a/") == b"/a0"
    assert prefix_end("a\xff") == "a\xff".encode()[:-1] + bytes([0xC0])
    assert prefix_end("") == b"\0"


def test_endpoints() -> None:
    assert _target("https://10.0.0.1:2379") == ("10.0.0.1:2379", True)
    assert _target("http://etcd-1.lan:2379") == ("etcd-1.lan:2379", False)
    assert _target("10.0.0.1:2379") == ("10.0.0.1:2379", True)
    assert _target("https://[fd00::1]:2379") == ("[fd00::1]:2379", True)
    for bad in ("ftp://a:1", "https://a", "https://:2379"):
        with pytest.raises(EtcdError, match="not like https://HOST:PORT"):
            _target(bad)


def test_status_documents() -> None:
    docs = documents(L, "a", [
        {"name": "one", "state": "running", "reason": "", "pid": 7, "apps": 2, "vpn": None},
        {"name": "two", "state": "degraded", "reason": "dnsmasq backoff", "pid": 8, "apps": 0,
         "vpn": "INSTALLED"},
    ], {"one": 10, "two": 11}, {"two": Rejected(12, "bad mtu"), "three": Rejected(13, "no")},
        {"connectedSince": "T", "revision": 13, "version": "v"})
    assert json.loads(docs[L.summary("a")]) == {
        "device": "a", "connectedSince": "T", "revision": 13, "version": "v", "nis": 3,
        "running": 1, "rejected": 2}
    assert json.loads(docs[L.ni_status("a", "one")]) == {
        "name": "one", "state": "running", "reason": "", "pid": 7, "apps": 2, "vpn": None,
        "applied": 10}
    two = json.loads(docs[L.ni_status("a", "two")])
    assert two["state"] == "degraded" and two["applied"] == 11
    assert two["rejected"] == {"revision": 12, "reason": "bad mtu"}
    assert json.loads(docs[L.ni_status("a", "three")]) == {
        "name": "three", "state": "rejected", "reason": "no", "pid": 0, "apps": 0,
        "vpn": None, "applied": None, "rejected": {"revision": 13, "reason": "no"}}
    # same input, same text: a device writes only what changed
    assert docs == documents(L, "a", [
        {"name": "two", "state": "degraded", "reason": "dnsmasq backoff", "pid": 8, "apps": 0,
         "vpn": "INSTALLED"},
        {"name": "one", "state": "running", "reason": "", "pid": 7, "apps": 2, "vpn": None},
    ], {"two": 11, "one": 10}, {"three": Rejected(13, "no"), "two": Rejected(12, "bad mtu")},
        {"version": "v", "revision": 13, "connectedSince": "T"})


def test_brief_of_a_supervisor_status() -> None:
    st = {"name": "v", "state": "degraded", "reason": "tunnel down", "task": {"pid": 9},
          "apps": [{"ip": "10.0.0.5"}, {"ip": "10.0.0.6"}],
          "vpn": {"up": False, "child": {"state": "DOWN"}, "ike": {"state": "CONNECTING"}}}
    assert brief(st) == {"name": "v", "state": "degraded", "reason": "tunnel down", "pid": 9,
                         "apps": 2, "vpn": "DOWN"}
    assert brief({"name": "l", "task": {}, "apps": []})["vpn"] is None


def test_fleet_table() -> None:
    text = render_fleet([
        {"device": "a", "online": True, "desired": ["n1", "n2"],
         "summary": {"connectedSince": "2026-01-01T00:00:00Z", "revision": 9, "running": 1,
                     "rejected": 1},
         "nis": [{"name": "n1", "state": "running", "reason": "", "pid": 5, "apps": 1,
                  "vpn": None, "applied": 7},
                 {"name": "n2", "state": "rejected", "reason": "spec.mtu bad", "pid": 0,
                  "apps": 0, "vpn": None, "applied": None,
                  "rejected": {"revision": 9, "reason": "spec.mtu bad"}}]},
        {"device": "b", "online": False, "desired": ["x"], "summary": None, "nis": []},
    ])
    lines = text.splitlines()
    assert lines[0].split() == ["DEVICE", "STATUS", "CONNECTED", "SINCE", "REVISION", "DESIRED",
                                "RUNNING", "REJECTED"]
    assert lines[1].split() == ["a", "online", "2026-01-01T00:00:00Z", "9", "2", "1", "1"]
    assert lines[2].split()[:4] == ["b", "no", "status", "(offline?)"]
    assert "a/n2: rejected: spec.mtu bad" in text
    assert text.count("spec.mtu bad") == 1  # the same reason is not repeated
    assert render_fleet([]) == "no devices"
