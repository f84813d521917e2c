"""What this kernel can do for switch NIs: 802.1Q VLAN devices, VLAN-filtering bridges,
macvlan, nftables' netdev `fwd`; probed once per process.

Each feature is tried for real in a network namespace of its own that vanishes with
the probe (`unshare --net`), so nothing of the device changes; a kernel without a
feature says so there ("Unknown device type", "Operation not supported", ...), and
that answer becomes the reason a switch NI needing it is refused.
"""

from __future__ import annotations

import functools
import subprocess

from runner.plan.facts import KernelFeature, KernelFeatures

# Keys the script prints, one line each: "<key> yes" or "<key> no <first line of the error>".
_KEYS = {
    "vlan": KernelFeature.VLAN,
    "vlan_bridge": KernelFeature.VLAN_BRIDGE,
    "macvlan": KernelFeature.MACVLAN,
    "netdev_fwd": KernelFeature.NETDEV_FWD,
}

SCRIPT = """
try() {
    key=$1; shift
    if out=$("$@" 2>&1 </dev/null); then echo "$key yes"
    else echo "$key no $(echo "$out" | head -n 1)"; fi
}
fwd() {
    printf '%s\\n' 'table netdev probe {' ' chain c {' \\
        '  type filter hook ingress device "p0" priority 0; policy accept;' \\
        '  fwd to "p1";' ' }' '}' | nft -f -
}
ip link add p0 type veth peer name p1 || exit 3
try vlan ip link add link p0 name p0.1 type vlan id 1
try vlan_bridge ip link add b0 type bridge vlan_filtering 1
try macvlan ip link add m0 link p0 type macvlan mode bridge
try netdev_fwd fwd
"""


def parse(output: str, returncode: int = 0, stderr: str = "") -> KernelFeatures:
    """KernelFeatures from the probe's output; a feature it did not answer for is missing
    (with the probe's own failure as the reason)."""
    answers: dict[KernelFeature, str | None] = {}
    for line in output.splitlines():
        key, _, rest = line.partition(" ")
        verdict, _, why = rest.partition(" ")
        if key in _KEYS and verdict in ("yes", "no"):
            answers[_KEYS[key]] = None if verdict == "yes" else why.strip()
    failed = f"the probe failed (exit {returncode}): {stderr.strip() or 'no output'}"
    missing = []
    for feature in KernelFeature:
        answer = answers.get(feature, failed)
        if answer is not None:
            missing.append((feature, answer))
    return KernelFeatures(tuple(missing))


@functools.cache
def features() -> KernelFeatures:
    """This kernel's features (probed once per process)."""
    try:
        done = subprocess.run(["unshare", "--net", "sh", "-c", SCRIPT], capture_output=True,
                              text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return parse("", -1, str(e))
    return parse(done.stdout, done.returncode, done.stderr)
