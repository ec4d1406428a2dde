#!/usr/bin/env bash
# An introduction flood against a proxy's onion service, with and without
# Tor's proof-of-work defence (SECURITY.md, issue 17).
# `bash scripts/bench-onion-flood.sh --help` says what it measures.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

usage() {
  cat <<'EOF'
Usage: bash scripts/bench-onion-flood.sh [--quick]

Starts a private Tor network on loopback (privasip testnet, base port
20000), then twice a release privasip proxy whose onion service is hosted
by the network's C tor client a: once with the proof-of-work defence
(ADD_ONION ... PoWDefensesEnabled=1, privasip's default), once without
([tor] onion_pow = false). Against each, scripts/onion_flood.py through
client b: a real client's connection time alone (baseline), then during a
flood of WORKERS connections at once, each on a circuit of its own (an
introduction and a rendezvous each), closed as soon as open.

Reported per run: the real client's median and worst connection time
alone and under the flood, its failures, and the flood's rate.

Tor raises the effort it asks of clients only every 5 minutes
(HS_UPDATE_PERIOD), and its queue of introductions serves 250 a second
before it orders them by effort (HiddenServicePoWQueueRate): a flood must
exceed that, for longer than that, for the defence to show.

Options:
  --quick   10 s baseline, 30 s flood, 24 workers (default 20 s, 120 s, 48)
  -h        this text

Environment: PRIVASIP_BIN=PATH uses that binary instead of building;
BENCH_OUT=DIR (default runs/onion-flood-DATE); FLOOD_SECS, FLOOD_WORKERS;
FLOOD_ORDER="false true" to measure without the defence first.
EOF
}

base=20 flood=${FLOOD_SECS:-120} workers=${FLOOD_WORKERS:-48}
for a in "$@"; do
  case "$a" in
    --quick) base=10 flood=${FLOOD_SECS:-30} workers=${FLOOD_WORKERS:-24} ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

ensure_deb python3 tor
if [ -z "${PRIVASIP_BIN:-}" ]; then
  step "release build"
  cargo build --release --locked -p privasip
  PRIVASIP_BIN=$PWD/target/release/privasip
fi
out=${BENCH_OUT:-runs/onion-flood-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  "$PRIVASIP_BIN" testnet down --dir "$work/net" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step "private Tor network"
"$PRIVASIP_BIN" testnet up --dir "$work/net" --base-port 20000 | tee "$out/testnet.txt"
socks=$(sed -n 's/^client b: SOCKS \([0-9.:]*\).*/\1/p' "$out/testnet.txt")
[ -n "$socks" ] || { echo "no SOCKS port for client b" >&2; exit 1; }

for pow in ${FLOOD_ORDER:-true false}; do
  step "onion service with onion_pow = $pow"
  cat > "$work/proxy-$pow.toml" <<TOML
[proxy]
domains = ["b.example"]
sent_by = "127.0.0.5:20200"
[listen]
udp = "127.0.0.5:20200"
[store]
path = "proxy-$pow.db"
[tor]
backend = "c-tor"
testnet = "net"
testnet_client = "a"
onion_port = 5060
key_dir = "keys-$pow"
onion_pow = $pow
TOML
  (cd "$work" && exec "$PRIVASIP_BIN" proxy --config "proxy-$pow.toml") 2> "$out/proxy-$pow.log" &
  pid=$!
  for _ in $(seq 300); do [ -s "$work/keys-$pow/sip.onion" ] && break; sleep 0.5; done
  onion=$(cut -d: -f1 < "$work/keys-$pow/sip.onion")
  [ -n "$onion" ] || { echo "the onion service did not come up" >&2; tail "$out/proxy-$pow.log" >&2; exit 1; }
  python3 scripts/onion_flood.py --socks "$socks" --onion "$onion" --port 5060 \
    --baseline "$base" --flood "$flood" --workers "$workers" --tag "pow-$pow" \
    --json "$out/pow-$pow.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done

python3 - "$out" <<'PY' | tee "$out/table.md"
import json, sys
out = sys.argv[1]
rows = [json.load(open(f"{out}/pow-{p}.json")) for p in ("true", "false")]
print("| onion service | real client alone: median / worst | under the flood: median / worst | real client failures under the flood | flood: connections/s (failed) |")
print("|---|---:|---:|---:|---:|")
for r, name in zip(rows, ("PoW defence on", "PoW defence off")):
    b, u = r["baseline"], r["under_flood"]
    fmt = lambda x: "-" if x is None else f"{x:.2f} s"
    print(f"| {name} | {fmt(b['median_s'])} / {fmt(b['max_s'])} | {fmt(u['median_s'])} / {fmt(u['max_s'])} "
          f"| {u['failed']} of {u['probes']} | {r['flood_rate_per_s']}/s ({r['flood_failures']}) |")
PY
echo "results: $out"
