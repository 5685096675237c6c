# steer — the two commands a newcomer needs: `make demo` and `make test`.
# Every target installs what it needs first (scripts/setup.sh is idempotent).
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest

.PHONY: setup test test-unit test-bpf test-netns test-e2e lint demo bench clean

setup:
	@scripts/setup.sh

lint: setup
	$(VENV)/bin/ruff check steer_common pyctl transceiver steer_testkit tests bench
	$(VENV)/bin/ruff format --check steer_common pyctl transceiver steer_testkit tests bench
	$(VENV)/bin/mypy

# The whole suite, tier by tier (unit, packet replay, live XDP in namespaces, real
# WebRTC peers), then the VM lab carrying one call, then a smoke run of the benchmark so
# it cannot rot. The VM test runs in a pytest of its own: its guests need 3.5 GiB, and the
# suite's process holds the BPF maps of every program it compiled until it exits.
test: setup lint
	$(PYTEST) tests -v --durations=15 --ignore=tests/vm
	$(PYTEST) tests/vm -v
	$(PY) -m bench --smoke

test-unit test-bpf test-netns test-e2e: test-%: setup
	$(PYTEST) tests/$* -v

demo: setup
	$(VENV)/bin/steerctl demo

bench: setup
	$(PY) -m bench

clean:
	-$(VENV)/bin/steerctl lab down 2>/dev/null
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# The VM lab (vagrant/, docs/lab.md): client, relay and transceiver VMs under libvirt, the
# relay's XDP native on virtio-net. `make test` includes tests/vm; `make test-vm` runs it
# alone. Both install what they need on the host themselves (vagrant/host-setup.sh),
# build the box once (vagrant/build-box.sh) and tear the VMs down after.
.PHONY: vm-demo test-vm
vm-demo:
	python3 vagrant/vmdemo.py $(VM_DEMO_ARGS)

test-vm: setup
	$(PYTEST) tests/vm -v
