# The two commands of the README, for a fresh Debian 12 machine, as root:
#   make demo   sets everything up and shows a knock opening a port, in network namespaces
#   make test   sets everything up and runs the whole test suite
#   make bench  knocknft against Debian's knockd, side by side (about 10 minutes; writes
#               bench/results/ and docs/BENCHMARKS.md)
# All are safe to run again.

SHELL := /bin/bash
# Debian's own Python: the nftables binding (python3-nftables) is built for it and for the
# installed libnftables.so.1, so the virtual environment is made from it.
PYTHON := /usr/bin/python3
VENV := .venv
# systemd: its systemd-analyze and systemd-tmpfiles check packaging/systemd in the tests (only
# files are read; no unit is started). Debian installs it anyway; minimal containers may not.
# knockd and iptables are for the tests only: Debian's knockd and knock are the real peers knocknft
# is checked against, and the knockd.conf files users import run iptables (in the tests' own
# network namespaces only). openssh-client is for the tests too: `ssh -p PORT` is how the articles
# knock, a blocking connect whose SYN the kernel retransmits. fwknop-client is the peer whose
# single packet authorization knocknft serves; fwknop-server is fwknopd, run by the benchmark in
# its namespaces for the side-by-side figures (Debian ships it with START_DAEMON="no").
APT_PACKAGES := nftables python3-nftables python3-venv iproute2 procps systemd knockd iptables \
	openssh-client fwknop-client fwknop-server

.PHONY: demo test lint unit integration bench deps venv clean

# knocklab (namespace labs, packet generators) is test plumbing outside the wheel: the demo and
# the benchmarks find it in the checkout, as pytest does from the repository's root.
demo: venv
	PYTHONPATH=$(CURDIR) $(VENV)/bin/python scripts/demo.py

test: venv lint
	$(VENV)/bin/python -m pytest -q

lint: venv
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/python -m pytest -q tests/unit

integration: venv
	$(VENV)/bin/python -m pytest -q tests/integration

# Options go in BENCH_ARGS, e.g. make bench BENCH_ARGS="--sequences 500 --note 'quiet machine'"
# (bench/peer_bench.py --help lists them).
bench: venv $(VENV)/.bench-installed
	PYTHONPATH=$(CURDIR) $(VENV)/bin/python bench/peer_bench.py --publish docs $(BENCH_ARGS)

# Debian enables knockd.service when the package is installed, and it would then sniff the host's
# eth0; fwknop-server ships disabled, but is treated the same in case a derivative enables it. A
# peer we installed is for the tests only, so it is stopped and disabled at once; one the admin
# had installed before is left alone.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  for unit in knockd fwknop-server; do case " $$missing " in *" $$unit "*) \
	    if [ -d /run/systemd/system ]; then systemctl disable --now $$unit.service || true; fi;; \
	  esac; done; \
	fi

venv: deps $(VENV)/.installed

# The binding is linked in, not copied and not taken from PyPI (whose copies are older than
# Debian 12's library): apt upgrades library and binding together, and the venv sees that one
# module and nothing else of the system's site-packages.
$(VENV)/.installed: pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	ln -sfn /usr/lib/python3/dist-packages/nftables $$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/nftables
	$(VENV)/bin/pip install -q -e '.[dev]'
	$(VENV)/bin/python -c 'import nftables, knocknft'
	touch $@

# matplotlib (the plots) only for the benchmarks: the tests need none of it.
$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[dev,bench]'
	touch $@

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
