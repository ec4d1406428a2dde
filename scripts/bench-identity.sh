#!/usr/bin/env bash
# What PrivaSIP's cryptography costs per dialog: seal, open, cached open,
# for every scheme, then the Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
step "criterion: crates/privasip-benches/benches/identity.rs"
cargo bench --locked -p privasip-benches --bench identity -- "$@"
step "table (median per operation)"
python3 scripts/criterion_table.py target identity
