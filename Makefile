# steer — the two commands a newcomer needs: `make demo` and `make test`.
# Every target installs what it needs first (scripts/setup.sh is idempotent).
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest

.PHONY: setup test test-unit test-bpf test-netns test-e2e lint demo bench clean

setup:
	@scripts/setup.sh

lint: setup
	$(VENV)/bin/ruff check steer_common pyctl transceiver tests bench
	$(VENV)/bin/ruff format --check steer_common pyctl transceiver tests bench
	$(VENV)/bin/mypy

# The whole suite, tier by tier (unit, packet replay, live XDP in namespaces, real
# WebRTC peers), then a smoke run of the benchmark so it cannot rot.
test: setup lint
	$(PYTEST) tests -v --durations=15
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
