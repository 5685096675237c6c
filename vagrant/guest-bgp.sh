#!/usr/bin/env bash
# The VM lab's BGP, read and exercised inside the VMs (as root) by vagrant/vmbgp.py; each
# subcommand prints one JSON line. Settings come from vagrant/relay.env (the relay VM's
# /etc/steer/default.env).
#   route         client VM: waits (up to 120 s) for BIRD's route to the VIP; prints it
#   bird-outage   relay VM: stops steer-bird@default, waits for the daemon to see it gone
#                 (steer_fleet_announced 0), starts it again, waits for the daemon to
#                 announce again (1: BIRD has its config and the session is up)
#   daemon-stop   relay VM: stops steer-relay@default and waits past BFD's detection time:
#                 BIRD must still run (the same pid) and export the VIP
#   daemon-start  relay VM: starts the daemon again without waiting (it compiles first)
set -euo pipefail
env_file=$(dirname "$0")/relay.env
setting() { sed -n "s/^$1=//p" "$env_file"; }
vip=$(setting STEER_VIP)
vip=${vip%:*}
sock=$(setting STEER_BGP_SOCKET)
peer=$(setting STEER_BGP_PEER)
proto=uplink_${peer//[^a-zA-Z0-9]/_} # the daemon's name for the session (announce.Peer.name)
port=$(setting STEER_METRICS)
port=${port##*:}
bird_unit=steer-bird@default
ms() { date +%s%3N; }
bird_pid() { systemctl show -p MainPID --value "$bird_unit"; }

# steer_fleet_announced from the daemon's metrics ("" when the daemon does not answer)
announced() {
  local out=""
  if exec 3<>"/dev/tcp/127.0.0.1/$port"; then
    printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
    out=$(sed -n 's/^steer_fleet_announced \([0-9.]*\).*/\1/p' <&3)
    exec 3>&-
  fi
  echo "${out%.0}"
} 2>/dev/null

wait_announced() { # $1: the value to wait for, $2: seconds
  local a="" i
  for ((i = 0; i < $2 * 2; i++)); do
    a=$(announced)
    [[ $a == "$1" ]] && break
    sleep 0.5
  done
  echo "$a"
}

case ${1:-} in
route)
  t0=$(ms)
  for ((i = 0; i < 240; i++)); do
    [[ -n $(ip route show "$vip" proto bird) ]] && break
    sleep 0.5
  done
  printf '{"routes": %s, "waited_ms": %d}\n' "$(ip -j route show "$vip")" $(($(ms) - t0))
  ;;
bird-outage)
  before=$(bird_pid)
  systemctl stop "$bird_unit"
  during=$(wait_announced 0 20)
  t0=$(ms)
  systemctl start "$bird_unit"
  after=$(wait_announced 1 120)
  printf '{"pid_before": %d, "pid_after": %d, "announced_during": "%s", "announced_after": "%s", "back_ms": %d}\n' \
    "$before" "$(bird_pid)" "$during" "$after" $(($(ms) - t0))
  ;;
daemon-stop)
  before=$(bird_pid)
  systemctl stop steer-relay@default
  # past the upstream's BFD detection (interval x multiplier), so a BIRD that had gone
  # with the daemon would have lost the client's route by now
  sleep $(($(setting STEER_BFD_INTERVAL_MS) * $(setting STEER_BFD_MULTIPLIER) / 1000 + 2))
  exported=$(birdc -s "$sock" show route export "$proto" | grep -c "^$vip/32 " || true)
  printf '{"pid_before": %d, "pid_after": %d, "bird": "%s", "daemon": "%s", "exported": %d}\n' \
    "$before" "$(bird_pid)" "$(systemctl is-active "$bird_unit" || true)" \
    "$(systemctl is-active steer-relay@default || true)" "$exported"
  ;;
daemon-start)
  systemctl start --no-block steer-relay@default
  echo '{"started": true}'
  ;;
*)
  echo "usage: $0 route|bird-outage|daemon-stop|daemon-start" >&2
  exit 2
  ;;
esac
