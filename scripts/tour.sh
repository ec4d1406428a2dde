#!/usr/bin/env bash
# A tour of the parts below the demo:
#   1. the SIP parser on the 49 RFC 4475 torture messages;
#   2. a domain key pair and a PrivaSIP token that only its proxy opens;
#   3. privasip proxy with Digest and its SQLite store: SIPp registers a
#      user, then places 200 calls through the proxy (INVITE, ACK, BYE).
# Installs SIPp (Debian package sip-tester) if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step "build privasip (release)"
cargo build --release --locked -p privasip
bin=target/release/privasip
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

step "1. privasip parse testdata/rfc4475/*.dat"
# 1 = some messages are invalid, as RFC 4475 intends.
set +e
"$bin" parse testdata/rfc4475/*.dat | sed 's|testdata/rfc4475/||'
code=${PIPESTATUS[0]}
set -e
[ "$code" -eq 1 ] || { echo "unexpected exit status $code" >&2; exit 1; }

step "2. PrivaSIP identity: a key pair for b.example, a token for bob bound to one Call-ID"
"$bin" keygen --scheme hpke --out "$work/keys"
token=$("$bin" identity encrypt --key "$work/keys/hpke.pub" --context call-1 bob)
echo "token: $token"
echo -n "opened by the proxy's key: "
"$bin" identity decrypt --key "$work/keys/hpke.key" --context call-1 "$token"
echo -n "moved to another call: "
"$bin" identity decrypt --key "$work/keys/hpke.key" --context call-2 "$token" 2>&1 || true

step "3. privasip proxy with Digest and a SQLite store; SIPp as the user agents"
ensure_deb sip-tester
cat > "$work/proxy.toml" <<TOML
[proxy]
domains = ["b.example"]
sent_by = "127.0.0.1:25160"
authenticate = true
digest = ["MD5"]        # SIPp answers only MD5
[relay]
allow_networks = ["127.0.0.0/8"]   # the users' phones are on loopback
[listen]
udp = "127.0.0.1:25160"
[store]
path = "privasip.db"
TOML
echo zanzibar | "$bin" user add --config "$work/proxy.toml" bob
echo wonderland | "$bin" user add --config "$work/proxy.toml" alice
"$bin" proxy --config "$work/proxy.toml" 2> "$work/proxy.log" &
pids+=($!)
sleep 0.5
sipp_common=(-nostdin -timeout 60s -trace_err -default_behaviors all,-abortunexp)
echo "bob registers (401, then 200 with Digest):"
(cd "$work" && sipp -sf "$OLDPWD/testdata/sipp/reg_auth.xml" -s b.example -key user bob \
  -au bob -ap zanzibar -i 127.0.0.1 -p 25170 127.0.0.1:25160 -m 1 "${sipp_common[@]}" >/dev/null) \
  && echo "  registered"
(cd "$work" && sipp -sf "$OLDPWD/testdata/sipp/uas_rr.xml" -i 127.0.0.1 -p 25170 -m 200 \
  -nostdin -timeout 60s >/dev/null 2>&1) &
pids+=($!)
sleep 0.5
echo "alice (authenticated with 407) calls bob@b.example 200 times:"
(cd "$work" && sipp -sf "$OLDPWD/testdata/sipp/uac_auth.xml" -s bob -key user alice \
  -key domain b.example -key to_domain b.example -au alice -ap wonderland \
  -i 127.0.0.1 -p 25190 127.0.0.1:25160 -m 200 -r 100 "${sipp_common[@]}" > "$work/uac.out") \
  || { tail -40 "$work/uac.out"; exit 1; }
grep -E "Successful call|Failed call" "$work/uac.out" | sed 's/  */ /g'
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
echo "accounting in the proxy's store (the only place the real caller is written):"
python3 - "$work/privasip.db" <<'PY'
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute(
    "select caller, callee, count(*), sum(ended_unix is not null) from calls group by 1, 2").fetchall()
for caller, callee, n, ended in rows:
    print(f"  {caller} -> {callee}: {n} calls, {ended} ended with BYE")
PY
step "done"
