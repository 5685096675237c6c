#!/usr/bin/env bash
# Role: client. Runs WebRTC sessions (aiortc, a tone and data-channel messages) against
# the WHIP URLs given as arguments and prints one JSON result per session; exits non-zero
# if any session failed. The demo runs it in the lab's client namespace.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
exec "$root/.venv/bin/python" -m pyctl.lab.democlient "$@"
