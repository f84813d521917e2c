"""Property-based fuzzing of the readers and the validate path (hypothesis).

Inputs: raw bytes, the examples and test manifests mutated (values swapped for
nasty tokens, characters inserted, including controls, spans cut, lines doubled),
YAML bombs and deep nesting, and generated manifests (valid-ish, so that many
pass and reach the planner), alone and in sets. The path is the supervisor's:
bytes -> reader -> documents -> field checks -> set checks with a config ->
runner.plan.site.build with facts. Properties:

- nothing raises but ManifestError / ConfigError;
- every problem names its source (file);
- nothing that validates is refused by the planner, and it survives the state
  store's round trip (to_manifest -> YAML -> the same value).

One run draws FUZZ_EXAMPLES inputs (>= 5,000) and prints how many it ran.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.model.config import parse_config
from runner.model.dump import to_manifest
from runner.model.errors import ConfigError, Problem
from runner.model.manifest import load_documents, parse_texts, set_problems
from runner.model.reader import check_text, decode
from runner.plan import site
from runner.plan.facts import Facts, UplinkFacts
from tests.unit.model.test_manifest import FACTORY, LAB
from tests.unit.model.test_vpn import SITE_A
from tests.unit.plan.sample import CONFIG, FACTS

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5000"))
TIME_LIMIT = 120.0  # seconds, a bound: ~20 s alone on 2 cores, 45 s with 6 other jobs
EXAMPLES = Path(__file__).parents[3] / "examples"
SOURCE = "fuzz.yaml"

SEEDS = [p.read_text() for p in sorted(EXAMPLES.rglob("*.yaml")) if "config" not in p.parts]
SEEDS += [FACTORY, LAB, SITE_A]
CONFIG_SEED = (EXAMPLES / "config" / "supervisor.yaml").read_text()

TOKENS = [
    "224.0.0.1", "239.1.1.0/24", "127.0.0.1", "127.1.0.0/24", "0.0.0.0", "0.0.0.0/8",
    "240.0.0.1", "240.0.0.0/24", "255.255.255.255", "255.255.255.0/30", "169.254.100.2",
    "169.254.100.0/24", "169.254.169.253", "10.1.0.1", "10.1.0.255", "10.1.0.0",
    "198.51.100.0/24", "10.1.0.0/30", "10.0.0.0/8", "0.0.0.0/0", "1.2.3.4/33", "300.1.1.1",
    "10.1.0.0/31", "500", "4500", "0", "-1", "65536", "99999999999999999999", "1e999",
    ".nan", "1h", "0s", "365d", "99999999d", "64Mi", "16Mi", "1Gi", "8Ei", "~", "''", "[]",
    "{}", "yes", "no", "&a x", "*a", "*nope", "!!binary aGk=", "!!python/name:os.system",
    "<<: {}", "2024-13-45", "1:2:3:4:5", '"\\x00"', '"\\u001b[31m"', "a;b", "\"x\\nserver=1\"",
    "/etc/shadow", "/proc/self/environ", "/etc/nirunner/secrets/x.psk",
    "/etc/nirunner/secrets/../../shadow", "eth0", "eth1", "eth9", "udp", "tcp", "vpn",
    "local", "switch", "é" * 40, "x" * 300, "[" * 50, "{a: " * 40, "=", "? a", "|\n  x",
    *(f"!!{tag} {value}" for tag in ("timestamp", "bool", "int", "float", "str", "null",
                                     "binary", "set", "omap", "pairs", "seq", "map", "merge",
                                     "value", "yaml", "python/tuple")
      for value in ("hello", "1", "2001-02-30", "0b102", "[1]", "{a: 1}")),
]
CONTROL = [chr(c) for c in (*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x20), 0x7f, 0x85,
                            0x9b, 0xfeff, 0xfffe, 0xffff, 0xd800)]

# the sample site: eth0 and eth1 with addresses and gateways, resolvers
FUZZ_CONFIG = CONFIG
FUZZ_FACTS = FACTS


# --- strategies ---------------------------------------------------------------------------


# Generators draw one random.Random from hypothesis and build the input from it: a
# draw per choice made hypothesis itself the slowest part (>10 ms an input).


def mutated(rnd: random.Random) -> str:
    text = rnd.choice(SEEDS)
    for _ in range(rnd.randint(1, 4)):
        text = rnd.choice(_OPS)(rnd, text)
    return text


_VALUE = re.compile(r": |[\[,]")


def _swap_value(rnd: random.Random, text: str) -> str:
    spots = [m.end() for m in _VALUE.finditer(text)]
    if not spots:
        return text
    at = end = rnd.choice(spots)
    while end < len(text) and text[end] not in "\n,}]":
        end += 1
    return text[:at] + rnd.choice(TOKENS) + text[end:]


def _insert(rnd: random.Random, text: str) -> str:
    at = rnd.randint(0, len(text))
    piece = rnd.choice([rnd.choice(CONTROL), rnd.choice(TOKENS),
                        "".join(chr(rnd.randint(0, 0x2ff)) for _ in range(rnd.randint(1, 8)))])
    return text[:at] + piece + text[at:]


def _cut(rnd: random.Random, text: str) -> str:
    at = rnd.randint(0, len(text))
    return text[:at] + text[at + rnd.randint(1, 40):]


def _double_line(rnd: random.Random, text: str) -> str:
    lines = text.splitlines(keepends=True)
    i = rnd.randint(0, max(0, len(lines) - 1))
    return "".join(lines[:i + 1] + lines[i:])


def _join(rnd: random.Random, text: str) -> str:
    return text + "---\n" + rnd.choice(SEEDS)


_OPS: list[Callable[[random.Random, str], str]] = [_swap_value, _swap_value, _insert, _cut,
                                                   _double_line, _join]


def bomb(rnd: random.Random) -> str:
    kind = rnd.choice(["flow", "block", "map", "alias", "recursive"])
    n = rnd.randint(30, 120)
    if kind == "flow":
        return "[" * n + "]" * n
    if kind == "block":
        return "".join("  " * i + "- \n" for i in range(n // 2)) + "x\n"
    if kind == "map":
        return "{a: " * n + "1" + "}" * n
    if kind == "recursive":
        return "a: &x [*x]\n"
    width = rnd.randint(2, 12)
    text = "a0: &a0 [" + ",".join(["x"] * width) + "]\n"
    for i in range(1, rnd.randint(2, 9)):
        text += f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]\n"
    return text


SUBNETS = ["10.1.0.0/24", "10.1.0.0/30", "10.2.0.0/16", "192.168.7.0/29", "198.51.100.0/24",
           "203.0.113.0/24", "172.16.0.0/12", "10.0.0.0/8", "100.64.0.0/10",
           "169.254.100.0/24", "169.254.0.0/16", "10.99.1.0/24"]
ADDRESSES = ["192.0.2.53", "10.99.1.53", "203.0.113.10", "198.51.100.7", "169.254.169.253",
             "169.254.100.2", "127.0.0.1", "224.0.0.1", "8.8.8.8", "100.64.0.1"]


def _label(rnd: random.Random) -> str:
    return rnd.choice("abcdefgh") + "".join(rnd.choice("abc-1") for _ in range(rnd.randint(0, 4))
                                            ) + rnd.choice("xyz9")


def manifest(rnd: random.Random, name: str) -> dict[str, Any]:
    """A manifest made of plausible parts: many validate, many do not."""
    net = IPv4Network(rnd.choice(SUBNETS))

    def host() -> str:
        return str(net[rnd.randrange(net.num_addresses)])

    def maybe() -> bool:
        return rnd.random() < 0.5

    vpn = rnd.random() < 0.25
    spec: dict[str, Any] = {"type": "vpn" if vpn else "local", "subnet": str(net)}
    if vpn or rnd.random() < 0.75:
        spec["uplink"] = rnd.choice(["eth0", "eth0", "eth1", "eth9"])
    if maybe():
        spec["gateway"] = host()
    names: list[str] = []
    if maybe():
        res = []
        for _ in range(rnd.randint(0, 3)):
            names.append(_label(rnd))
            mac = "02:" + ":".join(f"{rnd.randrange(256):02x}" for _ in range(5))
            res.append({"name": names[-1], "mac": mac, "ip": host()})
        dhcp: dict[str, Any] = {"reservations": res}
        if maybe():
            a, b = sorted((host(), host()), key=lambda s: tuple(map(int, s.split("."))))
            dhcp["range"] = {"start": a, "end": b}
        if maybe():
            dhcp["leaseTime"] = rnd.choice(["1h", "2m", "90s", 600, "365d"])
        spec["dhcp"] = dhcp
    if maybe():
        dns: dict[str, Any] = {"domain": _label(rnd) + ".lan"}
        if maybe():
            dns["upstream"] = rnd.sample(ADDRESSES + [host()], rnd.randint(0, 2))
        if maybe():
            dns["static"] = [{"name": _label(rnd), "addresses": [host()]}]
        spec["dns"] = dns
    if maybe():
        spec["ntp"] = rnd.sample(ADDRESSES, rnd.randint(0, 2))
    if maybe():
        spec["portMaps"] = [
            {"name": f"p{i}", "protocol": rnd.choice(["tcp", "udp"]),
             "uplinkPort": rnd.choice([80, 500, 4500, 8080, 8081, 65535]),
             "target": rnd.choice(names) if names and maybe() else host(),
             "targetPort": rnd.randint(1, 65535)}
            for i in range(rnd.randint(0, 3))]
    if maybe():
        spec["resources"] = {"memory": rnd.choice(["16Mi", "64Mi", "1Gi", 1 << 30]),
                             "cpu": rnd.choice([0.1, 1, 64]),
                             "pids": rnd.choice([16, 256, 65536])}
    if maybe():
        spec["mtu"] = rnd.choice([576, 1400, 1500, 9000])
    if vpn:
        secret = rnd.choice(["/etc/nirunner/secrets/a.psk", "/etc/nirunner/secrets/a.psk",
                             "/etc/shadow", "/etc/nirunner/secrets/../x"])
        spec["vpn"] = {
            "remote": rnd.choice(ADDRESSES),
            "auth": ({"psk": {"secretFile": secret}} if maybe() else
                     {"cert": {"certFile": "/etc/nirunner/secrets/c.pem",
                               "keyFile": secret, "caFile": "/etc/nirunner/secrets/ca.pem"}}),
            "localId": "edge@site", "remoteId": "hq",
            "remoteSubnets": rnd.sample(["10.99.1.0/24", "10.99.2.0/24", "169.254.100.0/23",
                                         "192.0.2.0/24"], rnd.randint(1, 2)),
            "dpd": rnd.choice(["30s", 0, "1h"]),
        }
        if maybe():
            spec.setdefault("dns", {})["upstream"] = ["10.99.1.53"]
    return {"apiVersion": "nirunner/v1", "kind": "NetworkInstance",
            "metadata": {"name": name}, "spec": spec}


def manifest_set(rnd: random.Random) -> str:
    names = [rnd.choice(["a", "b", "c", "site-a"]) for _ in range(rnd.randint(1, 3))]
    return "---\n".join(_dump(manifest(rnd, n)) for n in names)


def _dump(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=yaml.CSafeDumper)  # libyaml: the fuzz's own time is small


RANDOM = st.integers(0, 2**32 - 1).map(random.Random)  # one draw (randoms(): one per call)
INPUTS = st.one_of(
    st.binary(max_size=600).map(lambda b: ("bytes", b)),
    RANDOM.map(lambda r: ("text", mutated(r))),
    RANDOM.map(lambda r: ("bytes", mutated(r).encode("utf-8", "surrogatepass"))),
    RANDOM.map(lambda r: ("bytes", mutated(r).encode("latin-1", "replace"))),
    RANDOM.map(lambda r: ("bytes", mutated(r).encode("utf-16", "surrogatepass"))),
    RANDOM.map(lambda r: ("text", bomb(r))),
    RANDOM.map(lambda r: ("text", manifest_set(r))),
    RANDOM.map(lambda r: ("text", manifest_set(r))),
    RANDOM.map(lambda r: ("text", manifest_set(r))),
    RANDOM.map(lambda r: ("config", manifest_set(r))),
    RANDOM.map(lambda r: ("config", CONFIG_SEED + mutated(r))),
    RANDOM.map(lambda r: ("config", _swap_value(r, _swap_value(r, CONFIG_SEED)))),
)


# --- the property ---------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.examples = 0
        self.accepted = 0
        self.planned = 0


def _named(problems: list[Problem]) -> None:
    assert problems, "an error without problems"
    for p in problems:
        assert p.source, f"a problem without a file: {p}"


def check_manifests(kind: str, data: str | bytes, tally: Tally) -> None:
    if kind == "bytes":
        assert isinstance(data, bytes)
        found = decode(data, SOURCE)
        if isinstance(found, Problem):
            _named([found])
            return
        texts = [found]
    else:
        assert isinstance(data, str)
        found = check_text(data, SOURCE)  # what parse_documents does first (the API's path)
        if isinstance(found, Problem):
            _named([found])
            return
        texts = [found]
    located, problems = parse_texts(texts)
    problems += set_problems(located, FUZZ_CONFIG)
    if problems:
        _named(problems)
        return
    tally.accepted += 1
    nis = [loc.ni for loc in located]
    site.build(FUZZ_CONFIG, FUZZ_FACTS, nis, {})  # must not refuse what validated
    tally.planned += 1
    for ni in nis:
        assert load_documents(_dump(to_manifest(ni)), "state") == [ni]


def check_config(text: str, tally: Tally) -> None:
    try:
        config = parse_config(text, "config.yaml")
    except ConfigError as e:
        _named(e.problems)
        return
    tally.accepted += 1
    (ni,) = load_documents("apiVersion: nirunner/v1\nkind: NetworkInstance\nmetadata: "
                           "{name: air}\nspec: {type: local, subnet: 10.1.0.0/24}\n")
    facts = Facts(uplinks={u.name: UplinkFacts(u.name, u.interface) for u in config.uplinks})
    if not set_problems([ni], config):
        site.build(config, facts, [ni], {})
        tally.planned += 1


def test_fuzz_readers_and_validate(capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally()

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(INPUTS)
    def run(item: tuple[str, str | bytes]) -> None:
        tally.examples += 1
        kind, data = item
        if kind == "config":
            assert isinstance(data, str)
            check_config(data, tally)
        else:
            check_manifests(kind, data, tally)

    start = time.monotonic()
    run()
    spent = time.monotonic() - start
    with capsys.disabled():  # shown in every run, not only on failure
        print(f"\nfuzz: {tally.examples} examples in {spent:.1f}s, {tally.accepted} valid, "
              f"{tally.planned} planned")
    assert tally.examples >= min(5000, FUZZ_EXAMPLES)
    assert tally.planned >= FUZZ_EXAMPLES // 50  # the generator does reach the planner
    assert spent < TIME_LIMIT

