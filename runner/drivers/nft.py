"""nftables: apply a rendered ruleset atomically (`nft -f`), inside a netns if given.

Through libnftables in-process (runner.drivers.libnft), or `nft` where it is missing:
both work in the netns of the calling thread (a child process inherits the thread's),
so a thread that entered the netns needs no `ip netns exec`.

Each table nirunner applies carries a comment "nirunner:<hash of its text>", so
reading it back (one netlink request, no nft process) tells whether it is the
table we applied. The thread (or process) IDs behind our own changes are remembered
for a while: nftables events name the task behind each change, and the watcher
ignores ours.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import subprocess
import threading
import time
from collections.abc import Mapping

from runner.drivers import libnft, nfnl
from runner.drivers import netns as ns
from runner.errors import NirunnerError

TAG_PREFIX = "nirunner:"

_own_lock = threading.Lock()
# (task ID, when) of our recent changes: their events come within milliseconds; the
# age bound keeps a later task with a reused ID (pid_max is 32768 here) from passing
OWN_FOR = 10.0  # s
_own: collections.deque[tuple[int, float]] = collections.deque(maxlen=256)


def _mine(task_id: int) -> None:
    with _own_lock:
        _own.append((task_id, time.monotonic()))


class NftError(NirunnerError):
    pass


def own_pid(pid: int) -> bool:
    """Whether `pid` made one of our recent changes (a thread of ours or an nft process)."""
    recent = time.monotonic() - OWN_FOR
    with _own_lock:
        return any(p == pid and t >= recent for p, t in _own)


def _nft(args: list[str], stdin: str | None, netns: str | None, what: str) -> str:
    """`nft [-j] -f -` with `stdin`, or `nft [-j] <args>`: through libnftables where it is
    (the calling thread's TID names the change in nftables events), else a process."""
    def run() -> tuple[int, str, str]:
        if libnft.available():
            json_out = args[:1] == ["-j"]
            rest = args[1:] if json_out else args
            commands = stdin if rest == ["-f", "-"] else " ".join(rest)
            _mine(threading.get_native_id())
            return libnft.run(commands or "", json=json_out)
        p = subprocess.Popen(["nft", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        _mine(p.pid)
        try:
            out, err = p.communicate(stdin, timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        return p.returncode, out, err

    code, out, err = ns.run_in(netns, run) if netns else run()
    if code != 0:
        where = f" in {netns}" if netns else ""
        raise NftError(f"{what}{where}: {err.strip() or f'nft exited with {code}'}")
    return out


def tag(text: str) -> str:
    """The comment that identifies a rendered table's text."""
    return TAG_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]


def apply(ruleset: str, netns: str | None = None, what: str = "apply nft ruleset") -> None:
    """Apply a whole ruleset as one transaction: all of it or nothing."""
    _nft(["-f", "-"], ruleset, netns, what)


def apply_table(text: str, family: str, table: str, netns: str | None = None,
                tag_of: str | None = None) -> None:
    """Apply a rendered table (see runner.render.nft) with its tag as the table's comment;
    `tag_of`: the text to tag it with instead (the table without what changes live).

    A table with named counters keeps their values: the table is replaced whole, so
    they are read first and written into the new text (the tag is of the rendered
    text, without values, so reading the table back never sees a difference).
    """
    head = f"table {family} {table} {{\n"
    at = text.rfind(head)
    if at < 0:
        raise NftError(f"apply nft table {family} {table}: the text defines no such table")
    at += len(head)
    tagged = text[:at] + f'\tcomment "{tag(text if tag_of is None else tag_of)}"\n' + text[at:]
    if _COUNTER.search(text) and read_tag(family, table, netns) is not None:
        tagged = keep_counters(tagged, counters(family, table, netns))
    _nft(["-f", "-"], tagged, netns, f"apply nft table {family} {table}")


_COUNTER = re.compile(r"^\tcounter ([A-Za-z0-9_]+) \{\}$", re.M)


def keep_counters(text: str, values: Mapping[str, tuple[int, int]]) -> str:
    """`text` with each empty named counter declaration set to its (packets, bytes)."""
    def sub(m: re.Match[str]) -> str:
        v = values.get(m.group(1))
        return m.group(0) if v is None else \
            f"\tcounter {m.group(1)} {{ packets {v[0]} bytes {v[1]} }}"

    return _COUNTER.sub(sub, text)


def counters(family: str, table: str, netns: str | None = None) -> dict[str, tuple[int, int]]:
    """The table's named counters: name -> (packets, bytes); one nft process."""
    out = _nft(["-j", "list", "counters", "table", family, table], None, netns,
               f"list counters of nft table {table}")
    return parse_counters(out)


def parse_counters(text: str) -> dict[str, tuple[int, int]]:
    try:
        items = json.loads(text).get("nftables", [])
        return {c["name"]: (int(c["packets"]), int(c["bytes"]))
                for c in (x.get("counter") for x in items if isinstance(x, dict)) if c}
    except (ValueError, AttributeError, KeyError, TypeError) as e:
        raise NftError(f"nft's JSON of counters cannot be read: {e}") from None


def read_tag(family: str, table: str, netns: str | None = None) -> str | None:
    """The table's comment ("" without one); None if there is no such table."""
    def get() -> str | None:
        return nfnl.table_comment(family, table)

    return ns.run_in(netns, get) if netns else get()


def delete_table(family: str, table: str, netns: str | None = None) -> None:
    # the `table ...; delete table ...` idiom makes this a no-op when it is missing
    apply(f"table {family} {table} {{}}\ndelete table {family} {table}\n", netns,
          f"delete nft table {family} {table}")


def list_sets(netns: str | None = None) -> str:
    """`nft -j list sets`: every set with its elements, as JSON text."""
    return _nft(["-j", "list", "sets"], None, netns, "list nft sets")


def list_table(family: str, table: str, netns: str | None = None) -> str:
    return _nft(["list", "table", family, table], None, netns, f"list nft table {table}")


def list_json(family: str, table: str, netns: str | None = None) -> str:
    """`nft -j list table`: the table with its sets' elements and counters, as JSON."""
    return _nft(["-j", "list", "table", family, table], None, netns,
                f"list nft table {family} {table}")


def tables(netns: str | None = None) -> list[tuple[str, str]]:
    out = _nft(["list", "tables"], None, netns, "list nft tables")
    return [(w[1], w[2]) for w in (ln.split() for ln in out.splitlines()) if len(w) == 3]
