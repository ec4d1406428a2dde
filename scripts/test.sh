#!/usr/bin/env bash
# The test command: formatting, lints, every test, dependency policy.
# Installs what the tests need (Debian packages, cargo tools) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step "format (cargo fmt --check)"
cargo fmt --all -- --check

step "lints (clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "no I/O in the sans-IO crates"
scripts/check-sans-io.sh

step "arti only in privasip-arti"
scripts/check-arti.sh

step "foreign peers the tests drive (Debian packages)"
ensure_deb sip-tester sipsak kamailio tor iproute2 tcpdump postgresql baresip-core fonts-dejavu-core

step "tests (debug build)"
cargo test --workspace --locked

step "dependency policy (cargo deny)"
ensure_cargo_tool cargo-deny cargo-deny
cargo deny --log-level error check licenses bans sources
echo "advisories: not checked here (the RustSec database cannot be fetched from this machine)"

step "all checks passed"
