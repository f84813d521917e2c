"""The whole plan of a device: transit slots, every NI, and the device netns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runner.model.types import NetworkInstance, SupervisorConfig
from runner.plan import transit
from runner.plan.device import DevicePlan, plan_device
from runner.plan.errors import PlanError
from runner.plan.facts import Facts
from runner.plan.ni import NIPlan, NIWorkloads, plan_ni


@dataclass(frozen=True)
class Plan:
    slots: dict[str, int]  # NI name -> transit slot; persist it for the next build
    nis: dict[str, NIPlan]  # by NI name, sorted
    device: DevicePlan


def build(
    config: SupervisorConfig,
    facts: Facts,
    nis: Sequence[NetworkInstance],
    previous_slots: Mapping[str, int],
    workloads: Mapping[str, NIWorkloads] | None = None,
) -> Plan:
    """Plan every NI and the device netns; `previous_slots` keeps transit links stable;
    `workloads`: what CNI attachments add to their NIs, by NI name."""
    workloads = workloads or {}
    by_name: dict[str, NetworkInstance] = {}
    for ni in nis:
        if ni.name in by_name:
            raise PlanError(f"NI {ni.name} is given twice")
        by_name[ni.name] = ni
    slots = transit.allocate(
        config.transit_pool,
        (n for n, ni in by_name.items() if ni.uplink is not None),
        previous_slots,
    )
    plans = {n: plan_ni(by_name[n], config, facts, slots.get(n),
                        workloads.get(n, NIWorkloads())) for n in sorted(by_name)}
    return Plan(slots, plans, plan_device(config, facts, list(plans.values())))
