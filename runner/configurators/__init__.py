"""One configurator per item kind: the effects of creating, modifying, deleting and
reading items, over the drivers (runner.drivers) and the containerd client.

Every create is idempotent (it makes what is missing and fixes what differs), so
re-running it after a crash, or as the inverse of a delete, is safe. Deleting a
missing object is not an error. Reading returns the object as an item of the
same id, or None when it does not exist (or cannot be what the item says).
"""

from __future__ import annotations

from typing import Any

from runner.configurators.appedge import AclTableConf, EdgePortConf, EdgeTableConf
from runner.configurators.files import ConfigFilesConf, StateDirConf
from runner.configurators.links import BridgeConf, PlugConf, VethConf
from runner.configurators.netns import NetnsConf, SysctlsConf
from runner.configurators.nft import NftConf
from runner.configurators.routing import LocalRuleConf, RoutesConf, RuleConf
from runner.configurators.switch import PortTableConf, ShimConf, SwitchPortConf, VlanConf
from runner.configurators.task import TaskConf
from runner.configurators.workloads import AppAddressConf, TakenLinkConf
from runner.containerd.client import Client
from runner.plan.layout import Layout
from runner.supervisor.edgewatch import EdgeWatch


def configurators(client: Client, layout: Layout, secrets_dir: str | None = None,
                  edge: EdgeWatch | None = None, shim_group_size: int = 1) -> dict[str, Any]:
    """By item kind; `secrets_dir`: where credential files must be (see drivers.secrets);
    `edge`: the follower of leases and flow logs the app-edge tables share a lock with;
    `shim_group_size`: NI tasks per shared runc shim."""
    tasks = TaskConf(client, secrets_dir, shim_group_size)
    edge = edge or EdgeWatch()
    return {
        "statedir": StateDirConf(layout),
        "netns": NetnsConf(layout),
        "sysctls": SysctlsConf(),
        "veth": VethConf(),
        "bridge": BridgeConf(),
        "routes": RoutesConf(),
        "rule": RuleConf(),
        "localrule": LocalRuleConf(),
        "nft": NftConf(),
        "files": ConfigFilesConf(tasks, secrets_dir),
        "task": tasks,
        "plug": PlugConf(),
        "tap": TakenLinkConf(),
        "appaddr": AppAddressConf(),
        "edge": EdgeTableConf(edge, layout),
        "edgeport": EdgePortConf(edge),
        "acl": AclTableConf(edge, layout),
        # switch NIs (runner.reconcile.switch_kinds)
        "vlan": VlanConf(),
        "shim": ShimConf(),
        "swport": SwitchPortConf(),
        "porttable": PortTableConf(),
    }
