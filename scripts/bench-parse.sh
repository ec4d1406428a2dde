#!/usr/bin/env bash
# Parse throughput of privasip-message against rsip, rsipstack and
# ezk-sip-types, in one run, then the Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
step "criterion: crates/privasip-benches/benches/parse.rs"
cargo bench --locked -p privasip-benches --bench parse -- "$@"
step "table (median per message; x = times slower than privasip)"
python3 scripts/criterion_table.py target parse
