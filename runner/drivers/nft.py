"""nftables: apply a rendered ruleset atomically (`nft -f`), inside a netns if given.

A child process inherits the network namespace of the thread that forks it, so
running nft from a thread that entered the netns needs no `ip netns exec`.
"""

from __future__ import annotations

import subprocess

from runner.drivers import netns as ns
from runner.errors import NirunnerError


class NftError(NirunnerError):
    pass


def _nft(args: list[str], stdin: str | None, netns: str | None, what: str) -> str:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nft", *args], input=stdin, capture_output=True, text=True,
                              timeout=30)

    res = ns.run_in(netns, run) if netns else run()
    if res.returncode != 0:
        where = f" in netns {netns}" if netns else ""
        raise NftError(f"{what}{where}: {res.stderr.strip()}")
    return res.stdout


def apply(ruleset: str, netns: str | None = None, what: str = "apply nft ruleset") -> None:
    """Apply a whole ruleset as one transaction: all of it or nothing."""
    _nft(["-f", "-"], ruleset, netns, what)


def delete_table(family: str, table: str, netns: str | None = None) -> None:
    # the `table ...; delete table ...` idiom makes this a no-op when it is missing
    apply(f"table {family} {table} {{}}\ndelete table {family} {table}\n", netns,
          f"delete nft table {family} {table}")


def list_table(family: str, table: str, netns: str | None = None) -> str:
    return _nft(["list", "table", family, table], None, netns, f"list nft table {table}")


def tables(netns: str | None = None) -> list[tuple[str, str]]:
    out = _nft(["list", "tables"], None, netns, "list nft tables")
    return [(w[1], w[2]) for w in (ln.split() for ln in out.splitlines()) if len(w) == 3]
