"""The whole plan of a device: transit slots, every NI, and the device netns."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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


Memo = dict[str, tuple[tuple[object, ...], Any]]


def build(
    config: SupervisorConfig,
    facts: Facts,
    nis: Sequence[NetworkInstance],
    previous_slots: Mapping[str, int],
    workloads: Mapping[str, NIWorkloads] | None = None,
    apps: Mapping[str, Sequence[SwitchApp]] | None = None,
    memo: Memo | None = None,
) -> Plan:
    """Plan every NI and the device netns; `previous_slots` keeps transit links stable;
    `workloads`: what CNI attachments add to their NIs, by NI name; `apps`: the apps
    attached to switch NIs, by NI name.

    `memo` (kept by the caller between builds) holds each NI's plan with the inputs it
    was made of, and the device's: an NI whose inputs are the same objects or values
    is not planned again, so a change of one NI costs one NI's planning (and the
    device's, when an NI's plan changed). Planning is pure: reuse is exact."""
    workloads = workloads or {}
    apps = apps or {}
    memo = {} if memo is None else memo

    def cached(key: str, inputs: tuple[object, ...], make: Callable[[], Any]) -> Any:
        hit = memo.get(key)
        if hit is not None and hit[0] == inputs:
            return hit[1]
        value = make()
        memo[key] = (inputs, value)
        return value

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
    def ni_plan(n: str, w: NIWorkloads) -> Callable[[], NIPlan]:
        return lambda: plan_ni(routed[n], config, facts, slots.get(n), w)

    def switch_plan(n: str, mine: tuple[SwitchApp, ...]) -> Callable[[], SwitchPlan]:
        return lambda: plan_switch(spec_of(by_name[n]), mine, config, facts)

    plans: dict[str, NIPlan] = {}
    for n in sorted(routed):
        w = workloads.get(n, NIWorkloads())
        plans[n] = cached(f"ni:{n}", (routed[n], slots.get(n), config, facts, w),
                          ni_plan(n, w))
    switches: dict[str, SwitchPlan] = {}
    refused: dict[str, str] = {}
    for n in sorted(set(by_name) - set(routed)):
        try:
            mine = tuple(apps.get(n, ()))
            switches[n] = cached(f"switch:{n}", (by_name[n], mine, config, facts),
                                 switch_plan(n, mine))
        except PlanError as e:  # that NI alone cannot be built here
            refused[n] = str(e)
    device = cached("device", (config, facts, *plans.values(), *switches.values()),
                    lambda: plan_device(config, facts, list(plans.values()),
                                        plan_switch_device(switches.values(), facts,
                                                           facts.learned)))
    for key in [k for k in memo if k.partition(":")[2] not in by_name and k != "device"]:
        del memo[key]  # NIs that are gone
    return Plan(slots, plans, device, switches, refused)
