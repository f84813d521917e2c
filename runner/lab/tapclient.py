"""A stand-in for a VM: holds a tap device's fd and speaks DHCP through it.

    python -m runner.lab.tapclient TAP MAC [--hostname NAME]

Opens TAP (made beforehand with `ip tuntap add TAP mode tap`) in the netns it
is started in, prints `ready`, then for every line `dhcp` on stdin runs a DHCP
exchange through the fd and prints the lease as JSON (or `error: ...`); `exit`
or end of input ends it. The tap may be moved to another netns meanwhile: the
fd follows the device, as a VM's would.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import struct
import sys

from runner.dhcp.client import Exchange
from runner.dhcp.packet import DhcpError
from runner.drivers.dhcp import FdTransport, run

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("tap")
    ap.add_argument("mac")
    ap.add_argument("--hostname", default="")
    ap.add_argument("--timeout", type=float, default=10.0)
    a = ap.parse_args()
    fd = open_tap(a.tap)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "dhcp":
            break
        ex = Exchange(mac=a.mac, xid=int.from_bytes(os.urandom(4), "big"), hostname=a.hostname)
        t = FdTransport(fd)
        try:
            lease = run(ex, t.send, t.recv, a.timeout, a.tap)
        except DhcpError as e:
            print(f"error: {e}", flush=True)
            continue
        print(json.dumps({"address": str(lease.address), "server": str(lease.server),
                          "lease_time": lease.lease_time}), flush=True)
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
