"""Route tables (our routes in them) and ip rules."""

from __future__ import annotations

from dataclasses import replace

from runner.drivers import netns as ns
from runner.drivers import routes
from runner.net import names
from runner.net.routing import DEFAULT_LOCAL_RULE
from runner.net.routing import Rule as RuleValue
from runner.reconcile.kinds import LocalRule, Routes, Rule

OWNED = range(names.TRANSIT_RULE_BASE, names.LOCAL_RULE_PRIORITY)


class RoutesConf:
    parallel = False

    def create(self, item: Routes) -> Routes:
        routes.sync(item.routes, [item.table], item.netns)
        return item

    def modify(self, old: Routes, new: Routes) -> Routes:
        return self.create(new)

    def delete(self, item: Routes) -> None:
        try:
            routes.sync((), [item.table], item.netns)
        except ns.NoSuchNetns:
            pass

    def read(self, item: Routes) -> Routes | None:
        try:
            found = routes.read_table(item.table, item.netns)
        except ns.NoSuchNetns:
            return None
        return replace(item, routes=found) if set(found) != set(item.routes) else item


class RuleConf:
    parallel = False

    def create(self, item: Rule) -> Rule:
        routes.add_rule(item.rule)
        return item

    def modify(self, old: Rule, new: Rule) -> Rule:
        return self.create(new)

    def delete(self, item: Rule) -> None:
        routes.delete_rule(item.rule)

    def read(self, item: Rule) -> Rule | None:
        return item if item.rule in routes.rules() else None

    def sweep(self) -> list[Rule]:
        """Rules in our priority range (iif nr<slot> lookup <uplink table>)."""
        return [Rule("", r) for r in routes.rules() if r.priority in OWNED]


class LocalRuleConf:
    """The local table's rule moved below ours; when not wanted any more it stays moved
    (putting it back at 0 would break the hairpins of NIs being set up meanwhile)."""

    parallel = False

    def create(self, item: LocalRule) -> LocalRule:
        routes.add_rule(RuleValue(item.priority, item.table))
        routes.delete_rule(DEFAULT_LOCAL_RULE)
        return item

    def modify(self, old: LocalRule, new: LocalRule) -> LocalRule:
        return self.create(new)

    def delete(self, item: LocalRule) -> None:
        pass

    def read(self, item: LocalRule) -> LocalRule | None:
        have = routes.rules()
        moved = RuleValue(item.priority, item.table) in have and DEFAULT_LOCAL_RULE not in have
        return item if moved else None
