"""A VPN NI's charon, seen from the supervisor: credentials, reloads and status over VICI.

Each VPN NI runs its own charon inside its task; its VICI socket and log are in
the NI's state dir, so the supervisor reaches them on the host:

    <state dir>/ni/<name>/state/charon.vici   VICI (the `vici` package speaks it)
    <state dir>/ni/<name>/state/charon.log    charon's log: where `lastError` comes from

Credentials: the manifest names files on the device; `write_credentials` copies
them into the NI's config dir (the PSK rendered into swanctl/secrets.conf, the
private key into swanctl/private), mode 0600. Charon loads them itself when it
starts (a start script runs swanctl --load-all); when they or the connection
change, `reload` hands them to the running charon over VICI, so a new remote
subnet or a new PSK never restarts the task. Secrets are never logged, and
errors about them name the file, never its content.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import vici  # type: ignore[import-untyped]
from vici.exception import CommandException, SessionException  # type: ignore[import-untyped]

from runner.drivers import files, secrets
from runner.errors import NirunnerError
from runner.plan.vpn import SECRET_MODE, VpnPlan
from runner.render import swanctl

log = logging.getLogger("nirunner.vpn")

TIMEOUT = 3.0  # seconds for connecting to and talking with a charon
LOG_TAIL = 256 << 10  # bytes of charon.log read for the last error
MAX_SECRET = 64 << 10


class VpnError(NirunnerError):
    pass


# --- credentials ----------------------------------------------------------------------------


def _read(path: str, what: str, limit: int = 1 << 20, secrets_dir: str | None = None) -> bytes:
    """See runner.drivers.secrets: no links, FIFOs or devices, root's, below secrets_dir."""
    try:
        return secrets.read_secret(path, secrets_dir, limit)
    except secrets.SecretError as e:
        raise VpnError(f"cannot read the {what} file {e}") from None


def read_psk(path: str, secrets_dir: str | None = None) -> bytes:
    """The pre-shared key in `path`: its bytes without one trailing newline."""
    data = _read(path, "pre-shared key", MAX_SECRET, secrets_dir)
    for end in (b"\r\n", b"\n"):
        if data.endswith(end):
            data = data[: -len(end)]
            break
    if not data:
        raise VpnError(f"the pre-shared key file {path} is empty")
    return data


def write_credentials(ni: str, v: VpnPlan, config_dir: Path,
                      secrets_dir: str | None = None) -> list[str]:
    """Copy the NI's credentials into its config dir; the names of the files that changed.

    Files under swanctl/ that the plan does not name (a key left from certificate
    authentication after a switch to PSK, say) are removed.
    """
    swan = config_dir / swanctl.SWANCTL_DIR
    swan.mkdir(parents=True, exist_ok=True)
    for sub in swanctl.SWANCTL_SUBDIRS:
        (swan / sub).mkdir(exist_ok=True)
        os.chmod(swan / sub, 0o700 if sub in ("private", "rsa", "ecdsa", "pkcs8", "pkcs12")
                 else 0o755)
    psk = read_psk(v.psk_file, secrets_dir) if v.psk_file else None
    changed = []
    secrets = swanctl.secrets_conf(ni, v.owners, psk)
    if files.write_atomic(config_dir / swanctl.SECRETS_CONF, secrets, mode=SECRET_MODE):
        changed.append(swanctl.SECRETS_CONF)
    for c in v.copies:
        data = _read(c.source, "certificate" if c.mode != SECRET_MODE else "private key",
                     secrets_dir=secrets_dir)
        if files.write_atomic(config_dir / c.name, data, mode=c.mode):
            changed.append(c.name)
    wanted = {swanctl.SWANCTL_CONF, *v.credential_names}
    for path in sorted(swan.rglob("*")):
        name = str(path.relative_to(config_dir))
        if path.is_file() and name not in wanted and not path.name.startswith("."):
            path.unlink()
            changed.append(name)
    return changed


# --- VICI -------------------------------------------------------------------------------------


def socket_path(state_dir: Path) -> Path:
    return state_dir / swanctl.VICI_SOCKET


@contextlib.contextmanager
def session(state_dir: Path, timeout: float = TIMEOUT) -> Iterator[Any]:
    """A VICI session with the NI's charon; OSError if it does not answer."""
    path = str(socket_path(state_dir))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        if len(path) < 100:
            sock.connect(path)
        else:  # longer than sun_path: through a directory fd
            fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
            try:
                sock.connect(f"/proc/self/fd/{fd}/{os.path.basename(path)}")
            finally:
                os.close(fd)
        yield vici.Session(sock)
    finally:
        sock.close()


