"""The plugin driven as a runtime drives it: CNI_* environment and stdin in,
stdout and exit code out; a fake supervisor behind the Backend interface."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runner.cni import plugin
from runner.cni.api import AttachmentKey, PortMapping
from tests.unit.cni.fake import FakeNI, FakeSupervisor

NETNS = "/run/netns/app1"


def conf(version: str = "1.1.0", **extra: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "factory", "type": "nirunner", "ni": "factory",
            **extra}


def env(command: str, cid: str = "c1", ifname: str = "eth0", **extra: str) -> dict[str, str]:
    e = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": NETNS,
         "CNI_IFNAME": ifname, "CNI_PATH": "/opt/cni/bin"}
    e.update(extra)
    return e


def call(sup: FakeSupervisor, e: dict[str, str], stdin: Any) -> tuple[dict[str, Any] | None, int]:
    raw = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    out, rc = plugin.run(e, raw, sup.connect)
    return (json.loads(out) if out else None), rc


def error_code(result: tuple[dict[str, Any] | None, int]) -> int:
    doc, rc = result
    assert rc == 1 and doc is not None
    assert set(doc) >= {"cniVersion", "code", "msg"}, doc
    return int(doc["code"])


@pytest.fixture
def sup() -> FakeSupervisor:
    return FakeSupervisor()


# -- VERSION -----------------------------------------------------------------------------

def test_version_lists_the_supported_versions_and_echoes_the_request(sup: FakeSupervisor) -> None:
    doc, rc = call(sup, {"CNI_COMMAND": "VERSION"}, {"cniVersion": "1.0.0"})
    assert rc == 0 and doc == {"cniVersion": "1.0.0",
                               "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}
    doc, rc = call(sup, {"CNI_COMMAND": "VERSION"}, b"")
    assert rc == 0 and doc is not None and doc["cniVersion"] == "1.1.0"
    # as libcni (podman 4.3) sends it
    libcni = {"CNI_COMMAND": "VERSION", "CNI_NETNS": "dummy", "CNI_IFNAME": "dummy",
              "CNI_PATH": "dummy", "CNI_CONTAINERID": "", "CNI_ARGS": ""}
    assert call(sup, libcni, {"cniVersion": "1.0.0"})[1] == 0
    assert sup.calls == []  # VERSION never talks to the supervisor


# -- ADD -----------------------------------------------------------------------------------

def test_add_returns_interface_address_routes_and_dns(sup: FakeSupervisor) -> None:
    doc, rc = call(sup, env("ADD"), conf())
    assert rc == 0 and doc is not None
    assert doc["cniVersion"] == "1.1.0"
    assert doc["interfaces"] == [{"name": "eth0", "mac": "02:00:00:00:00:99",
                                  "sandbox": NETNS, "mtu": 1500}]
    assert doc["ips"] == [{"address": "10.1.0.100/24", "gateway": "10.1.0.1", "interface": 0}]
    assert doc["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]
    assert doc["dns"] == {"nameservers": ["10.1.0.1"], "domain": "factory.lan",
                          "search": ["factory.lan"]}
    assert AttachmentKey("factory", "c1", "eth0") in sup.attachments
    assert sup.closed == 1


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_add_result_follows_the_requested_version(sup: FakeSupervisor, version: str) -> None:
    doc, rc = call(sup, env("ADD"), conf(version))
    assert rc == 0 and doc is not None and doc["cniVersion"] == version
    assert "mtu" not in doc["interfaces"][0]  # 1.1.0 only
    assert ("version" in doc["ips"][0]) == (version == "0.4.0")


def test_add_passes_mac_port_mappings_and_hostname(sup: FakeSupervisor) -> None:
    rc_conf = conf(runtimeConfig={
        "mac": "02:AA:00:00:00:01", "aliases": ["Web_1", "web"],
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                         {"hostPort": 5353, "containerPort": 53, "protocol": "UDP",
                          "hostIP": "0.0.0.0"}]})
    doc, rc = call(sup, env("ADD", CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=pod-x"), rc_conf)
    assert rc == 0 and doc is not None
    att = sup.attachments[AttachmentKey("factory", "c1", "eth0")]
    assert att.mac == "02:aa:00:00:00:01" == doc["interfaces"][0]["mac"]
    assert att.port_mappings == (PortMapping(8080, 80, "tcp"), PortMapping(5353, 53, "udp"))


def test_add_hostname_comes_from_app_then_pod_name_then_aliases() -> None:
    from runner.cni import spec

    def netconf(**extra: Any) -> spec.NetConf:
        return spec.parse_config(json.dumps(conf(**extra)).encode(), "ADD")

    inv = spec.parse_env(env("ADD", CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=Web-1"))
    assert spec.hostname(netconf(), inv) == "web-1"
    assert spec.hostname(netconf(app="plc"), inv) == "plc"
    bare = spec.parse_env(env("ADD", CNI_ARGS="K8S_POD_NAME=under_score"))
    assert spec.hostname(netconf(runtimeConfig={"aliases": ["bad_name", "db"]}), bare) == "db"
    # podman 4.3 sends aliases as an object of lists by network name
    podman = netconf(runtimeConfig={"aliases": {"factory": ["f4f9c4514606"], "other": ["x"]}})
    assert podman.aliases == ("f4f9c4514606",)
    assert spec.hostname(netconf(), spec.parse_env(env("ADD"))) == ""


def test_add_keeps_a_previous_plugins_result(sup: FakeSupervisor) -> None:
    prev = {"cniVersion": "1.1.0", "interfaces": [{"name": "tap0"}],
            "ips": [{"address": "192.168.9.2/24", "interface": 0}], "dns": {}}
    doc, rc = call(sup, env("ADD"), conf(prevResult=prev))
    assert rc == 0 and doc is not None
    assert [i["name"] for i in doc["interfaces"]] == ["tap0", "eth0"]
    assert doc["ips"][1] == {"address": "10.1.0.100/24", "gateway": "10.1.0.1", "interface": 1}


def test_add_errors_map_to_the_specs_codes(sup: FakeSupervisor) -> None:
    assert error_code(call(sup, env("ADD"), b"{not json")) == 6
    assert error_code(call(sup, env("ADD"), b"[1, 2]")) == 6
    assert error_code(call(sup, env("ADD"), conf("0.3.1"))) == 1
    assert error_code(call(sup, env("ADD"), conf("one"))) == 6
    no_ni = conf()
    del no_ni["ni"]
    assert error_code(call(sup, env("ADD"), no_ni)) == 7
    assert error_code(call(sup, env("ADD"), conf(ni="Bad_Name"))) == 7
    assert error_code(call(sup, env("ADD"), conf(mac="01:00:00:00:00:01"))) == 7  # multicast
    assert error_code(call(sup, env("ADD"), conf(socket="relative.sock"))) == 7
    assert error_code(call(sup, env("ADD"), conf(name="bad name"))) == 7
    assert error_code(call(sup, env("ADD"), conf(ipam={"type": "host-local"}))) == 2
    bad_ports = conf(runtimeConfig={"portMappings": [{"hostPort": 0, "containerPort": 80}]})
    assert error_code(call(sup, env("ADD"), bad_ports)) == 7
    bad_proto = conf(runtimeConfig={"portMappings": [
        {"hostPort": 80, "containerPort": 80, "protocol": "sctp"}]})
    assert error_code(call(sup, env("ADD"), bad_proto)) == 7
    assert sup.calls == []  # nothing reached the supervisor


def test_add_missing_or_bad_environment_is_code_4(sup: FakeSupervisor) -> None:
    e = env("ADD")
    del e["CNI_NETNS"]
    doc, rc = call(sup, e, conf())
    assert error_code((doc, rc)) == 4 and doc is not None and "CNI_NETNS" in doc["msg"]
    e = env("ADD")
    del e["CNI_COMMAND"]
    doc, rc = call(sup, e, conf())
    assert error_code((doc, rc)) == 4 and doc is not None and "CNI_COMMAND" in doc["msg"]
    assert error_code(call(sup, env("CONNECT"), conf())) == 4
    assert error_code(call(sup, env("ADD", ifname="a/b"), conf())) == 4
    assert error_code(call(sup, env("ADD", ifname="x" * 16), conf())) == 4
    assert error_code(call(sup, env("ADD", cid="-bad"), conf())) == 4
    assert error_code(call(sup, env("ADD", CNI_ARGS="novalue"), conf())) == 4
    assert error_code(call(sup, env("ADD", CNI_NETNS="relative/ns"), conf())) == 4
    assert sup.calls == []


def test_add_supervisor_answers(sup: FakeSupervisor) -> None:
    assert error_code(call(sup, env("ADD"), conf(ni="nosuch"))) == 7
    sup.nis["factory"] = FakeNI(uplink_ports={("tcp", 8080)})
    mapped = conf(runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    assert error_code(call(sup, env("ADD"), mapped)) == 101  # a manifest's port map holds it
    assert call(sup, env("ADD"), conf())[1] == 0
    assert error_code(call(sup, env("ADD"), conf())) == 102  # ADD twice without DEL
    sup.nis["factory"].ready = False
    assert error_code(call(sup, env("ADD", cid="c2"), conf())) == 11
    sup.running = False
    doc, rc = call(sup, env("ADD", cid="c3"), conf())
    assert error_code((doc, rc)) == 11 and doc is not None and "socket" in doc["msg"]


def test_twenty_adds_get_twenty_addresses(sup: FakeSupervisor) -> None:
    ips = set()
    for i in range(20):
        doc, rc = call(sup, env("ADD", cid=f"c{i}"), conf())
        assert rc == 0 and doc is not None
        ips.add(doc["ips"][0]["address"])
    assert len(ips) == 20 and len(sup.attachments) == 20


# -- DEL -------------------------------------------------------------------------------------

def test_del_is_idempotent_and_needs_no_netns(sup: FakeSupervisor) -> None:
    assert call(sup, env("ADD"), conf())[1] == 0
    e = env("DEL")
    del e["CNI_NETNS"]  # optional for DEL: the netns may be gone already
    assert call(sup, e, conf()) == (None, 0)
    assert sup.attachments == {}
    assert call(sup, e, conf()) == (None, 0)
    assert call(sup, env("DEL"), conf(ni="deleted-since")) == (None, 0)


def test_del_errors(sup: FakeSupervisor) -> None:
    assert error_code(call(sup, env("DEL"), b"")) == 6
    e = env("DEL")
    del e["CNI_IFNAME"]
    assert error_code(call(sup, e, conf())) == 4
    sup.running = False
    doc, rc = call(sup, env("DEL"), conf())
    assert error_code((doc, rc)) == 11 and doc is not None and "supervisor" in doc["details"]


# -- CHECK -----------------------------------------------------------------------------------

def test_check_after_add_passes_and_reports_drift(sup: FakeSupervisor) -> None:
    result, rc = call(sup, env("ADD"), conf())
    assert rc == 0
    assert call(sup, env("CHECK"), conf(prevResult=result)) == (None, 0)
    sup.drift[AttachmentKey("factory", "c1", "eth0")] = ["veth ap0011aabb is missing"]
    doc, rc = call(sup, env("CHECK"), conf(prevResult=result))
    assert error_code((doc, rc)) == 100 and doc is not None
    assert "ap0011aabb is missing" in doc["details"]


def test_check_compares_prev_result(sup: FakeSupervisor) -> None:
    result, _ = call(sup, env("ADD"), conf())
    assert result is not None
    other = json.loads(json.dumps(result))
    other["ips"][0]["address"] = "10.1.0.7/24"
    doc, rc = call(sup, env("CHECK"), conf(prevResult=other))
    assert error_code((doc, rc)) == 100 and doc is not None and "10.1.0.7/24" in doc["details"]
    assert error_code(call(sup, env("CHECK"), conf())) == 100  # no prevResult
    assert error_code(call(sup, env("CHECK", cid="never-added"), conf(prevResult=result))) == 100
    assert error_code(call(sup, env("CHECK"), conf(ni="nosuch", prevResult=result))) == 7
    assert error_code(call(sup, env("CHECK"), b"{")) == 6
    sup.running = False
    assert error_code(call(sup, env("CHECK"), conf(prevResult=result))) == 11


# -- GC --------------------------------------------------------------------------------------

def gc_env() -> dict[str, str]:
    return {"CNI_COMMAND": "GC", "CNI_PATH": "/opt/cni/bin"}


def test_gc_removes_what_is_not_valid(sup: FakeSupervisor) -> None:
    for cid in ("keep", "stale1", "stale2"):
        assert call(sup, env("ADD", cid=cid), conf())[1] == 0
    valid = [{"containerID": "keep", "ifname": "eth0"}]
    assert call(sup, gc_env(), conf(**{"cni.dev/valid-attachments": valid})) == (None, 0)
    assert [k.container_id for k in sup.attachments] == ["keep"]


def test_gc_errors(sup: FakeSupervisor) -> None:
    assert call(sup, env("ADD"), conf())[1] == 0
    assert error_code(call(sup, gc_env(), conf())) == 7  # no list: never "remove all"
    assert len(sup.attachments) == 1
    bad = conf(**{"cni.dev/valid-attachments": [{"containerID": 5}]})
    assert error_code(call(sup, gc_env(), bad)) == 7
    old = conf("1.0.0", **{"cni.dev/valid-attachments": []})
    assert error_code(call(sup, gc_env(), old)) == 1
    assert error_code(call(sup, gc_env(), b"nope")) == 6
    gone = conf(ni="nosuch", **{"cni.dev/valid-attachments": []})
    assert call(sup, gc_env(), gone) == (None, 0)
    sup.running = False
    assert error_code(call(sup, gc_env(), conf(**{"cni.dev/valid-attachments": []}))) == 11


# -- STATUS ----------------------------------------------------------------------------------

def status_env() -> dict[str, str]:
    return {"CNI_COMMAND": "STATUS", "CNI_PATH": "/opt/cni/bin"}


def test_status(sup: FakeSupervisor) -> None:
    assert call(sup, status_env(), conf()) == (None, 0)
    sup.nis["factory"].ready = False
    doc, rc = call(sup, status_env(), conf())
    assert error_code((doc, rc)) == 50 and doc is not None and "task exited" in doc["msg"]
    sup.nis["factory"].ready = True
    assert call(sup, env("ADD"), conf())[1] == 0
    sup.nis["factory"].ready = False
    assert error_code(call(sup, status_env(), conf())) == 51  # plugged apps lost DHCP/DNS
    assert error_code(call(sup, status_env(), conf(ni="nosuch"))) == 50
    assert error_code(call(sup, status_env(), conf("1.0.0"))) == 1
    assert error_code(call(sup, status_env(), b"")) == 6
    sup.running = False
    assert error_code(call(sup, status_env(), conf())) == 50


# -- never a traceback ------------------------------------------------------------------------

def test_a_bug_is_still_a_cni_error(sup: FakeSupervisor, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(sup, "attach", boom)
    doc, rc = call(sup, env("ADD"), conf("1.0.0"))
    assert error_code((doc, rc)) == 999 and doc is not None
    assert doc["cniVersion"] == "1.0.0" and "surprise" in doc["msg"]
