#!/usr/bin/env bash
# The main job, as far as it goes today: build privasip and check every
# RFC 4475 torture message the way the proxy parses it off the wire.
# (It becomes `privasip demo`, a PrivaSIP-2 call over a private Tor
# network, as the proxy, Tor and user-agent work lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step "build privasip (release)"
cargo build --release --locked -p privasip

step "privasip parse testdata/rfc4475/*.dat"
# 1 = some messages are invalid, as RFC 4475 intends; anything else is a failure.
set +e
target/release/privasip parse testdata/rfc4475/*.dat
code=$?
set -e
[ "$code" -eq 1 ] || { echo "unexpected exit status $code" >&2; exit 1; }
step "done: the valid and the broken torture messages were told apart (see MANIFEST.tsv)"
