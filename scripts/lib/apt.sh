# Sourced by scripts/setup.sh and vagrant/host-setup.sh (they define `say`).
# apt_ensure PKG...: installs those of the Debian packages that are not installed yet, in
# one apt run, and says which (or that all were there).
apt_ensure() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    say "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "apt: all $# packages present"
  fi
}
