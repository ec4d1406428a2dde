#!/usr/bin/env bash
# What hostile traffic costs a privasip proxy (SECURITY.md, issue 17).
# `bash scripts/bench-hostile.sh --help` says what it measures.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

usage() {
  cat <<'EOF'
Usage: bash scripts/bench-hostile.sh [--quick]

Starts a release privasip proxy on 127.0.0.1:36060 (domain a.example,
Digest on, an HPKE key, user bob, every limit at its default) and runs
scripts/hostile.py against it; everything stays on loopback.

  forged-token flood   REGISTERs whose To user is a well-formed PrivaSIP
                       token for the proxy's key, sealed for another
                       dialog (so opening it is public-key work that
                       fails), 20 000 a second for 30 s from 127.0.0.1
                       over 8 sockets. Reported: proxy CPU (user+system
                       from /proc) per forged request, and 10 Digest
                       REGISTERs of the real user bob from 127.0.0.2
                       during the flood, each timed to its 200.
  junk state           100 000 requests that each try to make state (new
                       user names, Call-IDs, branches, onion names, stray
                       responses, malformed ones) from 50 000 loopback
                       sources, plus 2 000 TCP connections, twice; the
                       proxy's RSS before, after each pass, and 40 s later
                       (server transactions last 32 s).

Options:
  --quick   5 s of flood at 5 000/s, 10 000 junk requests, 200 TCP
  -h        this text

Environment: PRIVASIP_BIN=PATH uses that binary instead of building;
BENCH_OUT=DIR (default runs/bench-hostile-DATE).
EOF
}

quick=false
for a in "$@"; do
  case "$a" in
    --quick) quick=true ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

ensure_deb python3
if [ -z "${PRIVASIP_BIN:-}" ]; then
  step "release build"
  cargo build --release --locked -p privasip
  PRIVASIP_BIN=$PWD/target/release/privasip
fi
out=${BENCH_OUT:-runs/bench-hostile-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=36060
"$PRIVASIP_BIN" keygen --scheme hpke --out "$work/keys" >/dev/null
cat > "$work/proxy.toml" <<TOML
[proxy]
domains = ["a.example"]
sent_by = "127.0.0.1:$port"
authenticate = true
digest = ["MD5"]
[listen]
udp = "127.0.0.1:$port"
tcp = "127.0.0.1:$port"
[privasip]
keys = ["keys/hpke.key"]
[store]
path = "proxy.db"
TOML
echo zanzibar | "$PRIVASIP_BIN" user add --config "$work/proxy.toml" bob >/dev/null
token=$("$PRIVASIP_BIN" identity encrypt --key "$work/keys/hpke.pub" --context elsewhere bob)
(cd "$work" && exec "$PRIVASIP_BIN" proxy --config proxy.toml) 2> "$out/proxy.log" &
pid=$!
for _ in $(seq 100); do
  ss -Hlnu "sport = :$port" | grep -q . && break
  sleep 0.1
done

if $quick; then flood=(--rate 5000 --secs 5 --real 3 --every 1); junk=(--count 10000 --tcp 200 --settle 35)
else flood=(--rate 20000 --secs 30 --real 10 --every 2.5); junk=(--count 100000 --tcp 2000 --settle 40); fi

step "forged-token flood"
python3 scripts/hostile.py flood --port $port --pid $pid --token "$token" \
  --domain a.example --user bob --password zanzibar "${flood[@]}" | tee "$out/flood.json"
step "junk state"
python3 scripts/hostile.py junk --port $port --pid $pid "${junk[@]}" | tee "$out/junk.json"
kill -0 "$pid" || { echo "the proxy died" >&2; exit 1; }
echo "results in $out"
