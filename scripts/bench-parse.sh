#!/usr/bin/env bash
# Parse throughput of privasip-message against rsip, rsipstack and
# ezk-sip-types, in one run, then the Markdown table for BENCHMARKS.md.
#
# The machine is shared and its speed comes and goes in bursts that can
# cover a whole criterion measurement, so the whole benchmark runs
# BENCH_RUNS times (default 3) and the table keeps, for every parser alike,
# its fastest median: the run least disturbed. Arguments go to criterion,
# e.g. `--warm-up-time 1 --measurement-time 5`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
runs=${BENCH_RUNS:-3}
snapshots=()
for i in $(seq 1 "$runs"); do
  step "criterion run $i of $runs: crates/privasip-benches/benches/parse.rs"
  cargo bench --locked -p privasip-benches --bench parse -- "$@"
  rm -rf "target/bench-parse/run$i"
  mkdir -p "target/bench-parse/run$i"
  cp -r target/criterion "target/bench-parse/run$i/"
  snapshots+=("target/bench-parse/run$i")
done
step "table (fastest of $runs medians per message; x = times slower than privasip)"
python3 scripts/criterion_table.py "$(IFS=,; echo "${snapshots[*]}")" parse
