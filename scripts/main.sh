#!/usr/bin/env bash
# The main job: a whole PrivaSIP-over-Tor call on this machine.
#
# Builds privasip, installs Debian's tor and tcpdump if they are missing,
# and runs
# `privasip demo`: a private Tor network on 127.0.0.1, Proxy A (Alice's
# home proxy, plain SIP on the LAN side), Proxy B (Bob's domain, an onion
# service), Bob behind Tor with his own onion service, and Alice calling
# Bob with PrivaSIP-2 on a fresh circuit; then what each vantage point
# saw, a privacy audit of a tcpdump capture of the LAN hop and of both
# proxies' logs, and everything stopped again.
#
#   bash scripts/main.sh                 one call
#   bash scripts/main.sh --calls 5       more calls (any `privasip demo` flag)
#   bash scripts/main.sh --mode plain    the same call without PrivaSIP: the audit finds the IDs
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_deb tor tcpdump
step "build privasip (release)"
cargo build --release --locked -p privasip

step "privasip demo $*"
target/release/privasip demo "$@"
