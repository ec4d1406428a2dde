#!/usr/bin/env bash
# Time to open a stream and complete one SIP transaction through Tor:
# onion vs exit, fresh vs reused circuit, arti vs C tor, against direct
# TCP, on a private Tor network started for the run.
#
#   bash scripts/bench-tor.sh [SAMPLES] [vanilla|kist]     default: 30 vanilla
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_deb tor
samples=${1:-30}
sched=${2:-vanilla}

step "build privasip (release)"
cargo build --release --locked -p privasip
bin=target/release/privasip
net=$(mktemp -d)
trap '"$bin" testnet down --dir "$net" >/dev/null 2>&1 || true; rm -rf "$net"' EXIT

step "private Tor network (scheduler $sched)"
"$bin" testnet up --dir "$net" --base-port 17000 --scheduler "$sched"

step "bench tor ($samples samples per path)"
mkdir -p runs
"$bin" bench tor --testnet "$net" --samples "$samples" --out "runs/bench-tor-$sched.md"
echo "table written to runs/bench-tor-$sched.md"
