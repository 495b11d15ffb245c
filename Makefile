# The two commands of the README, for a fresh Debian 12 machine, as root:
#   make demo   sets everything up and shows a knock opening a port, in network namespaces
#   make test   sets everything up and runs the whole test suite
#   make bench  knocknft against Debian's knockd and fwknopd, side by side (about 15 minutes;
#               writes bench/results/ and docs/BENCHMARKS.md)
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
# its namespaces for the side-by-side figures (Debian ships it with START_DAEMON="no"). man-db and
# zsh check the generated man pages and zsh completions (tests/unit/test_docs.py); dpkg-dev
# (dpkg-shlibdeps) builds the Debian package that tests/integration/test_package.py installs.
APT_PACKAGES := nftables python3-nftables python3-venv iproute2 procps systemd knockd iptables \
	openssh-client fwknop-client fwknop-server man-db zsh dpkg-dev

.PHONY: demo test lint unit integration bench deps venv clean install uninstall deb schema

# knocklab (namespace labs, packet generators) is test plumbing outside the wheel: the demo and
# the benchmarks find it in the checkout, as pytest does from the repository's root.
demo: venv
	PYTHONPATH=$(CURDIR) $(VENV)/bin/python scripts/demo.py

# The whole suite includes building the Debian package and installing, checking and purging it
# on this machine (tests/integration/test_package.py), which nothing else runs by itself.
test: venv lint
	KNOCKNFT_TEST_PACKAGE=1 $(VENV)/bin/python -m pytest -q

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

# Installing for running, not developing (README, "Install"). knocknft and its Python dependencies
# go into a private folder, PREFIX/lib/knocknft, which the commands in PREFIX/bin put ahead of
# the system's site-packages: Debian 12's typer and pyroute2 are older than knocknft's, and pip
# must not write into the system's. The system's Python runs them, so the distribution's
# nftables binding (python3-nftables, matched to its libnftables) is the one it sees, as the
# venv's link does. Not editable: a `git pull` changes nothing installed. scripts/install.py
# has the layout; the man pages, completions and JSON Schema are generated on the way.
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR ?=
BUILD := build
# The build's own environment: knocknft's runtime dependencies (the generators import it) and
# pip, nothing of the development tools; never the one installed.
BUILD_PYTHON := $(BUILD)/tools/bin/python

$(BUILD)/tools/.installed: pyproject.toml
	$(PYTHON) -m venv $(BUILD)/tools
	$(BUILD_PYTHON) -m pip install -q --disable-pip-version-check .
	touch $@

install: $(BUILD)/tools/.installed
	$(BUILD_PYTHON) -m scripts.install --destdir "$(or $(DESTDIR),/)" --prefix "$(PREFIX)" \
		--sysconfdir "$(SYSCONFDIR)" --python $(PYTHON)

# Everything `make install` put under PREFIX; the config and /var/lib/knocknft stay.
uninstall: $(BUILD)/tools/.installed
	$(BUILD_PYTHON) -m scripts.install --uninstall --destdir "$(or $(DESTDIR),/)" \
		--prefix "$(PREFIX)" --sysconfdir "$(SYSCONFDIR)" --python $(PYTHON)

# The Debian package, with dpkg-deb and no debhelper: the tree `make install` lays out with
# PREFIX=/usr, minus the dependencies Debian ships itself (pyyaml, cryptography: Depends), plus
# the control file and maintainer scripts (scripts/deb.py). Prints the .deb's path. typer's
# pydantic-core is compiled, so the package is for this architecture and Python 3.11.
# DEB_MAINTAINER="Name <mail>" names who built it.
DEB_BUILD_PACKAGES := dpkg-dev python3-venv python3-yaml python3-cryptography
deb: deps
	@missing=$$(for p in $(DEB_BUILD_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get install -y -q $$missing; fi
	$(MAKE) $(BUILD)/tools/.installed
	$(BUILD_PYTHON) -m scripts.deb --out $(BUILD) $(if $(DEB_MAINTAINER),--maintainer "$(DEB_MAINTAINER)")

# The repository's copy of the config's JSON Schema, after a change to the config's keys
# (tests/unit/test_docs.py compares it with what the reference gives).
schema: venv
	$(VENV)/bin/python -m scripts.gendocs --schema packaging/knocknft.schema.json

clean:
	rm -rf $(VENV) $(BUILD) .mypy_cache .pytest_cache .ruff_cache
