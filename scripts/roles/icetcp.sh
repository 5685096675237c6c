#!/usr/bin/env bash
# Role: the relay's ICE-TCP component. Runs `steerctl icetcp` in the foreground beside the
# relay's daemon (same host, same STEER_INSTANCE), configured from the environment
# (STEER_TCP_VIP="203.0.113.10 2001:db8:ffff::10", STEER_TCP_PORT, STEER_NETNS,
# STEER_TCP_METRICS). The namespace lab starts it for its one-relay topology.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${STEER_TCP_VIP:?set STEER_TCP_VIP to the VIP address(es), space-separated}"
exec "$root/.venv/bin/steerctl" --instance "${STEER_INSTANCE:-default}" icetcp "$@"