def _connection_message(v: VpnPlan, config_dir: Path) -> dict[str, Any]:
    """The load-conn message with certificate file names replaced by their contents."""
    msg = copy.deepcopy(v.connection)
    conn = msg[v.conn]
    for side, key, folder in (("local", "certs", "x509"), ("remote", "cacerts", "x509ca")):
        names = conn.get(side, {}).get(key)
        if names:
            base = config_dir / swanctl.SWANCTL_DIR / folder
            conn[side][key] = [(base / n).read_bytes() for n in names]
    return msg


def _ike_sas(s: Any, conn: str) -> list[dict[str, Any]]:
    out = []
    for sa in s.list_sas({"ike": conn}):
        out += [v for k, v in sa.items() if k == conn]
    return out


def reload(ni: str, v: VpnPlan, config_dir: Path, state_dir: Path, changed: list[str],
           secrets_dir: str | None = None) -> str:
    """Hand a changed connection or credentials to the running charon over VICI.

    Loads the credentials, then the connection (charon re-establishes it if it
    changed, keeps it if not). New credentials with an unchanged connection:
    the established IKE SA is re-authenticated, or the tunnel initiated if it is
    down. A charon that does not answer is not an error: it loads the config
    dir itself when it starts. Returns what was done, for the log.
    """
    try:
        with session(state_dir) as s:
            return _reload(s, v, config_dir, changed, secrets_dir)
    except OSError as e:
        log.info("NI %s: charon not reachable (%s); it loads the new config when it starts",
                 ni, e.strerror or e)
        return "charon not running"
    except (CommandException, SessionException) as e:
        raise VpnError(f"NI {ni}: charon refused the new config: {e}") from None


def _reload(s: Any, v: VpnPlan, config_dir: Path, changed: list[str],
            secrets_dir: str | None) -> str:
    done = []
    if v.psk_file:
        psk = read_psk(v.psk_file, secrets_dir)
        s.load_shared({"id": v.shared_id, "type": "IKE", "data": psk, "owners": list(v.owners)})
        done.append("loaded the pre-shared key")
    else:
        with contextlib.suppress(CommandException):
            s.unload_shared({"id": v.shared_id})
        key = (config_dir / swanctl.KEY_PATH).read_bytes()
        s.load_key({"type": "any", "data": key})
        done.append("loaded the private key")
    s.load_conn(_connection_message(v, config_dir))
    done.append("loaded the connection")
    for name in s.get_conns().get("conns", []):
        name = name.decode() if isinstance(name, bytes) else name
        if name != v.conn:
            s.unload_conn({"name": name})
            done.append(f"unloaded connection {name}")
    creds = any(n in changed for n in v.credential_names)
    if creds and swanctl.SWANCTL_CONF not in changed:
        sas = _ike_sas(s, v.conn)
        if any(sa.get("state") == b"ESTABLISHED" for sa in sas):
            s.request("rekey", {"ike": v.conn, "reauth": "yes"})
            done.append("re-authenticating")
        elif not sas:
            _initiate(s, v)
            done.append("initiating")
    return ", ".join(done)


def _initiate(s: Any, v: VpnPlan) -> None:
    # timeout -1: charon answers at once and establishes in the background
    for _ in s.initiate({"child": v.conn, "timeout": -1, "init-limits": "no"}):
        pass


KICK_EVERY = 30.0  # seconds between two attempts of the supervisor for one NI
_kicked: dict[str, float] = {}


def kick(ni: str, v: VpnPlan, state_dir: Path) -> bool:
    """Initiate the tunnel if charon has no IKE SA for it (say, after an authentication
    failure, which charon does not retry by itself); at most every KICK_EVERY seconds.
    True if it did."""
    now = time.monotonic()
    if now - _kicked.get(ni, -KICK_EVERY) < KICK_EVERY:
        return False
    _kicked[ni] = now
    try:
        with session(state_dir) as s:
            if _ike_sas(s, v.conn) or v.conn not in _conns(s):
                return False
            _initiate(s, v)
            log.info("NI %s: tunnel down, initiating it again", ni)
            return True
    except (OSError, CommandException, SessionException) as e:
        log.debug("NI %s: cannot kick charon: %s", ni, e)
        return False


def _conns(s: Any) -> list[str]:
    return [c.decode() if isinstance(c, bytes) else c for c in s.get_conns().get("conns", [])]


# --- status -----------------------------------------------------------------------------------


