"""The whole plan of a device: transit slots, every NI, and the device netns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from runner.model.types import NetworkInstance, NIType, SupervisorConfig
from runner.plan import transit
from runner.plan.device import DevicePlan, plan_device
from runner.plan.errors import PlanError
from runner.plan.facts import Facts
from runner.plan.ni import NIPlan, NIWorkloads, plan_ni
from runner.plan.switch import SwitchApp, SwitchPlan, plan_switch, plan_switch_device, spec_of


@dataclass(frozen=True)
class Plan:
    slots: dict[str, int]  # NI name -> transit slot; persist it for the next build
    nis: dict[str, NIPlan]  # by NI name, sorted (local and VPN NIs)
    device: DevicePlan
    switches: dict[str, SwitchPlan] = field(default_factory=dict)  # switch NIs, by name
    # switch NIs that cannot be built here (a VLAN on a kernel without 802.1Q), and why:
    # stored ones are shown failed with the reason; apply refuses a new one (`refuse`)
    refused: dict[str, str] = field(default_factory=dict)

    def of(self, name: str) -> NIPlan | SwitchPlan:
        """The plan of NI `name`, whatever its type (KeyError when it has none)."""
        return self.nis[name] if name in self.nis else self.switches[name]


def refuse(plan: Plan, names: Sequence[str]) -> None:
    """PlanError for the first of `names` the plan could not build."""
    for name in names:
        if name in plan.refused:
            raise PlanError(plan.refused[name])


def build(
    config: SupervisorConfig,
    facts: Facts,
    nis: Sequence[NetworkInstance],
    previous_slots: Mapping[str, int],
    workloads: Mapping[str, NIWorkloads] | None = None,
    apps: Mapping[str, Sequence[SwitchApp]] | None = None,
) -> Plan:
    """Plan every NI and the device netns; `previous_slots` keeps transit links stable;
    `workloads`: what CNI attachments add to their NIs, by NI name; `apps`: the apps
    attached to switch NIs, by NI name."""
    workloads = workloads or {}
    apps = apps or {}
    by_name: dict[str, NetworkInstance] = {}
    for ni in nis:
        if ni.name in by_name:
            raise PlanError(f"NI {ni.name} is given twice")
        by_name[ni.name] = ni
    routed = {n: ni for n, ni in by_name.items() if ni.type is not NIType.SWITCH}
    slots = transit.allocate(
        config.transit_pool,
        (n for n, ni in routed.items() if ni.uplink is not None),
        previous_slots,
    )
    plans = {n: plan_ni(routed[n], config, facts, slots.get(n),
                        workloads.get(n, NIWorkloads())) for n in sorted(routed)}
    switches: dict[str, SwitchPlan] = {}
    refused: dict[str, str] = {}
    for n in sorted(set(by_name) - set(routed)):
        try:
            switches[n] = plan_switch(spec_of(by_name[n]), apps.get(n, ()), config, facts)
        except PlanError as e:  # that NI alone cannot be built here
            refused[n] = str(e)
    device = plan_device(config, facts, list(plans.values()),
                         plan_switch_device(switches.values(), facts, facts.learned))
    return Plan(slots, plans, device, switches, refused)
