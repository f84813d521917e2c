"""Profiles of the supervisor: py-spy of the live daemon, summarized by function.

`python -m bench.run --profile DIR` records the daemon with py-spy (all threads,
idle included: time waiting for a child process or containerd is wall time of
the bring-up) and writes DIR/py-spy.txt (raw collapsed stacks) and
DIR/py-spy-summary.txt (wall time per runner/ function under the API handlers).
"""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from pathlib import Path

RATE = 250  # samples per second
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def py_spy() -> str:
    for cand in (shutil.which("py-spy"), str(Path(__file__).resolve().parents[1] /
                                             ".venv/bin/py-spy")):
        if cand and Path(cand).exists():
            return cand
    raise RuntimeError("py-spy not found: pip install py-spy (into .venv)")


def py_spy_cmd(pid: int, out: str) -> list[str]:
    return [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--idle",
            "--threads", "--nonblocking", "--format", "raw", "-o", out]


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for part in stack.split(";"):
        m = _FRAME.match(part.strip())
        if m:
            f = m.group("file")
            i = f.find("runner/")
            out.append((f[i:] if i >= 0 else Path(f).name, m.group("func")))
    return out


def _kind(stack: str, leaf: tuple[str, str]) -> str:
    """What the innermost runner/ frame of the stack was waiting on or doing."""
    parts = stack.split(";")
    ours = [i for i, p in enumerate(parts) if "(runner/" in p]
    where = ";".join(parts[ours[-1]:]) if ours else stack
    stack = where
    if "(subprocess.py" in stack:
        return "child process (spawn, wait, pipes)"
    if "pyroute2/" in stack:
        return "pyroute2 netlink (incl. its asyncio loop)"
    if "grpc/" in stack:
        return "gRPC (containerd, API)"
    if leaf[1].rsplit(".", 1)[-1] in ("join", "_wait_for_tstate_lock", "wait", "start"):
        return "starting / waiting for a thread"
    if "files.py:" in stack or "store.py" in stack:
        return "state files (write, fsync)"
    return "other Python"


def summarize(raw: str, roots: tuple[str, ...] = ("Apply", "Delete", "Attach", "reconcile"),
              top: int = 25) -> str:
    """Wall time (ms) of the supervisor's API handlers and reconcile passes.

    inclusive: each runner/ function on the handler's own thread (time waiting for
      its setns threads included), so the numbers add up along a call chain.
    self: the innermost runner/ function of each sample, over the handler threads and
      the short-lived setns threads (netns:...) they start, without the handler's
      own wait for those threads, so each sample counts once.
    """
    incl: dict[str, int] = defaultdict(int)
    self_: dict[str, int] = defaultdict(int)
    kinds: dict[str, int] = defaultdict(int)
    leafs: dict[str, int] = defaultdict(int)
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = _frames(stack)
        n = int(count)
        handler = any(func.rsplit(".", 1)[-1] in roots for _, func in frames)
        setns_thread = stack.startswith("thread") and ": netns:" in stack.split(";")[0]
        if not handler and not setns_thread:
            continue
        ours = [f"{f}:{fn}" for f, fn in frames if f.startswith("runner/")]
        if handler:
            total += n
            for key in dict.fromkeys(ours):
                incl[key] += n
        leaf = frames[-1] if frames else ("?", "?")
        waiting = leaf[1].rsplit(".", 1)[-1] in ("join", "_wait_for_tstate_lock") and \
            any(fn == "run_in" for _, fn in frames)
        if waiting:
            continue
        if ours:
            self_[ours[-1]] += n
        kinds[_kind(stack, leaf)] += n
        leafs[f"{leaf[0]}:{leaf[1]}"] += n

    def ms(n: int) -> str:
        return f"{n * 1000 / RATE:8.0f} ms"

    def block(title: str, d: dict[str, int]) -> list[str]:
        return ["", title] + [f"  {ms(n)}  {k}" for k, n in
                              sorted(d.items(), key=lambda x: -x[1])[:top]]

    lines = [f"wall time in {', '.join(roots)} (sampled at {RATE} Hz): {ms(total).strip()}"]
    lines += block("inclusive, on the handler thread (runner/ functions):", incl)
    lines += block("self: innermost runner/ function (handler + setns threads):", self_)
    lines += block("by kind of leaf:", kinds)
    lines += block("leaf functions:", leafs)
    return "\n".join(lines) + "\n"