def _s(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int:
    try:
        return int(_s(value))
    except ValueError:
        return 0


def status(v: VpnPlan, remote: str, state_dir: Path) -> dict[str, Any]:
    """The tunnel as charon sees it, plus the last error from its log. No secrets."""
    now = time.time()
    out: dict[str, Any] = {
        "backend": str(v.backend), "remote": remote, "charon": "running",
        "ike": {"state": "DOWN"}, "child": {"state": "DOWN"},
    }
    try:
        with session(state_dir) as s:
            sas = _ike_sas(s, v.conn)
    except OSError as e:
        out["charon"] = f"not reachable: {e.strerror or e}"
        sas = []
    except (CommandException, SessionException) as e:
        out["charon"] = f"error: {e}"
        sas = []
    ike = _best(sas, "state", ("ESTABLISHED", "REKEYING", "REKEYED", "CONNECTING"))
    if ike is not None:
        out["ike"] = _ike(ike, now)
        children = list(ike.get("child-sas", {}).values())
        child = _best(children, "state", ("INSTALLED", "REKEYING", "REKEYED", "INSTALLING"))
        if child is not None:
            out["child"] = _child(child, now)
    out["lastError"] = last_error(state_dir / swanctl.LOG_FILE)
    out["up"] = out["child"]["state"] in ("INSTALLED", "REKEYING")  # rekeying: still carries
    return out


def _best(items: list[dict[str, Any]], key: str,
          order: tuple[str, ...]) -> dict[str, Any] | None:
    ranked = sorted(items, key=lambda x: order.index(_s(x.get(key)))
                    if _s(x.get(key)) in order else len(order))
    return ranked[0] if ranked else None


def _ike(sa: dict[str, Any], now: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "state": _s(sa.get("state")), "uniqueId": _s(sa.get("uniqueid")),
        "localHost": f"{_s(sa.get('local-host'))}:{_s(sa.get('local-port'))}",
        "remoteHost": f"{_s(sa.get('remote-host'))}:{_s(sa.get('remote-port'))}",
        "localId": _s(sa.get("local-id")), "remoteId": _s(sa.get("remote-id")),
        "natTraversal": _s(sa.get("nat-any")) == "yes",
    }
    if "established" in sa:
        ago = _int(sa["established"])
        out["establishedSeconds"] = ago
        out["establishedAt"] = int(now - ago)
    return out


def _child(sa: dict[str, Any], now: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "state": _s(sa.get("state")), "uniqueId": _s(sa.get("uniqueid")),
        "mode": _s(sa.get("mode")) + ("-in-UDP" if _s(sa.get("encap")) == "yes" else ""),
        "bytesIn": _int(sa.get("bytes-in", 0)), "bytesOut": _int(sa.get("bytes-out", 0)),
        "packetsIn": _int(sa.get("packets-in", 0)),
        "packetsOut": _int(sa.get("packets-out", 0)),
        "localTs": [_s(t) for t in sa.get("local-ts", [])],
        "remoteTs": [_s(t) for t in sa.get("remote-ts", [])],
    }
    if "install-time" in sa:
        ago = _int(sa["install-time"])
        out["installedSeconds"] = ago
        out["installedAt"] = int(now - ago)
    return out


# What charon logs when a tunnel fails, and how `status` says it. Level 1 only;
# the first match of a line wins.
_ERRORS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), m) for p, m in (
    (r"received AUTHENTICATION_FAILED notify", "authentication failed: the peer rejected "
                                               "our credentials"),
    (r"MAC mismatched|with pre-shared key failed", "authentication failed: the peer's "
                                                   "pre-shared key does not match"),
    (r"no shared key found", "authentication failed: no pre-shared key for these identities"),
    (r"no private key found", "authentication failed: no private key for our certificate"),
    (r"no trusted .* public key found|constraint check failed|not trusted|"
     r"no issuer certificate found|signature validation failed|certificate .* (?:expired|"
     r"revoked)", "authentication failed: the peer's certificate is not trusted"),
    (r"giving up after \d+ retransmits|peer not responding", "peer not responding"),
    (r"NO_PROPOSAL_CHOSEN|no acceptable proposal", "no proposal acceptable to both sides"),
    (r"TS_UNACCEPTABLE|traffic selectors .* unacceptable", "traffic selectors not accepted"),
    (r"INVALID_SYNTAX|AUTH_LIFETIME|INTERNAL_ADDRESS_FAILURE", "the peer reported an error"),
    (r"(?:establishing|installing|initiating) .* failed|failed to establish",
     "the tunnel could not be established"),
))
_LINE = re.compile(r"(\d+) \d+\[(\w+)\] (?:<[^>]*> )?(.*)")


def last_error(path: Path) -> dict[str, Any] | None:
    """The newest error in charon's log: {time, message, detail}; None if there is none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        m = _LINE.match(line)
        if m is None:
            continue
        text = m.group(3)
        for pattern, message in _ERRORS:
            if pattern.search(text):
                return {"time": int(m.group(1)), "message": message, "detail": text[:300]}
    return None


def down_reason(st: dict[str, Any]) -> str:
    """Why the tunnel is down, for the NI's state line."""
    err = st.get("lastError")
    if not st["charon"].startswith("running"):
        return f"tunnel down: charon {st['charon']}"
    why = f": {err['message']}" if err else ""
    ike = st["ike"]["state"]
    return f"tunnel down (IKE {ike}){why}"
