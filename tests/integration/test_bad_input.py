"""Nasty input through every path: `validate -f`, `apply -f FILE`, `apply -f -`, the API.

One lab for the module (device netns, private containerd, the supervisor) with
one NI applied. Each class of bad input (control characters, other encodings,
YAML bombs, too large, addresses that are no hosts, the transit pool, IKE ports
of a VPN NI's uplink, too many NIs, credentials outside secretsDir) must give a
clean error naming the file (and the line where there is one), no traceback in
the CLI's stderr or in the supervisor's log, and no change: desired.json keeps
its bytes and no netns appears.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.api.client import ApiClient
from runner.image.build import build_image
from runner.lab.topology import Lab, sh, wait_for
from runner.model.errors import ManifestError
from tests.integration.conftest import RUN_ID

R = RUN_ID
PREFIX = f"nrt{R}x"
SECRETS = Path("/run") / PREFIX / "secrets"  # the lab config's secretsDir
GOOD = f"ok-{R}"
BAD = f"bad-{R}"


def manifest(name: str = BAD, subnet: str = "10.7.0.0/24", extra: str = "",
             uplink: str | None = "eth0", kind: str = "local") -> str:
    up = f"  uplink: {uplink}\n" if uplink else ""
    return (f"apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: {{name: {name}}}\n"
            f"spec:\n  type: {kind}\n{up}  subnet: {subnet}\n{extra}")


def vpn_ni(secret: str) -> str:
    return manifest(f"vpn-{R}", "10.8.0.0/24", kind="vpn", extra=(
        "  vpn:\n    remote: 203.0.113.10\n"
        f"    auth: {{psk: {{secretFile: {secret}}}}}\n"
        "    localId: edge\n    remoteId: hq\n    remoteSubnets: [10.99.1.0/24]\n"))


def _bomb() -> str:
    text = "a0: &a0 [" + ",".join(["x"] * 10) + "]\n"
    for i in range(1, 8):
        text += f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]\n"
    return text


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    says: str  # a fragment of the problem
    line: int | None = None  # the line the problem names, when it has one
    local: bool = False  # the CLI refuses it before the supervisor sees it


def _cases(secrets_dir: Path) -> list[Case]:
    good = manifest().encode()
    control = [Case(f"control {c!r}", manifest(extra=f"  dns: {{domain: a{c}b.lan}}\n").encode(),
                    f"control character U+{ord(c):04X}", 8, local=True)
               for c in ("\x00", "\x01", "\x08", "\x0b", "\x1b", "\x7f", "\ufffe")]
    return [
        *control,
        Case("latin-1", good + "# café\n".encode("latin-1"), "is not UTF-8: byte 0xe9 at "
             f"offset {len(good) + 5}", 8, local=True),
        Case("UTF-16 with BOM", manifest().encode("utf-16"), "is UTF-16", local=True),
        Case("UTF-16 without BOM", manifest().encode("utf-16-le"), "looks like UTF-16",
             local=True),
        Case("alias bomb", _bomb().encode(), "more than 20000 values (alias bomb?)"),
        Case("deep nesting", ("[" * 5000 + "]" * 5000).encode(), "is nested more than 32 levels"),
        Case("2 MiB file", good + b"#" * (2 << 20) + b"\n", "is larger than 1048576 bytes",
             local=True),
        Case("multicast subnet", manifest(subnet="239.1.1.0/24").encode(),
             "spec.subnet 239.1.1.0/24 is multicast", 7),
        Case("loopback subnet", manifest(subnet="127.1.0.0/24").encode(),
             "spec.subnet 127.1.0.0/24 is loopback", 7),
        Case("class E subnet", manifest(subnet="255.255.255.0/30").encode(),
             "spec.subnet 255.255.255.0/30 is reserved (class E", 7),
        Case("upstream is the gateway", manifest(extra="  dns: {upstream: [10.7.0.1]}\n")
             .encode(), "spec.dns.upstream[0] 10.7.0.1 is spec.gateway", 8),
        Case("ntp loopback", manifest(extra="  ntp: [127.0.0.1]\n").encode(),
             "spec.ntp[0] 127.0.0.1 is loopback", 8),
        Case("upstream in the transit pool", manifest(extra="  dns: {upstream: "
             "[169.254.100.1]}\n").encode(), "is inside the supervisor's transitPool", 8),
        Case("IKE port of a VPN uplink", (vpn_ni(f"{secrets_dir}/v.psk") + "---\n" + manifest(
             extra="  portMaps: [{name: p, protocol: udp, uplinkPort: 500, target: 10.7.0.9, "
                   "targetPort: 500}]\n")).encode(), "udp 500 would take the VPN peer's IKE",
             22),
        Case("257 NIs", "---\n".join(manifest(f"n{i}-{R}") for i in range(257)).encode(),
             "257 NIs have an uplink, but the supervisor's transitPool"),
        Case("secret outside secretsDir", vpn_ni("/etc/shadow").encode(),
             "/etc/shadow is outside the supervisor's secretsDir", 10),
    ]


CASES = _cases(SECRETS)


class Site:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def cli(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        cmd = [sys.executable, "-m", "runner.cli.main", *args]
        if args[0] == "apply":
            cmd += ["--socket", self.lab.socket]
        return subprocess.run(cmd, input=stdin, capture_output=True, timeout=120)

    def state(self) -> tuple[bytes, list[str]]:
        netns = sorted(n.split()[0] for n in sh("ip", "netns", "list").stdout.splitlines()
                       if R in n)
        return (self.lab.state_dir / "desired.json").read_bytes(), netns


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    lab = Lab(PREFIX, image_archive=str(build_image().archive))
    assert lab.secrets_dir == SECRETS
    try:
        lab.build()
        lab.start_containerd()
        lab.write_config(lab.image)
        lab.secrets_dir.mkdir(mode=0o700)
        lab.start_supervisor()
        (lab.base / "good.yaml").write_text(manifest(GOOD, "10.3.0.0/24", uplink=None))
        lab.cli("apply", "-f", str(lab.base / "good.yaml"))
        wait_for(lambda: lab.applied_nis() == [GOOD], 30, "the good NI applied")
        yield Site(lab)
    finally:
        lab.teardown()


def _clean(res: subprocess.CompletedProcess[bytes], source: str, case: Case) -> str:
    err = res.stderr.decode(errors="replace")
    assert res.returncode == 1, (case.name, err, res.stdout)
    assert "Traceback" not in err and "Exception" not in err, err
    first = err.splitlines()[0]
    assert first.startswith(f"nirunner: {source}: "), err
    assert case.says in err, err
    if case.line is not None:
        assert f"(line {case.line})" in err, err
    return err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_everywhere_and_changes_nothing(site: Site, case: Case) -> None:
    before = site.state()
    f = site.lab.base / "bad.yaml"
    f.write_bytes(case.data)
    if "transitPool" not in case.says and "secretsDir" not in case.says:  # need the config
        _clean(site.cli("validate", "-f", str(f)), str(f), case)
    _clean(site.cli("validate", "-f", str(f), "--config", str(site.lab.config_path)),
           str(f), case)
    _clean(site.cli("apply", "-f", str(f)), str(f), case)
    _clean(site.cli("apply", "-f", "-", stdin=case.data), "<stdin>", case)
    if not case.local:  # the API refuses what reaches it with the same problems
        with ApiClient(site.lab.socket, timeout=60) as api, \
                pytest.raises(ManifestError) as err:
            api.apply([("api.yaml", case.data.decode())])
        assert err.value.problems and all(p.source == "api.yaml" for p in err.value.problems)
        assert any(case.says in str(p) for p in err.value.problems), err.value
    assert site.state() == before


def test_the_api_holds_text_to_the_same_limits(site: Site) -> None:
    before = site.state()
    with ApiClient(site.lab.socket, timeout=60) as api:
        for text, says in ((manifest() + "#" * (2 << 20) + "\n", "is larger than 1048576 "
                            "bytes"),
                           (manifest(extra="  dns: {domain: a\x1bb.lan}\n"),
                            "control character U+001B"),
                           (manifest(extra="  mtu: 2024-13-45\n"), "cannot be read")):
            with pytest.raises(ManifestError) as err:
                api.apply([("api.yaml", text)])
            assert says in str(err.value) and err.value.problems[0].source == "api.yaml"
    assert site.state() == before


def _apply(site: Site, f: Path, result: list[subprocess.CompletedProcess[bytes]],
           done: threading.Event) -> None:
    try:
        result.append(site.cli("apply", "-f", str(f)))
    finally:
        done.set()


def test_unsafe_secret_files_are_refused_while_status_keeps_answering(site: Site) -> None:
    """A VPN NI whose secretFile (below secretsDir, so it passes validation) is a FIFO,
    a link to /etc/shadow or /proc/self/environ, a directory, 10 MiB, or writable by
    others: the apply fails naming the rule, and `status` answers within a second
    all the while (a FIFO used to hang the supervisor in open())."""
    sd = site.lab.secrets_dir
    os.mkfifo(sd / "fifo.psk")
    (sd / "shadow.psk").symlink_to("/etc/shadow")
    (sd / "environ.psk").symlink_to("/proc/self/environ")
    (sd / "zero.psk").symlink_to("/dev/zero")
    (sd / "dir.psk").mkdir()
    with open(sd / "big.psk", "wb") as f:
        f.truncate(10 << 20)
    (sd / "open.psk").write_text("secret-Zk3\n")
    (sd / "open.psk").chmod(0o666)
    cases = [("fifo.psk", "is a FIFO, not a regular file"),
             ("shadow.psk", "is a symbolic link"), ("environ.psk", "is a symbolic link"),
             ("zero.psk", "is a symbolic link"), ("dir.psk", "is a directory"),
             ("big.psk", "is larger than 65536 bytes"),
             ("open.psk", "is writable by group or others (mode 0666)")]
    before = site.lab.applied_nis()
    f = site.lab.base / "vpn.yaml"
    for name, says in cases:
        f.write_text(vpn_ni(str(sd / name)))
        slowest = 0.0
        done = threading.Event()
        result: list[subprocess.CompletedProcess[bytes]] = []
        threading.Thread(target=_apply, args=(site, f, result, done), daemon=True).start()
        with ApiClient(site.lab.socket, timeout=10) as api:
            while not done.wait(0.1):
                t = time.monotonic()
                api.status([])
                slowest = max(slowest, time.monotonic() - t)
            t = time.monotonic()
            api.status([])
            slowest = max(slowest, time.monotonic() - t)
        (res,) = result
        err = res.stderr.decode(errors="replace")
        assert res.returncode == 1 and says in err and str(sd / name) in err, err
        assert "Traceback" not in err and "secret-Zk3" not in err, err
        assert slowest < 1.0, (name, slowest)
        assert site.lab.applied_nis() == before
    wait_for(lambda: f"nr-vpn-{R}" not in sh("ip", "netns", "list").stdout, 15,
             "the rolled-back VPN NI's netns to go")


def test_the_supervisor_logged_no_traceback_and_still_serves(site: Site) -> None:
    """Last in the module: after everything above."""
    assert site.lab.cli("status", "--json").returncode == 0
    log = (site.lab.base / "supervisor.log").read_text(errors="replace")
    assert "Traceback" not in log and "Exception calling application" not in log, log[-3000:]
    assert site.lab.supervisor is not None and site.lab.supervisor.poll() is None
