# The two commands of the README, for a fresh Debian 12 machine, as root:
#   make demo   sets everything up and shows a knock opening a port, in network namespaces
#   make test   sets everything up and runs the whole test suite
# Both are safe to run again.

SHELL := /bin/bash
# Debian's own Python: the nftables binding (python3-nftables) is built for it and for the
# installed libnftables.so.1, so the virtual environment is made from it.
PYTHON := /usr/bin/python3
VENV := .venv
# systemd: its systemd-analyze and systemd-tmpfiles check packaging/systemd in the tests (only
# files are read; no unit is started). Debian installs it anyway; minimal containers may not.
APT_PACKAGES := nftables python3-nftables python3-venv iproute2 procps systemd

.PHONY: demo test lint unit integration deps venv clean

demo: venv
	$(VENV)/bin/python scripts/demo.py

test: venv lint
	$(VENV)/bin/python -m pytest -q

lint: venv
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/python -m pytest -q tests/unit

integration: venv
	$(VENV)/bin/python -m pytest -q tests/integration

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
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

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
