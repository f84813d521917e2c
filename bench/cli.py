"""The CLI's cost: every `nirunner` command that talks to the API, end to end (the
installed `nirunner` script in a new process, as a user runs it) against the same
call made in-process through runner.api.client (a new client each time, as the CLI
makes one); the difference is what the CLI adds (interpreter start, imports,
argument parsing, output). Measured with N NIs applied, CLI and in-process calls
alternating. Also the CLI's import time (`python -X importtime`).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bringup import PORT_BASE, manifest
from bench.lab import BenchLab
from runner.api.client import ApiClient
from runner.lab.topology import sh

# the import time of these, where first imported (outermost), summed
WATCH = ("grpc", "google.protobuf", "yaml", "pyroute2", "asyncio", "runner.pb",
         "runner.containerd", "runner.fleet", "runner.model")
SPARE = "bench-cli"  # the NI created for the delete rows


@dataclass
class Cli:
    n: int = 0  # NIs applied
    cmds: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # cli / api
    python_start: list[float] = field(default_factory=list)  # `python -c pass`, wall
    imports: dict[str, list[float]] = field(default_factory=dict)  # seconds, per run

    def cost(self, label: str) -> float:
        c = self.cmds[label]
        return statistics.median(c["cli"]) - statistics.median(c["api"])


# -- python -X importtime ------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    depth: int
    name: str
    self_us: int
    cumulative_us: int


def parse_importtime(text: str) -> list[Import]:
    """The lines of `-X importtime` (stderr), in order; other lines are skipped."""
    out = []
    for line in text.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line
        name = parts[2][1:]
        out.append(Import((len(name) - len(name.lstrip(" "))) // 2, name.strip(),
                          int(parts[0]), int(parts[1])))
    return out


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def outermost(entries: list[Import], prefix: str) -> int:
    """Cumulative µs of the modules under `prefix` where they were first imported: the
    outermost matching entries (a match nested in another match is inside its time)."""
    total = 0
    inside: int | None = None  # depth of the enclosing match
    # importtime prints a module after its imports: walk backwards so parents come first
    for e in reversed(entries):
        if inside is not None and e.depth <= inside:
            inside = None
        if inside is None and _matches(e.name, prefix):
            total += e.cumulative_us
            inside = e.depth
    return total


def children(entries: list[Import], parent: str) -> dict[str, int]:
    """Cumulative µs of each module imported directly by `parent`'s top-level import."""
    out: dict[str, int] = {}
    for i, e in enumerate(entries):
        if e.name == parent and e.depth == 0:
            j = i - 1
            while j >= 0 and entries[j].depth > 0:
                if entries[j].depth == 1:
                    out[entries[j].name] = entries[j].cumulative_us
                j -= 1
            break
    return out


def import_times(text: str, main: str = "runner.cli.main", top: int = 6) -> dict[str, float]:
    """Seconds: the whole import of `main`, its biggest direct imports, the WATCH list."""
    entries = parse_importtime(text)
    out = {main: next((e.cumulative_us for e in entries if e.name == main), 0) / 1e6}
    kids = sorted(children(entries, main).items(), key=lambda kv: -kv[1])[:top]
    out.update({f"{main} > {k}": v / 1e6 for k, v in kids})
    out.update({f"first import of {p}": outermost(entries, p) / 1e6 for p in WATCH})
    out["site (interpreter start-up)"] = next(
        (e.cumulative_us for e in entries if e.name == "site"), 0) / 1e6
    return out


# -- measuring ------------------------------------------------------------------------


def nirunner_bin() -> list[str]:
    script = Path(sys.executable).parent / "nirunner"
    return [str(script)] if script.exists() else [sys.executable, "-m", "runner.cli.main"]


