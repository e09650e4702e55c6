# The front door. Every target installs what it needs first (lab/setup.sh,
# idempotent), so on a fresh Debian 12 machine `make demo` and `make test`
# are all there is to type.

SHELL := /bin/bash

# The guest kernel series (lab/vm-run knows 6.1, 6.12, 7.2 and 6.12-debug).
# `make test` without KERNEL runs the full guest tier on 6.12 and the kernel
# tier (tests marked every_kernel) on each of 6.1 and 7.2; KERNEL=X runs the
# full guest tier on X alone, and KERNEL=6.12-debug the debug tier (below).
KERNEL_GIVEN := $(filter-out undefined default,$(origin KERNEL))
KERNEL ?= 6.12
LAB_KERNELS := 6.1 6.12 7.2
DEBUG_KERNEL := 6.12-debug
KERNEL_TIER_ON ?= $(if $(KERNEL_GIVEN),,$(filter-out $(KERNEL),$(LAB_KERNELS)))
PORTS ?=
CMD ?=
export KERNEL PORTS

VENV := .venv
PYTEST := $(VENV)/bin/pytest
VM_RUN := lab/vm-run
TEST_LOGS := build/test
# Seconds the guest tier may take before the guest is killed (CI has 90 min).
GUEST_TIER_TIMEOUT := 3600
# pytest's closing line in a tier's log, or a word on why there is none.
SUMMARY := summary() { grep -E '^=+ .* in [0-9.]+s' "$$1" | tail -n 1 | grep . || echo "no pytest summary (see $$1)"; }; summary

.PHONY: setup test test-host test-guest test-kernel-tier test-debug faults fuzz demo driver vm bench dashboards clean install uninstall

# The fuzzer, built with the host's compiler (the guest shares the host's
# root file system). tests/test_fuzz.py runs it in every guest tier; when
# it finds the binary stale it builds one with this rule (FUZZ_BIN=...).
FUZZ_BIN ?= build/vcam-fuzz
FUZZ_CFLAGS := -O2 -g -Wall -Wextra -Werror -pthread -Idriver/include/uapi
$(FUZZ_BIN): fuzz/vcam-fuzz.c driver/include/uapi/linux/vcam.h
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_CFLAGS) $< -o $@

setup:
	@lab/setup.sh

# Every tier always runs; the last lines are their pytest summaries and the
# target fails if any tier failed. A kernel that cannot be installed (a sid
# mirror out of reach) fails its own tier with one line; the others run.
# A TCG guest keeps one core busy, so the host tests that boot no guest, and
# the set-up of the other kernels, run on the second core beside the guest
# tier (SIGINT back to default: a background job would ignore it); the host
# tests that boot a guest of their own (own_guest) run after it.
ifeq ($(KERNEL),$(DEBUG_KERNEL))
test: test-debug
else
test: setup
	@mkdir -p $(TEST_LOGS); status=0; \
	{ for k in $(KERNEL_TIER_ON); do KERNEL=$$k lab/setup.sh || true; done > $(TEST_LOGS)/kernel-setup.log 2>&1; \
	  env --default-signal=INT $(PYTEST) -m "not guest and not own_guest" $(PYTEST_ARGS) > $(TEST_LOGS)/host.log 2>&1; \
	} & beside=$$!; \
	$(MAKE) --no-print-directory test-guest || status=1; \
	wait $$beside || status=1; \
	cat $(TEST_LOGS)/host.log; \
	$(MAKE) --no-print-directory test-host HOST_TESTS=own_guest HOST_LOG=host-own-guest.log || status=1; \
	for k in $(KERNEL_TIER_ON); do \
		$(MAKE) --no-print-directory test-kernel-tier KERNEL=$$k || status=1; \
	done; \
	echo; \
	printf 'host tier:  %s\n' "$$($(SUMMARY) $(TEST_LOGS)/host.log)"; \
	printf 'host tier, own guests: %s\n' "$$($(SUMMARY) $(TEST_LOGS)/host-own-guest.log)"; \
	printf 'guest tier: %s (%s)\n' "$$($(SUMMARY) $(TEST_LOGS)/guest.log)" "$(KERNEL)"; \
	for k in $(KERNEL_TIER_ON); do \
		printf 'kernel tier: %s (%s)\n' "$$($(SUMMARY) $(TEST_LOGS)/kernel-$$k.log)" "$$k"; \
	done; \
	exit $$status
endif

