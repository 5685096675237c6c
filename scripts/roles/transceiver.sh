#!/usr/bin/env bash
# Role: transceiver. Runs steer-transceiver in the foreground, configured from the
# environment (STEER_TRX_LISTEN, STEER_TRX_BIND_IP, STEER_TRX_VIP, STEER_TRX_BACKEND_ID,
# STEER_TRX_API_SOCKET or STEER_TRX_API_URL, STEER_TRX_API_TOKEN_FILE, ...). Used by the
# namespace lab and the Vagrant transceiver VMs alike.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${STEER_TRX_BIND_IP:?set STEER_TRX_BIND_IP to this host's internal address}"
: "${STEER_TRX_VIP:?set STEER_TRX_VIP to the relay's VIP(s)}"
: "${STEER_TRX_BACKEND_ID:?set STEER_TRX_BACKEND_ID (1-4095)}"
exec "$root/.venv/bin/steer-transceiver" "$@"
