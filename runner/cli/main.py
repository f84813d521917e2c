"""The `nirunner` command line."""

from __future__ import annotations

import argparse
import os
import sys

# gRPC core logs a line each time a subprocess is forked while it has threads
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
from collections.abc import Callable

from runner import __version__
from runner.cli import fleet_commands
from runner.cli.ni_commands import UserError, add_commands
from runner.containerd.client import DEFAULT_ADDRESS, DEFAULT_NAMESPACE, Client
from runner.errors import NirunnerError


def _client(args: argparse.Namespace) -> Client:
    return Client(args.containerd, args.namespace)


def cmd_version(args: argparse.Namespace) -> int:
    print(f"nirunner {__version__}")
    with _client(args) as c:
        print(f"containerd {c.version()} at {c.address}")
    return 0


def cmd_image_build(args: argparse.Namespace) -> int:
    from runner.image.build import build_image

    res = build_image(force=args.force)
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


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nirunner", description=__doc__)
    ap.add_argument("--containerd", default=os.environ.get("NIRUNNER_CONTAINERD", DEFAULT_ADDRESS),
                    help="containerd socket (env NIRUNNER_CONTAINERD)")
    ap.add_argument("--namespace", default=os.environ.get("NIRUNNER_NAMESPACE", DEFAULT_NAMESPACE),
                    help="containerd namespace (env NIRUNNER_NAMESPACE)")
    sub = ap.add_subparsers(dest="command", required=True)

    sub.add_parser("version", help="show nirunner's and containerd's versions") \
        .set_defaults(func=cmd_version)

    image = sub.add_parser("image", help="build, import and list the NI image")
    isub = image.add_subparsers(dest="image_command", required=True)
    b = isub.add_parser("build", help="build the NI image archive (cached) with mmdebstrap")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.add_argument("--import", dest="do_import", action="store_true",
                   help="import it into containerd afterwards")
    b.set_defaults(func=cmd_image_build)
    i = isub.add_parser("import", help="import an OCI image archive into containerd")
    i.add_argument("file")
    i.add_argument("--name", help="image name (default: the name stored in the archive)")
    i.set_defaults(func=cmd_image_import)
    isub.add_parser("ls", help="list images in the namespace").set_defaults(func=cmd_image_ls)
    add_commands(sub)
    fleet_commands.add_commands(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except NirunnerError as e:
        print(f"nirunner: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
