#!/usr/bin/env bash
# The paper's experiment (§5.2): N sequential calls Alice -> Bob over Tor
# per scenario, plain SIP and PrivaSIP-2 interleaved, INVITE->180 at the
# caller, a new circuit per call (and, with --reuse, one shared circuit).
#
#   bash scripts/bench-paper.sh [CALLS] [SCHEME] [extra privasip flags]
#   default: 100 hpke --reuse; results in runs/paper-SCHEME/
#   bash scripts/bench-paper.sh 100 hpke --reuse --quickack   (root: quick ACKs
#   on the loopback routes while the network runs, restored after)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_deb tor iproute2 fonts-dejavu-core
calls=${1:-100}
scheme=${2:-hpke}
shift 2 || shift $# || true
extra=("$@")
[ ${#extra[@]} -gt 0 ] || extra=(--reuse)

step "build privasip (release)"
cargo build --release --locked -p privasip

step "bench paper: $calls calls per scenario, $scheme ${extra[*]}"
target/release/privasip bench paper --calls "$calls" --scheme "$scheme" \
  --out "runs/paper-$scheme" "${extra[@]}"
