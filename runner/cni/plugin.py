"""`nirunner-cni`: the CNI plugin of type `nirunner`, and its installer.

Run by a container runtime with no arguments: the CNI_* environment and the
network config on stdin in, a result or a CNI error JSON on stdout out, exit
code 0 or 1; never a traceback. Run by a person with arguments:

    nirunner-cni install [--dir /opt/cni/bin] [--name nirunner]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from typing import NoReturn

from runner.cni import spec
from runner.cni.api import AttachRequest, Backend, BackendError, ErrorKind
from runner.cni.spec import CniError, Code, Invocation, NetConf
from runner.exit import exit_now

Connect = Callable[[str], Backend]
PLUGIN_TYPE = "nirunner"
DEFAULT_BIN_DIR = "/opt/cni/bin"

# what a backend failure means to the runtime, per verb (others: the default below)
_CODES: dict[ErrorKind, Code] = {
    ErrorKind.UNAVAILABLE: Code.TRY_AGAIN_LATER,
    ErrorKind.NOT_FOUND: Code.INVALID_CONFIG,
    ErrorKind.NOT_READY: Code.TRY_AGAIN_LATER,
    ErrorKind.INVALID: Code.INVALID_CONFIG,
    ErrorKind.CONFLICT: Code.PORT_CONFLICT,
    ErrorKind.EXISTS: Code.EXISTS,
    ErrorKind.NO_LEASE: Code.NO_LEASE,
    ErrorKind.UNSUPPORTED: Code.SUPERVISOR_TOO_OLD,
    ErrorKind.FAILED: Code.INTERNAL,
}


def run(env: Mapping[str, str], stdin: bytes, connect: Connect) -> tuple[str, int]:
    """One plugin call: (what to print on stdout, exit code)."""
    version = spec.config_version(stdin)
    try:
        inv = spec.parse_env(env)
        if inv.command == "VERSION":
            return spec.version_result(stdin), 0
        conf = spec.parse_config(stdin, inv.command)
        return _dispatch(inv, conf, connect), 0
    except CniError as e:
        return e.to_json(version), 1
    except Exception as e:  # a bug: still an error result, never a traceback
        return CniError(Code.INTERNAL, f"internal error: {type(e).__name__}: {e}").to_json(
            version), 1


def _dispatch(inv: Invocation, conf: NetConf, connect: Connect) -> str:
    try:
        backend = connect(conf.socket)
    except BackendError as e:
        if inv.command == "DEL" and e.kind is ErrorKind.UNAVAILABLE:
            raise CniError(Code.TRY_AGAIN_LATER, f"DEL not done: {e}",
                           "nothing can be released while the supervisor is down") from None
        raise _cni_error(inv.command, e) from None
    try:
        return _VERBS[inv.command](backend, inv, conf)
    except BackendError as e:
        raise _cni_error(inv.command, e) from None
    finally:
        backend.close()


def _cni_error(command: str, e: BackendError) -> CniError:
    if command == "STATUS":
        return CniError(Code.NOT_AVAILABLE, str(e))
    return CniError(_CODES[e.kind], str(e))


def _add(backend: Backend, inv: Invocation, conf: NetConf) -> str:
    att = backend.attach(AttachRequest(
        ni=conf.ni, key=conf.key(inv), netns=inv.netns, mac=conf.mac,
        hostname=spec.hostname(conf, inv), app=conf.app, port_mappings=conf.port_mappings))
    return spec.add_result(att, conf.cni_version, conf.prev_result)


def _del(backend: Backend, inv: Invocation, conf: NetConf) -> str:
    try:
        backend.detach(conf.ni, conf.key(inv))
    except BackendError as e:
        if e.kind is not ErrorKind.NOT_FOUND:  # an NI deleted since: nothing left to undo
            raise
    return ""


def _check(backend: Backend, inv: Invocation, conf: NetConf) -> str:
    report = backend.check(conf.ni, conf.key(inv))
    if report.attachment is None:
        raise CniError(Code.DRIFT, f"{inv.container_id}/{inv.ifname} is not attached to NI "
                       f"{conf.ni} (network {conf.name})")
    problems = [*report.problems, *spec.prev_result_drift(conf.prev_result, report.attachment)]
    if problems:
        raise CniError(Code.DRIFT, f"attachment {inv.container_id}/{inv.ifname} drifted",
                       "; ".join(problems))
    return ""


def _gc(backend: Backend, inv: Invocation, conf: NetConf) -> str:
    try:
        report = backend.gc(conf.ni, conf.name, conf.valid_attachments or ())
    except BackendError as e:
        if e.kind is ErrorKind.NOT_FOUND:
            return ""
        raise
    if report.errors:
        raise CniError(Code.INTERNAL, f"GC of network {conf.name} left "
                       f"{len(report.errors)} attachment(s)", "; ".join(report.errors))
    return ""


def _status(backend: Backend, inv: Invocation, conf: NetConf) -> str:
    r = backend.ready(conf.ni)
    if not r.ready:
        code = Code.LIMITED_CONNECTIVITY if r.degraded else Code.NOT_AVAILABLE
        raise CniError(code, f"NI {conf.ni} is not ready: {r.reason}")
    return ""


_VERBS: dict[str, Callable[[Backend, Invocation, NetConf], str]] = {
    "ADD": _add, "DEL": _del, "CHECK": _check, "GC": _gc, "STATUS": _status,
}


# -- installing ------------------------------------------------------------------------


def launcher(python: str) -> str:
    """The executable a runtime finds in its CNI bin dir: this venv's Python, isolated."""
    return (f"#!{python} -I\n"
            "# the nirunner CNI plugin; written by `nirunner-cni install`\n"
            "import sys\n"
            "from runner.cni.plugin import main\n"
            "sys.exit(main([]))\n")


def install(directory: str, name: str = PLUGIN_TYPE, python: str = sys.executable) -> str:
    from runner.drivers.files import write_atomic

    path = os.path.join(directory, name)
    write_atomic(path, launcher(python), mode=0o755)
    return path


def _cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="nirunner-cni",
        description="The nirunner CNI plugin. Runtimes run it without arguments "
                    "(CNI_* environment, config on stdin); these commands are for people.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("install", help="install the plugin into a CNI bin dir")
    i.add_argument("--dir", default=DEFAULT_BIN_DIR, help=f"default {DEFAULT_BIN_DIR}")
    i.add_argument("--name", default=PLUGIN_TYPE,
                   help=f"file name = the config's type (default {PLUGIN_TYPE})")
    sub.add_parser("version", help="print the CNI versions this plugin speaks")
    a = ap.parse_args(argv)
    if a.cmd == "version":
        print("nirunner-cni: CNI " + ", ".join(spec.SUPPORTED_VERSIONS))
        return 0
    try:
        print(f"installed {install(a.dir, a.name)}")
    except OSError as e:
        print(f"nirunner-cni: install into {a.dir}: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        return _cli(args)
    try:
        stdin = sys.stdin.buffer.read()
    except OSError as e:
        out, rc = CniError(Code.IO_FAILURE, f"reading the network config from stdin: {e}") \
            .to_json(), 1
    else:
        from runner.cni.api import connect

        out, rc = run(os.environ, stdin, connect)
    if out:
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
    return rc


def run_plugin() -> NoReturn:
    """The `nirunner-cni` program: main() without the interpreter's teardown."""
    exit_now(main())


if __name__ == "__main__":
    run_plugin()
