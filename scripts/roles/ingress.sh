#!/usr/bin/env bash
# Role: ingress. The WHIP reverse proxy on the relay's public address (pyctl/lab/ingress.py):
# signaling reaches the transceivers through it, never across the media relay.
# STEER_INGRESS_ROUTES="198.51.100.1:8081=10.88.0.11:8080 ...", one route per transceiver.
# The namespace lab (pyctl/lab/lifecycle.py) and the Vagrant relay VM both start it through this script.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${STEER_INGRESS_ROUTES:?set STEER_INGRESS_ROUTES to LISTEN_IP:PORT=TARGET_IP:PORT ...}"
# shellcheck disable=SC2086 # one word per route
exec "$root/.venv/bin/python" -m pyctl.lab.ingress $STEER_INGRESS_ROUTES
