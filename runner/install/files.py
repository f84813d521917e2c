"""What `nirunner install` writes, and writing it (idempotent; --dry-run shows it).

    <root>/etc/systemd/system/nirunner.service            the unit (always up to date)
    <root>/etc/nirunner/supervisor.yaml                    a default config, only if missing
    <root><share>/bash-completion/completions/nirunner     bash completion
    <root><share>/zsh/site-functions/_nirunner             zsh completion

<share> is <prefix>/share (default prefix /usr/local: both shells look there);
with prefix /usr, zsh's file goes to Debian's zsh/vendor-completions instead.
The unit starts `<prefix>/bin/nirunner` when a prefix is given, else the very
nirunner that runs `install` (e.g. one in a virtualenv).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from runner.drivers.files import write_atomic

CONFIG = "/etc/nirunner/supervisor.yaml"
UNIT = "etc/systemd/system/nirunner.service"


@dataclass(frozen=True)
class File:
    path: Path  # where it is written, under the root
    text: str
    mode: int = 0o644
    keep: bool = False  # an existing file is the admin's: never overwritten


def _data(name: str) -> str:
    return resources.files("runner.install").joinpath(name).read_text()


def executable(prefix: str | None) -> str:
    """The command line the unit starts the supervisor with."""
    if prefix:
        return f"{prefix.rstrip('/')}/bin/nirunner"
    script = Path(sys.executable).with_name("nirunner")  # this installation's script
    return str(script) if script.is_file() else f"{sys.executable} -m runner.cli.main"


def unit(exec_start: str, config: str = CONFIG) -> str:
    return _data("nirunner.service").replace("@NIRUNNER@", exec_start).replace(
        "@CONFIG@", config)


def plan(root: str, prefix: str | None, bash: str, zsh: str) -> list[File]:
    """The files, from the unit and config templates and the two completion scripts."""
    r = Path(root)
    share = Path((prefix or "/usr/local").lstrip("/")) / "share"
    zsh_dir = "vendor-completions" if prefix in ("/usr", "/usr/") else "site-functions"
    return [
        File(r / UNIT, unit(executable(prefix))),
        File(r / CONFIG.lstrip("/"), _data("supervisor.yaml"), keep=True),
        File(r / share / "bash-completion/completions/nirunner", bash),
        File(r / share / "zsh" / zsh_dir / "_nirunner", zsh),
    ]


def action(f: File) -> str:
    """create, update, unchanged, or keep (an existing file that is the admin's)."""
    try:
        old = f.path.read_text()
    except FileNotFoundError:
        return "create"
    except (OSError, UnicodeDecodeError):
        return "keep" if f.keep else "update"
    if f.keep:
        return "keep"
    same_mode = (f.path.stat().st_mode & 0o777) == f.mode
    return "unchanged" if old == f.text and same_mode else "update"


def install(files: list[File], dry_run: bool = False) -> list[tuple[File, str]]:
    """Write what is new or changed; returns each file with its action."""
    done = []
    for f in files:
        what = action(f)
        if what in ("create", "update") and not dry_run:
            write_atomic(f.path, f.text, f.mode)
        done.append((f, what))
    return done