# Tests that need no module, on the host.
HOST_TESTS ?= not guest
HOST_LOG ?= host.log
test-host: setup
	@mkdir -p $(TEST_LOGS)
	@set -o pipefail; $(PYTEST) -m "$(HOST_TESTS)" $(PYTEST_ARGS) 2>&1 | tee $(TEST_LOGS)/$(HOST_LOG)

# pytest in a guest: no cache (the project tree is read-only there), only
# the plugin the guest tests use, and only the files that hold them (by
# default; GUEST_TESTS=tests/test_x.py runs one). Loading every installed
# plugin and importing the host tests' modules took 50 s of each tier's
# start under emulation (100 s -> 50 s to collect the 6.12 tier).
GUEST_PYTEST := env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 pytest -p pytest_timeout -p no:cacheprovider
GUEST_TESTS ?= $(shell grep -l 'mark\.guest' tests/test_*.py)
KERNEL_TIER_TESTS ?= $(shell grep -l 'mark\.every_kernel' tests/test_*.py)

# Every test that needs the module, in one guest boot.
test-guest: setup $(FUZZ_BIN)
	@mkdir -p $(TEST_LOGS)
	@set -o pipefail; $(VM_RUN) --timeout $(GUEST_TIER_TIMEOUT) -- $(GUEST_PYTEST) -m "guest and not load" $(GUEST_TESTS) $(PYTEST_ARGS) 2>&1 | tee $(TEST_LOGS)/guest.log

# The tests marked every_kernel, on KERNEL, in one boot (installs KERNEL).
test-kernel-tier: $(FUZZ_BIN)
	@mkdir -p $(TEST_LOGS)
	@set -o pipefail; { lab/setup.sh && \
		$(VM_RUN) --timeout $(GUEST_TIER_TIMEOUT) -- $(GUEST_PYTEST) -m "guest and every_kernel" $(KERNEL_TIER_TESTS) $(PYTEST_ARGS); \
	} 2>&1 | tee $(TEST_LOGS)/kernel-$(KERNEL).log

# The debug tier: the driver's tests, and the fuzzer's when it is there, on
# the lab's debug kernel (KASAN, lockdep, DEBUG_ATOMIC_SLEEP, DEBUG_LIST,
# kmemleak; lab/debug-kernel.sh builds it once, in about an hour), in one
# boot; any report, or a leak in kmemleak's scan after vcam is unloaded,
# fails it. Then the host test that proves each report fails a run there.
# Not part of plain `make test` (README: Kernels says why).
DEBUG_TIER_TIMEOUT := 7200
# bcc's tests compile against the guest's headers: left in if they pass.
DEBUG_TESTS_LEFT_OUT ?=
DEBUG_TESTS ?= $(filter-out $(DEBUG_TESTS_LEFT_OUT),$(wildcard tests/test_driver_*.py tests/test_fuzz.py))
test-debug:
	@KERNEL=$(DEBUG_KERNEL) lab/setup.sh
	@mkdir -p $(TEST_LOGS); status=0; \
	set -o pipefail; $(VM_RUN) --kernel $(DEBUG_KERNEL) --timeout $(DEBUG_TIER_TIMEOUT) -- \
		$(GUEST_PYTEST) -m guest $(DEBUG_TESTS) $(PYTEST_ARGS) 2>&1 | tee $(TEST_LOGS)/debug.log || status=1; \
	KERNEL=$(DEBUG_KERNEL) $(PYTEST) -m own_guest tests/test_debug_kernel.py 2>&1 | tee $(TEST_LOGS)/debug-own-guest.log || status=1; \
	echo; \
	printf 'debug tier: %s (%s)\n' "$$($(SUMMARY) $(TEST_LOGS)/debug.log)" "$(DEBUG_KERNEL)"; \
	printf 'debug tier, own guests: %s\n' "$$($(SUMMARY) $(TEST_LOGS)/debug-own-guest.log)"; \
	exit $$status

# The fault tests and the exporter under load (marked load: make test
# leaves that one out) alone, in one boot, at any count:
#   make faults FAULT_KILLS=1000 FAULT_CYCLES=10000 SCRAPE_SECONDS=60
FAULT_KILLS ?= 100
FAULT_CYCLES ?= 1000
SCRAPE_SECONDS ?= 60
faults: setup
	@$(VM_RUN) -- env VCAM_FAULT_KILLS=$(FAULT_KILLS) VCAM_FAULT_CYCLES=$(FAULT_CYCLES) \
		VCAM_SCRAPE_SECONDS=$(SCRAPE_SECONDS) pytest -p no:cacheprovider -s --durations=0 \
		tests/test_faults.py tests/test_exporter_load.py

