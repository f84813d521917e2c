"""etcd roles and users for a fleet: what each party may read and write.

With auth enabled and `--client-cert-auth`, etcd takes the user name from the
client certificate's CN: a device's certificate (CN `nirunner-device-<id>`) is
its whole credential. Users get no password.

    root                      etcd's own: everything (needed to enable auth)
    nirunner-operator         readwrite <prefix>/devices/, read <prefix>/status/
    nirunner-device-<id>      read <prefix>/devices/<id>/, readwrite <prefix>/status/<id>/

Every step is idempotent: running it again changes nothing.
"""

from __future__ import annotations

import grpc

from runner.fleet.etcd import Etcd, EtcdError, permission
from runner.fleet.keys import Layout, check_device
from runner.pb.etcd.authpb import auth_pb2
from runner.pb.etcd.etcdserverpb import rpc_pb2 as pb

ROOT = "root"
OPERATOR = "nirunner-operator"


def device_user(device: str) -> str:
    """The etcd user (and role) of a device: the CN its certificate must carry."""
    return f"nirunner-device-{check_device(device)}"


def _exists(e: EtcdError) -> bool:
    return e.code == grpc.StatusCode.FAILED_PRECONDITION and "already" in str(e)


def ensure_user(etcd: Etcd, user: str, role: str | None) -> None:
    """A user without password (it authenticates by its certificate), with `role`."""
    try:
        etcd.auth(f"add user {user}", "UserAdd", pb.AuthUserAddRequest(
            name=user, options=auth_pb2.UserAddOptions(no_password=True)))
    except EtcdError as e:
        if not _exists(e):
            raise
    if role is not None:
        etcd.auth(f"grant role {role} to {user}", "UserGrantRole",
                  pb.AuthUserGrantRoleRequest(user=user, role=role))


def ensure_role(etcd: Etcd, role: str, perms: list[auth_pb2.Permission]) -> None:
    try:
        etcd.auth(f"add role {role}", "RoleAdd", pb.AuthRoleAddRequest(name=role))
    except EtcdError as e:
        if not _exists(e):
            raise
    for p in perms:
        etcd.auth(f"grant {auth_pb2.Permission.Type.Name(p.permType).lower()} on "
                  f"{p.key.decode()} to role {role}", "RoleGrantPermission",
                  pb.AuthRoleGrantPermissionRequest(name=role, perm=p))


def setup(etcd: Etcd, layout: Layout) -> None:
    """Root and operator users, then auth on. Run once per cluster, with a root cert
    (or before auth is on, with any cert the cluster trusts)."""
    ensure_user(etcd, ROOT, "root")
    add_operator(etcd, layout)
    etcd.auth("enable auth", "AuthEnable", pb.AuthEnableRequest())


def add_operator(etcd: Etcd, layout: Layout, user: str = OPERATOR) -> None:
    ensure_role(etcd, OPERATOR, [permission("readwrite", layout.devices()),
                                 permission("read", layout.statuses())])
    ensure_user(etcd, user, OPERATOR)


def add_device(etcd: Etcd, layout: Layout, device: str) -> str:
    """The device's role and user; returns the user name (its certificate's CN)."""
    user = device_user(device)
    ensure_role(etcd, user, [permission("read", layout.device(device)),
                             permission("readwrite", layout.status(device))])
    ensure_user(etcd, user, user)
    return user
