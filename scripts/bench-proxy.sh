#!/usr/bin/env bash
# Proxy throughput and CPU per call: SIPp uac -> PROXY -> SIPp uas over
# UDP on loopback, INVITE/ACK/BYE all through the proxy (Record-Route),
# privasip (release build) and Kamailio (the anchor, stateful relay,
# testdata/kamailio/relay.cfg) measured in the same run at the same rates.
#
#   bash scripts/bench-proxy.sh [SECONDS] [RATES...]     default: 10 1000 2000 3000
#   PRIVASIP_ONLY=1 bash scripts/bench-proxy.sh ...      privasip alone
#
# A rate passes when SIPp's uac exits 0 (every call succeeded). CPU per
# call is the proxy's user+system time over the run divided by the calls.
#
# Status: experimental. The Kamailio side uses the tests' minimal relay
# configuration, which loses calls even at 500 calls/s here, far from the
# anchor measured with a tuned configuration (BENCHMARKS.md says more);
# do not quote its Kamailio rows as Kamailio's capacity.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_deb sip-tester kamailio
secs=${1:-10}; shift || true
rates=("${@:-1000 2000 3000}")
[ $# -gt 0 ] || rates=(1000 2000 3000)

step "build privasip (release)"
cargo build --release --locked -p privasip
work=$(mktemp -d)
trap 'pkill -KILL -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
tick=$(getconf CLK_TCK)

# cpu_ticks PATTERN: user+system ticks of every process whose command line matches.
cpu_ticks() {
  local total=0 p
  for p in $(pgrep -f "$1"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

run_point() { # NAME RATE
  local name=$1 rate=$2 calls=$(( $2 * secs ))
  (cd "$work" && exec sipp -sf "$OLDPWD/testdata/sipp/uas_rr.xml" -i 127.0.0.1 -p 35070 -m "$calls" \
     -nostdin -timeout $((secs + 40))s -buff_size 1048576 >/dev/null 2>&1) &
  local uas=$!
  sleep 0.5
  local before; before=$(cpu_ticks "$pattern")
  set +e
  (cd "$work" && timeout $((secs + 40)) sipp -sf "$OLDPWD/testdata/sipp/uac_rr.xml" -s service -key to_domain 127.0.0.1:35070 \
     -i 127.0.0.1 -p 35090 -rsa 127.0.0.1:35060 127.0.0.1:35060 -m "$calls" -r "$rate" \
     -nostdin -timeout $((secs + 30))s -buff_size 1048576 \
     -default_behaviors all,-abortunexp > "$work/uac-$name-$rate.out" 2>&1)
  local code=$?
  set -e
  local after; after=$(cpu_ticks "$pattern")
  kill "$uas" 2>/dev/null || true; wait "$uas" 2>/dev/null || true
  local us_per_call=$(( (after - before) * 1000000 / tick / calls ))
  local ok; ok=$(grep -E "Successful call" "$work/uac-$name-$rate.out" | awk -F'|' '{gsub(/ /,"",$3); print $3}' || true)
  local verdict=pass; [ "$code" -eq 0 ] || verdict="FAIL (exit $code)"
  printf '| %s | %s | %s | %s/%s | %s us |\n' "$name" "$rate" "$verdict" "${ok:-0}" "$calls" "$us_per_call"
}

results=()
step "privasip proxy"
cat > "$work/privasip.toml" <<TOML
[proxy]
domains = ["bench.example"]
sent_by = "127.0.0.1:35060"
[listen]
udp = "127.0.0.1:35060"
[store]
path = "bench.db"
TOML
target/release/privasip proxy --config "$work/privasip.toml" 2>/dev/null &
proxy=$!; sleep 0.5
pattern="$work/privasip.toml"
for r in "${rates[@]}"; do results+=("$(run_point privasip "$r")"); echo "${results[-1]}"; done
kill "$proxy"; wait "$proxy" 2>/dev/null || true

if [ -n "${PRIVASIP_ONLY:-}" ]; then printf '%s\n' "${results[@]}"; exit 0; fi
step "Kamailio $(kamailio -v 2>/dev/null | head -1 | awk '{print $2}') stateful relay, 2 children"
sed "s/@PORT@/35060/g; s|@NEXT@|sip:127.0.0.1:35070|" testdata/kamailio/relay.cfg > "$work/kamailio.cfg"
mkdir -p "$work/kamrun"
kamailio -f "$work/kamailio.cfg" -DD -E -n 2 -m 512 -M 16 -Y "$work/kamrun" 2>/dev/null &
sleep 1
pattern="$work/kamailio.cfg"
for r in "${rates[@]}"; do results+=("$(run_point kamailio "$r")"); echo "${results[-1]}"; done
pkill -KILL -f "$work/kamailio.cfg" || true

step "table for BENCHMARKS.md ($secs s per point, $(nproc) cores)"
echo "| proxy | calls/s | result | successful calls | proxy CPU per call |"
echo "|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
