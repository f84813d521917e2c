# One command for the tests, one for the demo; each installs what it needs.
#   make test    unit + integration tests (root: private containerd, netns, runc)
#   make demo    a lab device with two NIs, apps and real traffic (root)
#   make image   the NI image archive (cached)
#   make protos  regenerate runner/pb from protos/

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# containerd/runc run the NI tasks; mmdebstrap+gcc build the NI image; the rest
# serves the lab of tests and demo (DNS server, DHCP client, ping, nsenter).
APT_PACKAGES := containerd runc mmdebstrap debian-archive-keyring gcc libc6-dev \
	iproute2 nftables python3-venv make dnsmasq-base busybox iputils-ping util-linux

.PHONY: setup deps venv image protos test unit integration demo lint clean

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

test: setup image lint
	$(PY) -m pytest -ra tests

unit: venv
	$(PY) -m pytest -ra -m 'not integration' tests

integration: setup image
	$(PY) -m pytest -ra -m integration tests

demo: setup image
	$(PY) -m runner.lab.demo

lint: venv
	$(VENV)/bin/ruff check runner tests tools
	$(VENV)/bin/mypy runner

clean:
	rm -rf $(VENV) build *.egg-info
