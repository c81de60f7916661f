# kanal — container networking in Python.
# Every target does its own set-up on a fresh Debian 12 machine (as root).

SHELL := /bin/bash
VENV ?= .venv
# The real interpreter, never a pyenv shim (~80 ms per plugin exec). Debian's own
# python3.11 is preferred: static, with _socket built in, it starts fastest.
PYTHON ?= $(shell for p in /usr/bin/python3.11 /usr/bin/python3; do \
	  [ -x $$p ] && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && echo $$p && exit 0; \
	done; python3 -c 'import sys; print(sys.executable)')
VPY := $(VENV)/bin/python
APT_PACKAGES := iproute2 nftables iptables containernetworking-plugins conntrack busybox-static python3 python3-venv procps iputils-ping curl podman conmon runc catatonit containerd dnsmasq-base etcd-server etcd-client netavark aardvark-dns docker.io openvswitch-switch iperf3 openssl graphviz
PYTEST_ARGS ?=

.PHONY: all venv deps test lint typecheck pytest demo bench clean

all: test

# System packages, installed only when something is missing.
deps:
	@bash scripts/ensure-deps.sh $(APT_PACKAGES)

$(VPY): pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	@touch $(VPY)

venv: deps $(VPY)

lint: venv
	$(VENV)/bin/ruff check src tests bench demo examples
	$(VENV)/bin/ruff format --check src tests bench demo examples

typecheck: venv
	$(VENV)/bin/mypy

pytest: venv
	$(VPY) -m pytest -n 3 --dist loadgroup $(PYTEST_ARGS)

test: lint typecheck pytest

demo: venv
	$(VPY) demo/run.py
	$(VPY) demo/engine_demo.py
	$(VPY) demo/docker_demo.py
	$(VPY) demo/overlay_demo.py

bench: venv
	$(VPY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
