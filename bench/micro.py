"""Micro-benchmarks of the primitives the supervisor's drivers use, in a scratch netns
with many links (as the device netns has with many NIs):

    python -m bench.micro [--links 200] [--rounds 200]      (root)

Prints the median cost of each: a setns thread (netns.run_in), an rtnetlink socket
(pyroute2 IPRoute()), a link lookup by name through a full dump (link_lookup) and
through the kernel (RTM_GETLINK by name), an address dump filtered by index, a
route dump of one table, a sysctl read, `nft -f` of an unchanged table, and
`ip netns add`+`del`. Everything goes at the end; the machine's netns is not used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable

from pyroute2 import IPRoute

from runner.drivers import netns as ns

NS = "nrbench-micro"
NFT = """table inet micro {}
delete table inet micro
table inet micro {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "uplink0" masquerade
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "br0" oifname "uplink0" accept
    }
}
"""


def timeit(fn: Callable[[], object], rounds: int) -> float:
    fn()
    xs = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        xs.append(time.perf_counter() - t)
    return statistics.median(xs)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.micro")
    ap.add_argument("--links", type=int, default=200, help="dummy links in the netns")
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        pairs = args.links // 2  # veth pairs (no dummy links in every kernel)
        batch = "\n".join(f"link add d{i} type veth peer name e{i}\n"
                          f"addr add 169.254.{i // 64}.{(i % 64) * 4 + 1}/30 dev d{i}\n"
                          f"link set d{i} up" for i in range(pairs))
        subprocess.run(["ip", "-n", NS, "-batch", "-"], input=batch, text=True, check=True)
        res: dict[str, float] = {}

        def in_ns(fn: Callable[[], object]) -> Callable[[], object]:
            return lambda: ns.run_in(NS, fn)

        r = args.rounds
        res["netns.run_in(no-op): thread + setns + join"] = timeit(in_ns(lambda: None), r)

        def body() -> None:
            with IPRoute() as ip:
                last = f"d{pairs - 1}"
                res["IPRoute() open + close"] = timeit(lambda: IPRoute().close(), r)
                res[f"link_lookup(ifname=) ({args.links} links, full dump)"] = timeit(
                    lambda: ip.link_lookup(ifname=last), r // 4 or 1)
                res["link('get', ifname=) (kernel lookup)"] = timeit(
                    lambda: ip.link("get", ifname=last), r)
                idx = ip.link_lookup(ifname=last)[0]
                res[f"get_addr(index=) ({pairs} addresses, dump + filter)"] = timeit(
                    lambda: ip.get_addr(index=idx, family=2), r // 4 or 1)
                res["get_routes(table=254)"] = timeit(
                    lambda: ip.get_routes(family=2, table=254), r // 4 or 1)
                res["get_links() (full dump)"] = timeit(lambda: ip.get_links(), r // 4 or 1)

            def sysctl() -> str:
                with open("/proc/sys/net/ipv4/ip_forward") as f:
                    return f.read()

            res["sysctl read"] = timeit(sysctl, r)
            nft = lambda: subprocess.run(["nft", "-f", "-"], input=NFT, text=True,  # noqa: E731
                                         check=True, capture_output=True)
            res["nft -f, the same table again (spawn + parse + commit)"] = timeit(nft, r // 4 or 1)
            res["spawn of /bin/true"] = timeit(lambda: subprocess.run(["true"]), r // 4 or 1)

        ns.run_in(NS, body)

        def netns_add_del() -> None:
            subprocess.run(["ip", "netns", "add", f"{NS}-x"], check=True)
            subprocess.run(["ip", "netns", "del", f"{NS}-x"], check=True)

        res["ip netns add + del"] = timeit(netns_add_del, 10)
        print(f"{os.cpu_count()} cores; median of up to {r} rounds")
        for k, v in res.items():
            print(f"{v * 1000:9.3f} ms  {k}")
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        subprocess.run(["ip", "netns", "del", f"{NS}-x"], capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
