#!/usr/bin/env bash
# The main job: a whole PrivaSIP-over-Tor call on this machine.
#
# Builds privasip, installs Debian's tor if it is missing, and runs
# `privasip demo`: a private Tor network on 127.0.0.1, Proxy A (Alice's
# home proxy, plain SIP on the LAN side), Proxy B (Bob's domain, an onion
# service), Bob behind Tor with his own onion service, and Alice calling
# Bob with PrivaSIP-2 on a fresh circuit; then what each vantage point
# saw, and everything stopped again.
#
#   bash scripts/main.sh                 one call
#   bash scripts/main.sh --calls 5       more calls (any `privasip demo` flag)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_deb tor
step "build privasip (release)"
cargo build --release --locked -p privasip

step "privasip demo $*"
target/release/privasip demo "$@"
