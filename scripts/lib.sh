# Shared helpers for the scripts; `source` it.

step() { printf '\n==> %s\n' "$*"; }

# ensure_deb PACKAGE... : install Debian packages that are missing.
ensure_deb() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# ensure_cargo_tool BINARY CRATE : install a cargo tool that is missing.
ensure_cargo_tool() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "installing $2 (once; it takes a few minutes)"
    cargo install --locked --quiet "$2"
  fi
}
