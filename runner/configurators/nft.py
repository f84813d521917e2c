"""nft tables: applied whole and atomically, read back by their tag (see drivers.nft)."""

from __future__ import annotations

from dataclasses import replace

from runner.drivers import netns as ns
from runner.drivers import nft
from runner.reconcile.kinds import NftTable

DIFFERS = "(not the table nirunner applied)"


class NftConf:
    parallel = False

    def create(self, item: NftTable) -> NftTable:
        nft.apply_table(item.text, item.family, item.name, item.netns)
        return item

    def modify(self, old: NftTable, new: NftTable) -> NftTable:
        return self.create(new)

    def delete(self, item: NftTable) -> None:
        try:
            nft.delete_table(item.family, item.name, item.netns)
        except ns.NoSuchNetns:
            pass

    def read(self, item: NftTable) -> NftTable | None:
        try:
            found = nft.read_tag(item.family, item.name, item.netns)
        except ns.NoSuchNetns:
            return None
        if found is None:
            return None
        return item if found == nft.tag(item.text) else replace(item, text=DIFFERS)


def tampered(item: NftTable) -> NftTable:
    """The record of a table someone else changed (seen in nftables events)."""
    return replace(item, text=DIFFERS)
