#!/usr/bin/env bash
# Role: relay. Runs the steer daemon in the foreground, configured from the environment
# (every option of `steerctl daemon` has a STEER_* variable, e.g. STEER_PUBLIC=eth1
# STEER_INTERNAL=eth2 STEER_VIP="203.0.113.10:3478"). The namespace lab (pyctl/lab/lifecycle.py)
# and the Vagrant relay VM both start the relay through this script.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${STEER_PUBLIC:?set STEER_PUBLIC to the public interface}"
: "${STEER_INTERNAL:?set STEER_INTERNAL to the internal interface}"
: "${STEER_VIP:?set STEER_VIP to one or more VIP IP:PORT, space-separated}"
exec "$root/.venv/bin/steerctl" --instance "${STEER_INSTANCE:-default}" daemon "$@"
