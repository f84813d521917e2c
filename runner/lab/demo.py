"""`make demo`: a device with two uplinks in a lab, the examples applied, real traffic.

    python -m runner.lab.demo [--keep | --clean]

Builds the lab (device, wan router, inet host), starts a private containerd and
the supervisor inside the device netns, applies examples/, plugs in demo apps,
shows DHCP, DNS, NAT, a port map and isolation at work, prints `nirunner
status`, and removes everything again (unless --keep). `--clean` stops and
removes a kept lab: its supervisor, DNS and TCP servers, containerd and NI tasks
(recorded under /run/nrdemo/pids), its namespaces and files.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from runner.image.build import build_image
from runner.lab.topology import INET_IP, Lab, LabError, sh

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def check(label: str, ok: bool, detail: str = "") -> bool:
    print(f"   [{'ok' if ok else 'FAILED'}] {label}{': ' + detail if detail else ''}", flush=True)
    return ok


def run(keep: bool) -> int:
    lab = Lab("nrdemo", image_archive=str(build_image().archive))
    if lab.base.exists():  # never tear down a lab this run did not build
        print(f"demo: a lab {lab.prefix} exists already ({lab.base}): kept with --keep, or "
              f"another demo is running; remove it with: python -m runner.lab.demo --clean",
              file=sys.stderr)
        return 1
    results: list[bool] = []
    try:
        say("building the lab: device (eth0 198.51.100.2, eth1 203.0.113.2), wan router, "
            f"inet host {INET_IP}")
        lab.build()
        lab.start_dns({"www.example.test": INET_IP})
        lab.serve(lab.inet, "tcp", 7000, "inet-host")
        say("starting a private containerd and the supervisor in the device netns")
        t = time.monotonic()
        lab.start_containerd()
        lab.write_config(lab.image)
        lab.start_supervisor()
        print(f"   ready in {time.monotonic() - t:.1f}s; config {lab.config_path}")

        say(f"nirunner apply -f {EXAMPLES}")
        t = time.monotonic()
        print(lab.cli("apply", "-f", str(EXAMPLES)).stdout.rstrip())
        print(f"   applied in {time.monotonic() - t:.2f}s")

        say("plugging in apps and running a real DHCP client (busybox udhcpc) in each")
        plc = lab.app("plc", "factory", mac="02:00:00:00:00:10")
        hmi = lab.app("hmi", "factory")
        scope = lab.app("scope", "lab", mac="02:00:00:00:01:10")
        ips = {n: lab.dhcp(ns, n) for n, ns in (("plc", plc), ("hmi", hmi), ("scope", scope))}
        for n, ip in ips.items():
            print(f"   {n}: {ip}")
        results.append(check("plc (factory) and scope (lab) hold the same address",
                             ips["plc"] == ips["scope"] == "10.1.0.10"))

        say("DNS from the NI's dnsmasq")
        for name, want in (("plc.factory.lan", ips["plc"]), ("historian", "10.1.0.20"),
                           ("www.example.test", INET_IP)):
            got = sh(sys.executable, "-m", "runner.lab.dnsq", "10.1.0.1", name, netns=hmi,
                     check=False).stdout.split()
            results.append(check(f"hmi resolves {name}", got == [want], ", ".join(got)))

        say(f"both NIs reach the inet host through the double NAT (TCP {INET_IP}:7000)")
        for n, ns in (("plc", plc), ("scope", scope)):
            reply = lab.connect(ns, "tcp", INET_IP, 7000)
            results.append(check(f"{n} -> inet", reply is not None, reply or ""))

        say("port map factory/plc-web: eth0 198.51.100.2:8080 -> plc:80")
        lab.serve(plc, "tcp", 80, "plc-web")
        reply = lab.connect(lab.wan, "tcp", "198.51.100.2", 8080)
        results.append(check("from the wan router", reply is not None, reply or ""))
        reply = lab.connect(scope, "tcp", "198.51.100.2", 8080)
        results.append(check("from the lab NI (hairpin inside the box)", reply is not None,
                             reply or ""))

        say("isolation: the lab NI cannot reach the factory NI directly")
        status = lab.cli("status", "--json").stdout
        import json

        transit = {s["name"]: s["transit"]["ni"].split("/")[0] for s in json.loads(status)}
        reply = lab.connect(scope, "tcp", transit["factory"], 8080, timeout=1)
        results.append(check(f"scope -> factory's transit {transit['factory']}:8080 refused",
                             reply is None))
        results.append(check("scope -> device 169.254.100.1 (ping) dropped",
                             not lab.ping(scope, "169.254.100.1")))

        say("nirunner status")
        print(lab.cli("status").stdout.rstrip())
        say(f"ctr -n {lab.namespace} tasks ls")
        print(sh("ctr", "--address", lab.containerd.address, "-n", lab.namespace, "tasks",
                 "ls").stdout.rstrip())
        ok = all(results)
        say(f"{sum(results)} of {len(results)} checks passed")
        if keep:
            print(f"   lab kept: nirunner --socket {lab.socket} status; its tasks: ctr "
                  f"--address {lab.containerd.address} -n {lab.namespace} tasks ls\n"
                  f"   remove it with: python -m runner.lab.demo --clean")
        return 0 if ok else 1
    except LabError as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    finally:
        if not keep:
            say("removing the lab")
            lab.teardown()


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m runner.lab.demo")
    ap.add_argument("--keep", action="store_true", help="leave the lab running")
    ap.add_argument("--clean", action="store_true", help="remove a kept lab")
    args = ap.parse_args()
    if args.clean:
        Lab("nrdemo").teardown()
        return 0
    return run(args.keep)


if __name__ == "__main__":
    sys.exit(main())