def _cli(blab: BenchLab, *args: str) -> float:
    t = time.perf_counter()
    res = subprocess.run([*nirunner_bin(), *args, "--socket", blab.lab.socket],
                         capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError(f"nirunner {' '.join(args)}: {res.stderr.strip()[-500:]}")
    return took


def _api(blab: BenchLab, call: Callable[[ApiClient], Any]) -> float:
    t = time.perf_counter()
    with ApiClient(blab.lab.socket) as api:
        call(api)
    return time.perf_counter() - t


def run(blab: BenchLab, names: list[str], reps: int) -> Cli:
    """With `names` applied (bench-0 ... with their manifests)."""
    res = Cli(len(names))
    ni = names[0]
    one = blab.base / "cli-one.yaml"
    one.write_text(manifest(ni, PORT_BASE))
    docs = [(str(one), one.read_text())]
    spare_doc = [(f"{SPARE}.yaml", manifest(SPARE, PORT_BASE + 999))]
    app = blab.app_netns("cli")
    netns = f"/run/netns/{app}"
    tap = "tapcli"
    sh("ip", "tuntap", "add", "dev", tap, "mode", "tap", netns=blab.lab.device)
    # label -> (CLI arguments, the same call in-process, what to do before each (untimed))
    cmds: dict[str, tuple[list[str], Callable[[ApiClient], Any],
                          Callable[[ApiClient], Any] | None]] = {
        f"status ({len(names)} NIs)": (["status"], lambda a: a.status([]), None),
        f"status {ni}": (["status", ni], lambda a: a.status([ni]), None),
        f"inspect {ni}": (["inspect", ni], lambda a: a.status([ni], detail=True), None),
        "apply -f (1 NI, unchanged)": (["apply", "-f", str(one)], lambda a: a.apply(docs),
                                       None),
        "apply --dry-run -f (1 NI)": (["apply", "--dry-run", "-f", str(one)],
                                      lambda a: a.apply(docs, dry_run=True), None),
        "attach --netns": (["attach", ni, "--netns", netns],
                           lambda a: a.attach(ni, netns, "eth0"), None),
        "detach --netns": (["detach", ni, "--netns", netns],
                           lambda a: a.detach(ni, netns, "eth0"),
                           lambda a: a.attach(ni, netns, "eth0")),
        "attach --interface (tap)": (["attach", ni, "--interface", tap],
                                     lambda a: a.attach_interface(ni, tap), None),
        "detach --interface (tap)": (["detach", ni, "--interface", tap],
                                     lambda a: a.detach_interface(ni, tap),
                                     lambda a: a.attach_interface(ni, tap)),
        "events": (["events"], lambda a: list(a.events()), None),
        "reload (config unchanged)": (["reload"], lambda a: a.reload(), None),
        f"roll {ni} (nothing to roll)": (["roll", ni], lambda a: a.roll([ni]), None),
        "delete (1 NI)": (["delete", SPARE], lambda a: a.delete([SPARE]),
                          lambda a: a.apply(spare_doc)),
        "__complete-nis (shell completion)": (["__complete-nis"],
                                              lambda a: a.status([]), None),
    }
    try:
        for _ in range(reps):
            for label, (args, call, before) in cmds.items():
                c = res.cmds.setdefault(label, {"cli": [], "api": []})
                for way in ("api", "cli"):
                    if before is not None:
                        with ApiClient(blab.lab.socket) as api:
                            before(api)
                    c[way].append(_api(blab, call) if way == "api" else _cli(blab, *args))
                    _undo(blab, label, ni, netns, tap)
        for _ in range(max(3, reps)):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            res.python_start.append(time.perf_counter() - t)
            out = subprocess.run([sys.executable, "-X", "importtime", "-c",
                                  "import runner.cli.main"], capture_output=True, text=True,
                                 check=True)
            for k, v in import_times(out.stderr).items():
                res.imports.setdefault(k, []).append(v)
    finally:
        with ApiClient(blab.lab.socket) as api:
            if SPARE in {s["name"] for s in api.status([])}:
                api.delete([SPARE])
        sh("ip", "link", "del", tap, netns=blab.lab.device, check=False)
        blab.del_netns(app)
    return res


def _undo(blab: BenchLab, label: str, ni: str, netns: str, tap: str) -> None:
    """What an attach did, undone (untimed), so the next round starts alike."""
    with ApiClient(blab.lab.socket) as api:
        if label == "attach --netns":
            api.detach(ni, netns, "eth0")
        elif label == "attach --interface (tap)":
            api.detach_interface(ni, tap)
