"""A witness in a lab netns: a counter of the packets that match, at one hook.

The lab's own table (inet witness) in a lab namespace, so a test can tell whether
something arrived where the edge should have stopped it.
"""

from __future__ import annotations

from runner.lab.topology import sh


def witness(netns: str, match: str, hook: str = "input") -> None:
    """Count packets matching `match` at `hook` (priority -300: before anything else)."""
    sh("nft", "-f", "-", netns=netns, input=(
        "table inet witness {}\ndelete table inet witness\n"
        f"table inet witness {{ chain c {{ type filter hook {hook} priority -300; "
        f"{match} counter; }}; }}\n"))


def witnessed(netns: str) -> int:
    """Packets counted so far."""
    out = sh("nft", "list", "chain", "inet", "witness", "c", netns=netns).stdout
    return int(out.split("counter packets ")[1].split()[0])


def witnessed_bytes(netns: str) -> int:
    out = sh("nft", "list", "chain", "inet", "witness", "c", netns=netns).stdout
    return int(out.split("bytes ")[1].split()[0])


def unwitness(netns: str) -> None:
    sh("nft", "delete", "table", "inet", "witness", netns=netns, check=False)
