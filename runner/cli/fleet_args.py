"""`nirunner fleet ...`: the options; the commands themselves (etcd, the model) are in
runner.cli.fleet_commands, imported only when a fleet command runs."""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable
from typing import Any

ENV = "NIRUNNER_ETCD_"  # the prefix of the connection options' environment variables


def _impl(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        fn: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module("runner.cli.fleet_commands"), name)
        return fn(args)

    return run


def add_commands(sub: Any) -> None:
    conn = argparse.ArgumentParser(add_help=False)
    env = os.environ.get
    conn.add_argument("--endpoints", default=env(f"{ENV}ENDPOINTS"),
                      help="etcd client URLs, comma-separated (env NIRUNNER_ETCD_ENDPOINTS)")
    conn.add_argument("--prefix", default=env(f"{ENV}PREFIX", "/nirunner"),
                      help="the fleet's key prefix (env NIRUNNER_ETCD_PREFIX; /nirunner)")
    conn.add_argument("--cacert", default=env(f"{ENV}CACERT"),
                      help="CA of the etcd members, PEM (env NIRUNNER_ETCD_CACERT)")
    conn.add_argument("--cert", default=env(f"{ENV}CERT"),
                      help="client certificate, PEM; its CN is the etcd user "
                           "(env NIRUNNER_ETCD_CERT)")
    conn.add_argument("--key", default=env(f"{ENV}KEY"),
                      help="its private key, PEM (env NIRUNNER_ETCD_KEY)")

    fleet = sub.add_parser("fleet", help="a fleet's desired NIs and status in etcd")
    fsub = fleet.add_subparsers(dest="fleet_command", required=True)
    p = fsub.add_parser("apply", parents=[conn], help="validate NI manifests, store them "
                        "for a device (all or nothing)")
    p.add_argument("--device", required=True)
    p.add_argument("-f", "--file", action="append", required=True, help="file or directory")
    p.add_argument("--config", help="the device's supervisor config, to check uplink names too")
    p.set_defaults(func=_impl("cmd_apply"))
    p = fsub.add_parser("delete", parents=[conn], help="delete NIs of a device")
    p.add_argument("--device", required=True)
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=_impl("cmd_delete"))
    p = fsub.add_parser("status", parents=[conn], help="devices and their NIs, as reported")
    p.add_argument("--device")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_impl("cmd_status"))
    r = fsub.add_parser("rbac", help="etcd users and roles for the fleet (root certificate)")
    rsub = r.add_subparsers(dest="rbac_command", required=True)
    p = rsub.add_parser("init", parents=[conn], help="root and operator users, enable auth")
    p.set_defaults(func=_impl("cmd_rbac_init"))
    p = rsub.add_parser("add-device", parents=[conn], help="a device's role and user")
    p.add_argument("device")
    p.set_defaults(func=_impl("cmd_rbac_device"))
