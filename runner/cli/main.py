"""The `nirunner` command line."""

from __future__ import annotations

import argparse
import os
import re
import sys

# gRPC core logs a line each time a subprocess is forked while it has threads
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from runner import __version__
from runner.cli import fleet_args, flow_commands, ops_commands
from runner.cli.ni_commands import UserError, add_commands
from runner.defaults import API_SOCKET as DEFAULT_SOCKET
from runner.defaults import CONTAINERD_ADDRESS as DEFAULT_ADDRESS
from runner.defaults import CONTAINERD_NAMESPACE as DEFAULT_NAMESPACE
from runner.errors import NirunnerError
from runner.exit import exit_now

if TYPE_CHECKING:
    from runner.containerd.client import Client


def _client(args: argparse.Namespace) -> Client:
    from runner.containerd.client import Client  # gRPC: only for the commands that call

    return Client(args.containerd, args.namespace)


def cmd_version(args: argparse.Namespace) -> int:
    print(f"nirunner {__version__}")
    with _client(args) as c:
        print(f"containerd {c.version()} at {c.address}")
    return 0


def cmd_image_build(args: argparse.Namespace) -> int:
    from runner.image.build import build_image

    res = build_image(force=args.force, **({"version": args.tag} if args.tag else {}))
    print(f"image {res.image_name}")
    print(f"archive {res.archive}  ({_mib(res.archive_size)} compressed, "
          f"{_mib(res.rootfs_size)} unpacked){'  [cached]' if res.cached else ''}")
    if args.do_import:
        return _import(args, str(res.archive), res.image_name)
    return 0


def cmd_image_import(args: argparse.Namespace) -> int:
    return _import(args, args.file, args.name)


def _import(args: argparse.Namespace, path: str, name: str | None) -> int:
    from runner.containerd.images import import_archive

    if not os.path.isfile(path):
        raise UserError(f"no such image archive: {path}")
    with _client(args) as c:
        info = import_archive(c, path, name)
    print(f"imported {info.name} ({info.manifest_digest}, {_mib(info.size)}) "
          f"into containerd namespace {args.namespace}")
    return 0


def cmd_image_ls(args: argparse.Namespace) -> int:
    from runner.containerd.images import list_images

    with _client(args) as c:
        for name in list_images(c):
            print(name)
    return 0


_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # an OCI reference's tag


def _tag(text: str) -> str:
    if not _TAG.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an image tag (1-128 letters, digits, '_', '.', '-'; not "
            "starting with '.' or '-')")
    return text


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def containerd_options(p: argparse.ArgumentParser, top: bool = False) -> None:
    """--containerd and --namespace, accepted before the subcommand and after it; given
    after it they win, absent there they leave the top-level value (or env) alone."""
    p.add_argument("--containerd", help="containerd socket (env NIRUNNER_CONTAINERD)",
                   default=os.environ.get("NIRUNNER_CONTAINERD", DEFAULT_ADDRESS) if top
                   else argparse.SUPPRESS)
    p.add_argument("--namespace", help="containerd namespace (env NIRUNNER_NAMESPACE)",
                   default=os.environ.get("NIRUNNER_NAMESPACE", DEFAULT_NAMESPACE) if top
                   else argparse.SUPPRESS)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nirunner", description=__doc__)
    containerd_options(ap, top=True)
    ap.add_argument("--socket", default=os.environ.get("NIRUNNER_SOCKET", DEFAULT_SOCKET),
                    help="the supervisor's API socket (env NIRUNNER_SOCKET)")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("version", help="show nirunner's and containerd's versions")
    containerd_options(p)
    p.set_defaults(func=cmd_version)

    image = sub.add_parser("image", help="build, import and list the NI image")
    isub = image.add_subparsers(dest="image_command", required=True)
    b = isub.add_parser("build", help="build the NI image archive (cached) with mmdebstrap")
    containerd_options(b)
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.add_argument("--tag", type=_tag, help="the image's tag (default: nirunner's version): "
                   "nirunner/ni:TAG; builds of different tags are cached side by side")
    b.add_argument("--import", dest="do_import", action="store_true",
                   help="import it into containerd afterwards")
    b.set_defaults(func=cmd_image_build)
    i = isub.add_parser("import", help="import an OCI image archive into containerd")
    containerd_options(i)
    i.add_argument("file")
    i.add_argument("--name", help="image name (default: the name stored in the archive)")
    i.set_defaults(func=cmd_image_import)
    ls = isub.add_parser("ls", help="list images in the namespace")
    containerd_options(ls)
    ls.set_defaults(func=cmd_image_ls)
    add_commands(sub)
    flow_commands.add_commands(sub)
    ops_commands.add_commands(sub)
    fleet_args.add_commands(sub)
    # list only the commands with a help text (not the completion scripts' helper)
    sub.metavar = "{" + ",".join(a.dest for a in sub._choices_actions) + "}"
    return ap


def main(argv: list[str] | None = None) -> int:
    return _dispatch(parser().parse_args(argv))


def _dispatch(args: argparse.Namespace) -> int:
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except NirunnerError as e:
        print(f"nirunner: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def run() -> NoReturn:
    """The `nirunner` program. A command leaves without the interpreter's teardown
    (runner.exit); the supervisor (`daemon` set by its parser) the normal way."""
    args = parser().parse_args()
    rc = _dispatch(args)
    if getattr(args, "daemon", False):
        sys.exit(rc)
    exit_now(rc)


if __name__ == "__main__":
    run()