# The fuzzer for SECONDS in a guest of KERNEL, then the same checks as the
# test (nothing left open, rmmod, slab and minors back); prints the seed
# first and the summary (calls, successes, errnos) last. SEED=N repeats a
# run's choices; FUZZ_ARGS adds options (vcam-fuzz --help). The log is
# kept as fuzz.log in the run directory (build/vm/run-*/).
SECONDS ?= 300
SEED ?=
FUZZ_ARGS ?=
fuzz: setup $(FUZZ_BIN)
	@$(VM_RUN) --timeout $$(( $(SECONDS) + 900 )) -- env VCAM_FUZZ_SECONDS='$(SECONDS)' VCAM_FUZZ_SEED='$(SEED)' \
		VCAM_FUZZ_ARGS='$(FUZZ_ARGS)' pytest -p no:cacheprovider -s -q tests/test_fuzz.py

# Run CMD as root in the guest with vcam loaded, e.g.
#   make vm CMD='v4l2-ctl --list-devices' PORTS=9477
vm: setup
	@if [ -z "$(CMD)" ]; then echo "make vm: say what to run, e.g. make vm CMD='uname -r'" >&2; exit 2; fi
	@$(VM_RUN) -- sh -c '$(subst ','\'',$(CMD))'

# Build the module against the guest kernel's headers (the runner does
# this by itself; this target is for looking at compiler output). 7.2's
# modules are built in its sid build root, so the runner does the building.
driver: setup
	@$(VM_RUN) --build-driver

# Two cameras, zero-copy and copy, in the lab's guest with the live TUI here
# (a summary after DEMO_SECONDS without a terminal). NATIVE=1: on this
# machine's kernel instead (root): the installed vcam (make install) when
# there is one, else the checkout's, built against the kernel's headers.
DEMO_SECONDS ?= 20
demo: setup
	@$(VENV)/bin/python lab/demo --seconds $(DEMO_SECONDS) $(if $(filter 1,$(NATIVE)),--native)

# Regenerate the Grafana dashboards and Prometheus rules from the metric
# model, then check them with promtool (the tests check that they are fresh).
dashboards: setup
	@$(VENV)/bin/python dashboards/generate.py
	@cd dashboards/prometheus && promtool check config prometheus.yml && \
		promtool check rules vcam-rules.yml vcam-alerts.yml && promtool test rules vcam-alerts_test.yml

# Benchmarks print tables, a plot and JSON; they assert nothing. vcam's rows
# run next to v4l2loopback's (sid's 0.15.4, lab/v4l2loopback.sh) and memcpy's
# in one boot; without v4l2loopback's source one line says so and vcam's rows
# run. BENCH_SECONDS a row, BENCH_ROUNDS interleaved rounds (small values for
# a quick try); figures and plot in build/bench/.
BENCH_SECONDS ?= 3
BENCH_ROUNDS ?= 2
bench: setup
	@mkdir -p build/bench
	@$(CC) -O2 -Wall -Wextra -Idriver/include/uapi bench/vcam-bench.c -o build/vcam-bench
	@ko=$$(lab/v4l2loopback.sh) || ko=; \
	$(VM_RUN) -- sh -c 'python3 bench/run.py build/vcam-bench --python --loopback "$$1" \
		--seconds $(BENCH_SECONDS) --rounds $(BENCH_ROUNDS) --out "$$VCAM_RUN_DIR/figures.json" && \
		echo && python3 bench/framepath.py && echo && python3 bench/gst_sink.py' sh "$$ko"
	@$(VENV)/bin/python bench/report.py "$$(ls -t build/vm/run-*/figures.json | head -n 1)" build/bench
	@# The probes' cost as instruction counts: a busy host scatters wall-clock ratios
	@echo; $(VM_RUN) --icount -- python3 bench/probe_overhead.py --pin --each build/vcam-bench
	@echo; $(VENV)/bin/python bench/tui_cpu.py

# Install vcam on this machine, as root: the module through DKMS, the udev
# rule for group video, the commands in /usr/local/bin, the exporter's
# systemd unit (install/install.sh says what goes where). Nothing of the
# lab's set-up. WHEELS=DIR takes the Python packages from a directory
# (install/install.sh wheels DIR fills one) instead of PyPI; KVER=<release>
# builds the module for a kernel installed but not running yet.
install:
	@WHEELS="$(WHEELS)" KVER="$(KVER)" install/install.sh install

uninstall:
	@install/install.sh uninstall

clean:
	-$(VM_RUN) --clean-driver
	rm -rf build
