"""The supervisor's side of a VPN NI without root or charon: credentials, VICI, the log."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import vici  # type: ignore[import-untyped]
from vici.protocol import FiniteStream, Message, Packet  # type: ignore[import-untyped]

from runner.model.types import CertAuth, PskAuth
from runner.plan.site import build
from runner.plan.vpn import VpnPlan
from runner.render import swanctl
from runner.supervisor import vpn
from tests.unit.plan.sample import CONFIG, ECHO, FACTS, FOXTROT, VPN_NIS


def _plans(tmp_path: Path) -> tuple[VpnPlan, VpnPlan]:
    """echo (PSK) and foxtrot (certificates), with credential files under tmp_path."""
    creds = tmp_path / "device"
    creds.mkdir()
    (creds / "echo.psk").write_bytes(b"top secret\n")
    for name in ("edge.pem", "ca.pem"):
        (creds / name).write_text(f"-----BEGIN CERTIFICATE-----\n{name}\n")
    (creds / "edge.key").write_text("-----BEGIN PRIVATE KEY-----\nkey\n")
    echo = replace(ECHO, vpn=replace(ECHO.vpn, auth=PskAuth(str(creds / "echo.psk"))))  # type: ignore[arg-type]
    fox = replace(FOXTROT, vpn=replace(FOXTROT.vpn, auth=CertAuth(  # type: ignore[arg-type]
        str(creds / "edge.pem"), str(creds / "edge.key"), str(creds / "ca.pem"))))
    plan = build(CONFIG, FACTS, (*VPN_NIS[:-2], echo, fox), {})
    e, f = plan.nis["echo"].vpn, plan.nis["foxtrot"].vpn
    assert e is not None and f is not None
    return e, f


def test_psk_file_is_copied_into_a_0600_secrets_file(tmp_path: Path) -> None:
    echo, _ = _plans(tmp_path)
    cfg = tmp_path / "config"
    changed = vpn.write_credentials("echo", echo, cfg)
    assert changed == [swanctl.SECRETS_CONF]
    secrets = cfg / swanctl.SECRETS_CONF
    assert secrets.stat().st_mode & 0o777 == 0o600
    assert "secret = 0sdG9wIHNlY3JldA==\n" in secrets.read_text()  # without the newline
    assert (cfg / "swanctl" / "private").stat().st_mode & 0o777 == 0o700
    assert all((cfg / "swanctl" / d).is_dir() for d in swanctl.SWANCTL_SUBDIRS)
    assert vpn.write_credentials("echo", echo, cfg) == []  # unchanged
    Path(echo.psk_file).write_bytes(b"new secret")  # type: ignore[arg-type]
    assert vpn.write_credentials("echo", echo, cfg) == [swanctl.SECRETS_CONF]


def test_cert_files_are_copied_and_leftovers_removed(tmp_path: Path) -> None:
    echo, fox = _plans(tmp_path)
    cfg = tmp_path / "config"
    assert sorted(vpn.write_credentials("foxtrot", fox, cfg)) == sorted(
        [swanctl.SECRETS_CONF, swanctl.CERT_PATH, swanctl.CA_PATH, swanctl.KEY_PATH])
    assert (cfg / swanctl.KEY_PATH).stat().st_mode & 0o777 == 0o600
    assert (cfg / swanctl.CERT_PATH).stat().st_mode & 0o777 == 0o644
    assert "secret" not in (cfg / swanctl.SECRETS_CONF).read_text()
    # switched to PSK: the key and certificates go
    changed = vpn.write_credentials("foxtrot", replace(echo, conn="foxtrot"), cfg)
    assert set(changed) == {swanctl.SECRETS_CONF, swanctl.CERT_PATH, swanctl.CA_PATH,
                            swanctl.KEY_PATH}
    assert not (cfg / swanctl.KEY_PATH).exists()


def test_unreadable_or_empty_secret_names_the_file_only(tmp_path: Path) -> None:
    echo, _ = _plans(tmp_path)
    assert echo.psk_file is not None
    Path(echo.psk_file).write_bytes(b"\n")
    with pytest.raises(vpn.VpnError, match="echo.psk is empty"):
        vpn.write_credentials("echo", echo, tmp_path / "config")
    os.unlink(echo.psk_file)
    with pytest.raises(vpn.VpnError, match="cannot read the pre-shared key file .*echo.psk"):
        vpn.write_credentials("echo", echo, tmp_path / "config")
    assert vpn.read_psk.__doc__


LOG = """\
1795700112 16[CFG] vici initiate CHILD_SA 'echo'
1795700112 10[IKE] <echo|2> initiating IKE_SA echo[2] to 198.18.1.2
1795700112 09[IKE] <echo|2> authentication of 'factory@edge' (myself) with pre-shared key
1795700113 14[IKE] <echo|2> received AUTHENTICATION_FAILED notify error
1795700114 00[KNL] unable to create IPv4 routing table rule
"""


def test_last_error_from_charons_log(tmp_path: Path) -> None:
    log = tmp_path / "charon.log"
    assert vpn.last_error(log) is None
    log.write_text(LOG)
    assert vpn.last_error(log) == {
        "time": 1795700113, "message": "authentication failed: the peer rejected our "
        "credentials", "detail": "received AUTHENTICATION_FAILED notify error"}
    log.write_text("1 05[IKE] <echo|1> giving up after 5 retransmits\n")
    assert vpn.last_error(log)["message"] == "peer not responding"  # type: ignore[index]
    log.write_text("1 05[IKE] <echo|1> tried 1 shared key for 'a' - 'b', but MAC mismatched\n")
    assert vpn.last_error(log)["message"].startswith("authentication failed")  # type: ignore[index]
    log.write_text("1 05[IKE] <echo|1> IKE_SA echo[1] established between a...b\n")
    assert vpn.last_error(log) is None


# --- a fake charon: answers VICI on a Unix socket -----------------------------------------------


class FakeCharon:
    """Records requests; list-sas streams `sas`, everything else answers success."""

    def __init__(self, path: Path, sas: list[dict[str, Any]]) -> None:
        self.sas = sas
        self.conns: list[str] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(str(path))
        self.srv.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.srv.accept()
                threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        t = vici.protocol.Transport(conn)
        with contextlib.suppress(OSError), conn:
            while True:
                raw = t.receive()
                kind = raw[0]
                n = raw[1]
                name = raw[2:2 + n].decode()
                body = raw[2 + n:]
                if kind == Packet.EVENT_REGISTER or kind == Packet.EVENT_UNREGISTER:
                    t.send(bytes([Packet.EVENT_CONFIRM]))
                    continue
                msg = Message.deserialize(FiniteStream(body)) if body else {}
                self.requests.append((name, msg))
                if name == "list-sas":
                    for sa in self.sas:
                        ev = Message.serialize(sa)
                        t.send(bytes([Packet.EVENT, len(b"list-sa")]) + b"list-sa" + ev)
                    t.send(bytes([Packet.CMD_RESPONSE]) + Message.serialize({}))
                elif name == "get-conns":
                    t.send(bytes([Packet.CMD_RESPONSE]) +
                           Message.serialize({"conns": self.conns}))
                elif name == "initiate":
                    t.send(bytes([Packet.CMD_RESPONSE]) +
                           Message.serialize({"success": "yes"}))
                else:
                    if name == "load-conn":
                        self.conns = list(msg)
                    t.send(bytes([Packet.CMD_RESPONSE]) +
                           Message.serialize({"success": "yes"}))

    def names(self) -> list[str]:
        return [n for n, _ in self.requests]

    def close(self) -> None:
        self.srv.close()


@pytest.fixture
def charon(tmp_path: Path) -> Iterator[Any]:
    made: list[FakeCharon] = []

    def make(sas: list[dict[str, Any]]) -> FakeCharon:
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        c = FakeCharon(vpn.socket_path(state), sas)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


ESTABLISHED = {"echo": {
    "state": "ESTABLISHED", "local-host": "169.254.100.2", "local-port": "4500",
    "remote-host": "198.18.1.2", "remote-port": "4500", "local-id": "factory@edge",
    "remote-id": "hq", "nat-any": "yes", "established": "42",
    "child-sas": {"echo-3": {
        "state": "INSTALLED", "mode": "TUNNEL", "encap": "yes", "bytes-in": "840",
        "packets-in": "10", "bytes-out": "1260", "packets-out": "15", "install-time": "40",
        "local-ts": ["10.1.0.0/24"], "remote-ts": ["10.99.1.0/24"]}},
}}


def test_status_over_vici(tmp_path: Path, charon: Any) -> None:
    echo, _ = _plans(tmp_path)
    charon([ESTABLISHED])
    (tmp_path / "state" / "charon.log").write_text(LOG)
    st = vpn.status(echo, "198.18.1.2", tmp_path / "state")
    assert st["up"] and st["charon"] == "running" and st["backend"] == "libipsec"
    assert st["ike"]["state"] == "ESTABLISHED" and st["ike"]["establishedSeconds"] == 42
    assert st["ike"]["natTraversal"] and st["ike"]["remoteHost"] == "198.18.1.2:4500"
    c = st["child"]
    assert (c["state"], c["mode"], c["bytesIn"], c["packetsOut"]) == (
        "INSTALLED", "TUNNEL-in-UDP", 840, 15)
    assert st["lastError"]["message"].startswith("authentication failed")


def test_status_without_charon(tmp_path: Path) -> None:
    echo, _ = _plans(tmp_path)
    (tmp_path / "state").mkdir()
    st = vpn.status(echo, "198.18.1.2", tmp_path / "state")
    assert not st["up"] and st["charon"].startswith("not reachable")
    assert vpn.down_reason(st).startswith("tunnel down: charon not reachable")


def test_reload_new_psk_reauthenticates(tmp_path: Path, charon: Any) -> None:
    echo, _ = _plans(tmp_path)
    fake = charon([ESTABLISHED])
    cfg = tmp_path / "config"
    vpn.write_credentials("echo", echo, cfg)
    done = vpn.reload("echo", echo, cfg, tmp_path / "state", [swanctl.SECRETS_CONF])
    assert fake.names() == ["load-shared", "load-conn", "get-conns", "list-sas", "rekey"]
    shared = fake.requests[0][1]
    assert shared["data"] == b"top secret" and shared["id"] == b"ike-echo"
    assert fake.requests[-1][1] == {"ike": b"echo", "reauth": b"yes"}
    assert "re-authenticating" in done


def test_reload_changed_connection_only_loads_it(tmp_path: Path, charon: Any) -> None:
    echo, _ = _plans(tmp_path)
    fake = charon([])
    cfg = tmp_path / "config"
    vpn.write_credentials("echo", echo, cfg)
    vpn.reload("echo", echo, cfg, tmp_path / "state", [swanctl.SWANCTL_CONF])
    assert fake.names() == ["load-shared", "load-conn", "get-conns"]
    conn = fake.requests[1][1]["echo"]
    assert conn["children"]["echo"]["remote_ts"] == [b"10.99.1.0/24"]


def test_reload_certificates_sends_their_contents(tmp_path: Path, charon: Any) -> None:
    _, fox = _plans(tmp_path)
    fake = charon([])
    cfg = tmp_path / "config"
    vpn.write_credentials("foxtrot", fox, cfg)
    vpn.reload("foxtrot", fox, cfg, tmp_path / "state", [swanctl.KEY_PATH])
    assert fake.names() == ["unload-shared", "load-key", "load-conn", "get-conns", "list-sas",
                            "initiate"]
    conn = fake.requests[2][1]["foxtrot"]
    assert conn["local"]["certs"] == [b"-----BEGIN CERTIFICATE-----\nedge.pem\n"]
    assert conn["remote"]["cacerts"] == [b"-----BEGIN CERTIFICATE-----\nca.pem\n"]


def test_reload_without_charon_is_not_an_error(tmp_path: Path) -> None:
    echo, _ = _plans(tmp_path)
    (tmp_path / "state").mkdir()
    assert vpn.reload("echo", echo, tmp_path / "config", tmp_path / "state",
                      [swanctl.SECRETS_CONF]) == "charon not running"


def test_kick_initiates_only_a_loaded_connection_without_sa(tmp_path: Path,
                                                           charon: Any) -> None:
    echo, _ = _plans(tmp_path)
    fake = charon([])
    vpn._kicked.clear()
    assert not vpn.kick("echo", echo, tmp_path / "state")  # not loaded (charon starting)
    fake.conns = ["echo"]
    assert not vpn.kick("echo", echo, tmp_path / "state")  # tried just now
    vpn._kicked.clear()
    assert vpn.kick("echo", echo, tmp_path / "state")
    assert fake.names()[-1] == "initiate"
    fake.sas = [ESTABLISHED]
    vpn._kicked.clear()
    assert not vpn.kick("echo", echo, tmp_path / "state")


def test_status_table_shows_the_tunnel(tmp_path: Path, charon: Any) -> None:
    from runner.cli.ni_commands import _vpn_details, render_status

    echo, _ = _plans(tmp_path)
    charon([ESTABLISHED])
    (tmp_path / "state" / "charon.log").write_text(LOG)
    v = vpn.status(echo, "198.18.1.2", tmp_path / "state")
    st = {
        "name": "echo", "type": "vpn", "state": "running", "reason": "", "uplink": "eth0",
        "subnet": "10.1.0.0/24", "apps": [], "portMaps": [], "task": {"pid": 42, "restarts": 0},
        "usage": {"memoryLimit": 64 << 20, "cpuLimit": 0.5, "pidsLimit": 128}, "vpn": v,
    }
    out = render_status([st])
    lines = out.splitlines()
    i = lines.index("VPN")
    assert lines[i + 1].split()[:4] == ["NAME", "REMOTE", "IKE", "SA"]
    row = lines[i + 2]
    assert row.split()[:6] == ["echo", "198.18.1.2", "ESTABLISHED", "INSTALLED", "42s", "ago"]
    assert "840 B/10 pkts" in row and "1.2 KiB/15 pkts" in row
    assert "authentication failed" in row
    details = _vpn_details(v)
    assert "IKE ESTABLISHED 169.254.100.2:4500 [factory@edge] <-> 198.18.1.2:4500 [hq], NAT-T" \
        in details
    assert "CHILD INSTALLED TUNNEL-in-UDP 10.1.0.0/24 === 10.99.1.0/24" in details


def test_credentials_are_read_by_the_secrets_rules(tmp_path: Path) -> None:
    echo, fox = _plans(tmp_path)
    assert echo.psk_file is not None
    with pytest.raises(vpn.VpnError, match=r"cannot read the pre-shared key file .*echo.psk: "
                                           r"is outside the secrets directory"):
        vpn.write_credentials("echo", echo, tmp_path / "config", str(tmp_path / "elsewhere"))
    assert vpn.write_credentials("foxtrot", fox, tmp_path / "config", str(tmp_path / "device"))
    os.unlink(echo.psk_file)
    os.mkfifo(echo.psk_file)  # would block a plain open() for ever
    with pytest.raises(vpn.VpnError, match="echo.psk: is a FIFO, not a regular file"):
        vpn.write_credentials("echo", echo, tmp_path / "config", str(tmp_path / "device"))
