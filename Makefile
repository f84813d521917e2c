# One command for the tests, one for the demo; each installs what it needs.
#   make test    unit + integration tests (root: private containerd, netns, runc)
#   make demo    a lab device with two NIs, apps and real traffic (root)
#   make image   the NI image archive (cached)
#   make protos  regenerate runner/pb from protos/
#   make seccomp-profile / seccomp-check   derive / check the NI tasks' seccomp list (root)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# containerd/runc run the NI tasks; mmdebstrap+gcc build the NI image; the rest
# serves the lab of tests and demo (DNS server, DHCP client, ping, nsenter; VPN
# peers: charon, swanctl, pki for test CAs, tcpdump for captures on the uplink;
# benchmarks: iperf3, and the reference CNI plugins to compare with; podman runs
# containers through CNI in the lab: runner/lab/podman.py, and with netavark +
# aardvark-dns (which program iptables) side by side with nirunner; the service:
# systemd-analyze to verify the unit, setpriv to run the supervisor with the unit's
# capabilities, zsh to check its completion script; fleets: etcd-server for the
# lab's etcd cluster, openssl for its throwaway CA; strace derives the NI tasks'
# seccomp allow-list; prometheus (with promtool) scrapes the metrics endpoint in the
# lab). libnftables1 (nft's library, which the supervisor calls in-process) comes with
# nftables; it is named for clarity.
APT_PACKAGES := containerd runc mmdebstrap debian-archive-keyring gcc libc6-dev \
	iproute2 nftables libnftables1 python3-venv make dnsmasq-base busybox iputils-ping \
	util-linux \
	charon-systemd strongswan-swanctl libstrongswan-standard-plugins \
	libcharon-extra-plugins strongswan-pki tcpdump etcd-server openssl \
	iperf3 containernetworking-plugins podman netavark aardvark-dns iptables systemd zsh \
	strace prometheus

.PHONY: setup deps venv image protos test unit integration demo bench bench-quick \
	bench-profile lint clean seccomp-profile seccomp-check

setup: deps venv

deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

venv: $(VENV)/.done

$(VENV)/.done: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

image: setup
	$(VENV)/bin/nirunner image build

protos: venv
	$(PY) tools/genproto.py

# The NI tasks' seccomp allow-list (runner/containerd/seccomp_ni.json), from a lab
# run under strace; see README, Seccomp.
seccomp-profile: setup image
	$(PY) tools/seccomp_profile.py

seccomp-check: setup image
	$(PY) tools/seccomp_profile.py --check

test: setup image lint
	$(PY) -m pytest -ra tests

unit: venv
	$(PY) -m pytest -ra -m 'not integration' tests

integration: setup image
	$(PY) -m pytest -ra -m integration tests

demo: setup image
	$(PY) -m runner.lab.demo

# Benchmarks (root): bring-up, scale, footprint, restart, change latency and
# throughput of nirunner, side by side with a hand-made floor and with CNI; prints
# a Markdown table (see README, Performance). bench-quick: under 2 minutes.
bench: setup image
	$(PY) -m bench.run $(BENCH_ARGS)

bench-quick: setup image
	$(PY) -m bench.run --quick $(BENCH_ARGS)

# the same, with the supervisor under py-spy: build/bench-profile/py-spy-summary.txt
bench-profile: setup image
	$(PY) -m pip install -q py-spy
	$(PY) -m bench.run --quick --profile build/bench-profile $(BENCH_ARGS)

lint: venv
	$(VENV)/bin/ruff check runner tests tools bench
	$(VENV)/bin/mypy runner bench

clean:
	rm -rf $(VENV) build *.egg-info
