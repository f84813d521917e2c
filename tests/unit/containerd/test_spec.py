from __future__ import annotations

import json

from runner.containerd import spec as oci
from runner.nitask import NITask


def _task(**kw: object) -> NITask:
    base = dict(
        name="factory", ni_type="local", uplink="eth0", generation="3",
        netns_path="/run/netns/nr-factory", config_dir="/var/lib/nirunner/ni/factory/config",
        state_dir="/var/lib/nirunner/ni/factory/state", log_path="/var/log/nirunner/factory.log",
        limits=oci.Limits.from_cpus(64 << 20, 0.25, 128),
    )
    base.update(kw)
    return NITask(**base)  # type: ignore[arg-type]


def test_spec_joins_the_given_netns_and_owns_other_namespaces() -> None:
    s = oci.build(_task().spec("nirunner"))
    ns = {n["type"]: n.get("path") for n in s["linux"]["namespaces"]}
    assert ns == {"pid": None, "ipc": None, "uts": None, "mount": None,
                  "network": "/run/netns/nr-factory"}
    assert "user" not in ns


def test_spec_is_not_privileged() -> None:
    proc = oci.build(_task().spec("nirunner"))["process"]
    caps = proc["capabilities"]
    want = ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]
    for kind in ("bounding", "effective", "permitted"):
        assert sorted(caps[kind]) == want
    assert caps["inheritable"] == [] and caps["ambient"] == []
    assert proc["noNewPrivileges"] is True
    assert proc["user"] == {"uid": 0, "gid": 0}


def test_rootfs_read_only_with_own_run_and_bind_mounts() -> None:
    s = oci.build(_task().spec("nirunner"))
    assert s["root"] == {"path": "rootfs", "readonly": True}
    mounts = {m["destination"]: m for m in s["mounts"]}
    assert mounts["/run"]["type"] == "tmpfs"
    assert mounts["/tmp"]["type"] == "tmpfs"
    cfg, state = mounts["/etc/nirunner"], mounts["/var/lib/nirunner"]
    assert cfg["source"] == "/var/lib/nirunner/ni/factory/config" and "ro" in cfg["options"]
    assert state["source"] == "/var/lib/nirunner/ni/factory/state" and "rw" in state["options"]
    assert "ro" in mounts["/sys"]["options"]


def test_tun_device_is_created_and_allowed() -> None:
    linux = oci.build(_task().spec("nirunner"))["linux"]
    assert linux["devices"] == [{"path": "/dev/net/tun", "type": "c", "major": 10,
                                 "minor": 200, "fileMode": 0o666, "uid": 0, "gid": 0}]
    rules = linux["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"} in rules


def test_limits_and_cgroup_path() -> None:
    linux = oci.build(_task().spec("nirunner"))["linux"]
    res = linux["resources"]
    assert res["memory"] == {"limit": 64 << 20}
    assert res["cpu"] == {"quota": 25_000, "period": 100_000}
    assert res["pids"] == {"limit": 128}
    assert linux["cgroupsPath"] == "/nirunner/ni-factory"


def test_unlimited_resources_are_left_out() -> None:
    assert oci.Limits().to_oci() == {}
    assert oci.Limits.from_cpus(None, 0.001, None).to_oci() == {
        "cpu": {"quota": 1000, "period": 100_000}}


def test_labels_and_names() -> None:
    t = _task(uplink="")
    assert t.container_id == "ni-factory"
    assert t.labels() == {
        "io.nirunner.ni.name": "factory", "io.nirunner.ni.type": "local",
        "io.nirunner.ni.uplink": "", "io.nirunner.ni.generation": "3"}


def test_json_is_canonical() -> None:
    s = oci.build(_task().spec("nirunner"))
    assert oci.to_json(s) == oci.to_json(json.loads(oci.to_json(s)))
    assert json.loads(oci.to_json(s))["process"]["args"] == ["/sbin/ni-init"]
