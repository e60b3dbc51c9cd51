# testbed — transport-layer mobility lab. Every target installs what it needs through `setup`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_STAMP := /var/lib/testbed/system.stamp
TOPOLOGY ?= two-ar
SCENARIO ?= trash-handover
LAB ?= tb
OUT ?= out/$(SCENARIO)


.PHONY: setup lock kernel images testbed-up lab-up testbed-down test unit integration lint bench soak stress clean

# (set-up's record of the Debian package versions is rewritten each time: an upgrade by hand shows)
setup: $(SYSTEM_STAMP) $(STAMP) kernel images
	@bash scripts/setup-system.sh --record

# the docker backend's images (debootstrap base + one per role); cached by the content hash of
# their inputs, so this only builds what changed (first time: a few minutes)
images: $(SYSTEM_STAMP) $(STAMP)
	$(VENV)/bin/testbed images build

# kernels under test for VM nodes: the default (Debian 6.1, SCTP as a module) and a 6.12 from
# bookworm-backports for interop runs; idempotent: a cached kernel is not fetched again
INTEROP_KERNEL := 6.12
kernel: $(SYSTEM_STAMP)
	bash scripts/fetch-kernel.sh >/dev/null
	bash scripts/fetch-kernel.sh $(INTEROP_KERNEL) >/dev/null

# Debian packages (BIND 9.20 from bookworm-backports, dhcpd, radvd, mininet, tcpdump, QEMU);
# re-run when the script changes
$(SYSTEM_STAMP): scripts/setup-system.sh
	bash scripts/setup-system.sh
	mkdir -p $(dir $@) && touch $@

# the Python environment: Debian's python3 (so the VM guests, which share the host root, run it
# too), every package at the lock's version with its hash checked, then this package without
# build isolation (its build backend is pinned in the lock too; setuptools' note that an editable
# install can be shadowed by a same-named folder is silenced: that folder is the package itself)
LOCK := requirements/dev.txt
$(STAMP): pyproject.toml $(LOCK) $(SYSTEM_STAMP)
	test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# refresh requirements/*.txt from pyproject.toml, keeping the pins that still satisfy it
# (UPGRADE=1: the newest releases it allows); the unit tests fail while the two disagree
lock: $(STAMP)
	$(PY) -m testbed.dependencies lock $(if $(UPGRADE),--upgrade)

# the default handover: lab up (if not yet), scenario run, verdict and report; the lab stays up
testbed-up: setup
	$(VENV)/bin/testbed --lab $(LAB) run $(SCENARIO) --out $(OUT)
	@echo "lab $(LAB) stays up: .venv/bin/testbed --lab $(LAB) status | exec mn -- CMD; make testbed-down"

# only bring a topology up (no scenario)
lab-up: setup
	$(VENV)/bin/testbed --lab $(LAB) up $(TOPOLOGY)
	$(VENV)/bin/testbed --lab $(LAB) status

testbed-down: setup
	$(VENV)/bin/testbed --lab $(LAB) down

lint: setup
	$(VENV)/bin/ruff check .

# PYTEST_ARGS: more pytest options (.ci/run adds a JUnit report)
test: setup lint
	$(VENV)/bin/pytest -q -ra $(PYTEST_ARGS)

unit: setup
	$(VENV)/bin/pytest -q -m "not integration"

integration: setup
	$(VENV)/bin/pytest -q -m integration

bench: setup
	$(PY) bench/bench_lab.py
	$(PY) bench/bench_checker.py
	$(PY) bench/bench_quic.py
	$(PY) bench/bench_agent.py
	$(PY) bench/bench_handover.py
	$(PY) bench/bench_sctp.py
	$(PY) bench/bench_docker.py
	$(PY) bench/bench_interop.py
	$(PY) bench/bench_mptcp.py
	$(PY) bench/bench_quic_handover.py
	$(PY) bench/bench_replay.py
	$(PY) bench/bench_deploy.py

# N consecutive default runs (pass/fail counts, timing distribution): make soak N=100; then
# the long checker fuzz (FUZZ mutated captures; make test runs a short one)
N ?= 100
FUZZ ?= 100000
soak: setup
	$(PY) bench/soak.py --runs $(N) --scenario $(SCENARIO)
	$(PY) bench/fuzz_checker.py --inputs $(FUZZ)

# the integration suite on cores kept busy by CPU hogs (stress-ng), from a load average of 4:
# make stress [HOGS=4] [MIN_LOAD=4] [PYTEST_ARGS=...]
HOGS ?= 4
MIN_LOAD ?= 4
stress: setup
	bash scripts/stress.sh $(HOGS) $(MIN_LOAD) -- $(PYTEST_ARGS)

clean:
	-$(VENV)/bin/testbed clean
	rm -rf .pytest_cache .ruff_cache
