#!/usr/bin/env bash
# privasip under load for half an hour: `bash scripts/soak.sh --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

usage() {
  cat <<'EOF'
Usage: bash scripts/soak.sh [--minutes N] [--rate R] [--junk R] [--no-tor]

Runs one privasip proxy (release build) under steady load for N minutes
(default 30), everything on this machine's cores and on loopback:

  calls          SIPp uac -> proxy -> SIPp uas over UDP, Record-Route,
                 so ACK and BYE cross the proxy too (testdata/sipp/
                 uac_rr.xml, uas_rr.xml), at R calls/s
  registrations  SIPp REGISTERs with Digest (401, then 200) for 10 000
                 users, at R/s
  junk           scripts/hostile.py steady: 200 requests/s (--junk) from
                 many loopback sources, each trying to make state (new
                 users, Call-IDs, onion names, stray responses, garbage)
  Tor            a private Tor network (privasip testnet) carrying the
                 paper's topology from doc/deploy.md (Proxy A, Proxy B
                 behind an onion service, Bob behind Tor): Alice places
                 a PrivaSIP-2 call to Bob every 15 s (--no-tor: none)

R is half the highest rate that passes under the soak's own conditions:
a ramp of 10-s points before the soak, each running calls and
registrations together at the same rate with the junk and the Tor load
already going; a point passes when neither SIPp fails a call or exits
non-zero. --rate skips the ramp.

Every 10 s it samples each proxy's RSS, open file descriptors and CPU
time. At the end it prints, and writes to DIR/summary.md:
failed calls and registrations (must be 0), Tor calls answered and
failed, RSS and descriptors at the start and end of the soak (must be
flat), and INVITE->180 through the proxy per minute (p50, p90, p99,
max: a 5-s tcpdump capture each minute, scripts/sip_latency.py; SIPp's
own timer ticks in milliseconds); and draws DIR/rss.svg, DIR/fds.svg and
DIR/latency.svg (gnuplot).

Options:
  --minutes N   length of the soak (default 30)
  --rate R      calls/s and registrations/s, skipping the ramp
  --junk R      junk requests/s (default 200)
  --no-tor      without the private Tor network
  -h, --help    this text

Environment:
  PRIVASIP_BIN=PATH   use this binary, skip `cargo build`
  SOAK_OUT=DIR        where results go (default runs/soak-DATE)
EOF
}

minutes=30 rate="" junk=200 tor=1
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=${2:?--minutes needs a number}; shift ;;
    --rate) rate=${2:?--rate needs a number}; shift ;;
    --junk) junk=${2:?--junk needs a number}; shift ;;
    --no-tor) tor=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
for v in "$minutes" "$junk" ${rate:+"$rate"}; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "numbers must be whole and positive: $v" >&2; exit 2; }
done

source scripts/lib.sh
ensure_deb sip-tester tor tcpdump python3 gnuplot-nox

PROXY=36060 UAS=36070 UAC=36090 REG=36095
domain=soak.example
users=10000
secs=$((minutes * 60))

work=${SOAK_OUT:-$repo/runs/soak-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$work"
work=$(cd "$work" && pwd)

started=()
cleanup() {
  local p
  for p in "${started[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${started[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  # SIPp started by the background soak jobs, which keep their own lists.
  pkill -KILL -f "^sipp .* -p ($UAS|$UAC|$REG) " 2>/dev/null || true
  if [ -f "$work/net/testnet.toml" ]; then "$privasip" testnet down --dir "$work/net" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

release_copy "$work"
scen=$repo/testdata/sipp



udp_bound() { [ -n "$(ss -Hlnu "sport = :$1" 2>/dev/null)" ]; }

# ------------------------------------------------------------ the Tor side

tor_a="" tor_b=""
start_tor_side() {
  step "the paper's topology on a private Tor network (doc/deploy.md)"
  "$privasip" testnet up --dir "$work/net" > "$work/testnet.log" 2>&1
  local d=$work/deploy
  mkdir -p "$d"
  cp examples/proxy-a-tor.toml examples/proxy-b-onion.toml examples/ua-alice.toml \
    examples/ua-bob-tor.toml "$d/"
  sed -i "s|/tmp/privasip-net|$work/net|" "$d"/*.toml
  (
    cd "$d"
    "$privasip" keygen --scheme hpke --out keys-a >/dev/null
    "$privasip" keygen --scheme hpke --out keys-b >/dev/null
    "$privasip" keygen --scheme peer --out keys-peer >/dev/null
    echo wonderland | "$privasip" user add --config proxy-a-tor.toml alice
    echo zanzibar | "$privasip" user add --config proxy-b-onion.toml bob
  )
  (cd "$d" && exec "$privasip" proxy --config proxy-b-onion.toml) > "$d/proxy-b.log" 2>&1 &
  tor_b=$!; started+=("$tor_b")
  wait_until 150 test -s "$d/keys-b/sip.onion" || { echo "Proxy B published no onion service" >&2; exit 1; }
  local onion; onion=$(cat "$d/keys-b/sip.onion")
  sed -i "s/REPLACE-WITH-B-ADDRESS.onion/$onion/" "$d/proxy-a-tor.toml"
  sed -i "s/REPLACE-WITH-PROXY-B.onion/$onion/" "$d/ua-bob-tor.toml"
  (cd "$d" && exec "$privasip" proxy --config proxy-a-tor.toml) > "$d/proxy-a.log" 2>&1 &
  tor_a=$!; started+=("$tor_a")
  (cd "$d" && PRIVASIP_PASSWORD=zanzibar exec "$privasip" ua --config ua-bob-tor.toml listen) \
    > "$d/bob.out" 2> "$d/bob.log" &
  started+=("$!")
  wait_until 150 grep -q "registered for" "$d/bob.log" || { echo "Bob did not register" >&2; exit 1; }
  wait_until 30 udp_bound 5060 || { echo "Proxy A did not start" >&2; exit 1; }
}

# Alice calls Bob every 15 s until the file STOP appears; one line per
# call in tor_calls.log.
tor_caller() {
  local d=$work/deploy
  while [ ! -e "$work/STOP" ]; do
    local t0=$SECONDS out
    out=$(cd "$d" && PRIVASIP_PASSWORD=wonderland timeout 60 "$privasip" ua --config ua-alice.toml \
            call sip:bob@b.example --register --hold 1 2>>"$d/alice.log" || true)
    if grep -q "answered (200)" <<<"$out"; then
      echo "$(date +%s) answered $(grep -o '180 [0-9.]* ms' <<<"$out" | head -1)" >> "$work/tor_calls.log"
    else
      echo "$(date +%s) failed $(tr '\n' ' ' <<<"$out")" >> "$work/tor_calls.log"
    fi
    local left=$((15 - (SECONDS - t0)))
    [ $left -le 0 ] || sleep "$left"
  done
}

# ------------------------------------------------------- the soaked proxy

start_proxy() {
  step "the proxy under soak: 127.0.0.1:$PROXY, $users users with Digest"
  make_sipp_users "$work/users" "$users" "$domain" "$privasip" "$PROXY"
  mkdir -p "$work/proxy"
  cp "$work/users/users.db" "$work/proxy/proxy.db"
  cat > "$work/proxy/privasip.toml" <<TOML
[proxy]
domains = ["$domain"]
sent_by = "127.0.0.1:$PROXY"
authenticate = true
# SIPp speaks MD5 only.
digest = ["MD5"]

# SIPp is a trusted peer: its calls name the uas by IP address and are
# relayed without Digest; its REGISTERs are challenged like anyone's.
[relay]
trusted = ["127.0.0.1"]
allow_networks = ["127.0.0.0/8"]

[listen]
udp = "127.0.0.1:$PROXY"

[store]
path = "proxy.db"
TOML
  (cd "$work/proxy" && exec "$privasip" proxy --config privasip.toml) > "$work/proxy/proxy.log" 2>&1 &
  proxy=$!; started+=("$proxy")
  wait_until 20 udp_bound $PROXY || { echo "the proxy did not start" >&2; tail "$work/proxy/proxy.log" >&2; exit 1; }
}

# calls DIR RATE SECS [SIPP ARGS...] : a uas and a uac at RATE for SECS;
# the uac's exit status.
calls() {
  local dir=$1 r=$2 s=$3; shift 3
  mkdir -p "$dir"
  (cd "$dir" && exec sipp -sf "$scen/uas_rr.xml" -p $UAS -t u1 -nostdin -trace_err) > "$dir/uas.out" 2>&1 &
  local uas=$!
  started+=("$uas")
  wait_until 10 udp_bound $UAS || { echo "the SIPp uas did not start" >&2; return 1; }
  local rc=0
  (cd "$dir" && exec sipp "127.0.0.1:$UAS" -sf "$scen/uac_rr.xml" -s service -key to_domain "127.0.0.1:$UAS" \
     -rsa "127.0.0.1:$PROXY" -p $UAC -t u1 -r "$r" -m $((r * s)) -timeout "$((s + 30))s" -nostdin \
     -trace_err -trace_stat -stf calls.csv "$@") > "$dir/uac.out" 2>&1 || rc=$?
  kill -TERM "$uas" 2>/dev/null || true
  wait "$uas" 2>/dev/null || true
  wait_until 10 bash -c "! ss -Hlnu 'sport = :$UAS' | grep -q ." || true
  return $rc
}

# registrations DIR RATE SECS [SIPP ARGS...] : Digest REGISTERs; exit status.
registrations() {
  local dir=$1 r=$2 s=$3; shift 3
  mkdir -p "$dir"
  (cd "$dir" && exec sipp "127.0.0.1:$PROXY" -sf "$scen/reg.xml" -inf "$work/users/users.csv" \
     -key domain "$domain" -p $REG -t u1 -r "$r" -m $((r * s)) -timeout "$((s + 30))s" -nostdin \
     -trace_err -trace_stat -stf regs.csv "$@") > "$dir/uac.out" 2>&1
}

# sample PID... : "rss_kib fds cpu_ticks" per PID, space separated
sample() {
  local p
  for p in "$@"; do
    if alive "$p"; then
      printf '%s %s %s ' "$(awk '/^VmRSS:/{print $2}' "/proc/$p/status")" \
        "$(ls "/proc/$p/fd" | wc -l)" "$(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat")"
    else
      printf 'NA NA NA '
    fi
  done
  echo
}

# ----------------------------------------------------------------- the run

rm -f "$work/STOP"
if [ "$tor" = 1 ]; then
  start_tor_side
  tor_caller & started+=("$!")
fi
start_proxy
python3 scripts/hostile.py steady --port $PROXY --rate "$junk" --secs $((secs + 900)) > "$work/junk.json" 2>&1 &
junk_pid=$!; started+=("$junk_pid")

if [ -z "$rate" ]; then
  step "ramp: the highest rate of calls + registrations that passes with the junk and Tor running"
  best=0
  for r in 250 500 750 1000 1500 2000 2500 3000 4000 5000; do
    calls "$work/ramp/$r" "$r" 10 & c=$!
    registrations "$work/ramp/$r/regs" "$r" 10 & g=$!
    ok=1
    wait "$c" || ok=0
    wait "$g" || ok=0
    if [ $ok = 1 ]; then
      best=$r; echo "  $r calls/s + $r registrations/s: passed"
    else
      echo "  $r calls/s + $r registrations/s: failed"; break
    fi
  done
  [ "$best" -gt 0 ] || { echo "not even 250 calls/s passed; see $work/ramp" >&2; exit 1; }
  rate=$((best / 2))
fi
echo "soak: $rate calls/s and $rate registrations/s for $minutes min, junk $junk/s, Tor $([ $tor = 1 ] && echo on || echo off)"

step "soak ($minutes min)"
pids=("$proxy" ${tor_a:+"$tor_a"} ${tor_b:+"$tor_b"})
echo "t_s proxy_rss_kib proxy_fds proxy_ticks a_rss_kib a_fds a_ticks b_rss_kib b_fds b_ticks" > "$work/samples.txt"
t0=$SECONDS
(
  while [ ! -e "$work/STOP" ]; do
    echo "$((SECONDS - t0)) $(sample "${pids[@]}")" >> "$work/samples.txt"
    sleep 10
  done
) & started+=("$!")
# INVITE->180 on the wire: 5 s of the proxy's traffic each minute.
echo "minute invites p50_us p90_us p99_us max_us" > "$work/latency.txt"
(
  m=1
  while [ ! -e "$work/STOP" ]; do
    sleep $((t0 + 60 * m - 30 - SECONDS > 0 ? t0 + 60 * m - 30 - SECONDS : 0))
    [ ! -e "$work/STOP" ] || break
    cap=$work/latency-$m.pcap
    timeout -s INT 5 tcpdump -i lo -n -s 0 -B 32768 --immediate-mode --time-stamp-precision=nano \
      -w "$cap" "udp port $PROXY" > /dev/null 2>&1 || true
    python3 scripts/sip_latency.py "$cap" --proxy-port $PROXY | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sys.argv[1], d["with_180"], d["p50_us"], d["p90_us"], d["p99_us"], d["max_us"])' "$m" >> "$work/latency.txt" || true
    rm -f "$cap"
    m=$((m + 1))
  done
) & started+=("$!")
calls_rc=0 regs_rc=0
calls "$work/soak/calls" "$rate" "$secs" -fd 60 & calls_pid=$!
registrations "$work/soak/regs" "$rate" "$secs" -fd 60 & regs_pid=$!
wait "$calls_pid" || calls_rc=$?
wait "$regs_pid" || regs_rc=$?
touch "$work/STOP"
kill -TERM "$junk_pid" 2>/dev/null || true
wait "$junk_pid" 2>/dev/null || true
echo "$((SECONDS - t0)) $(sample "${pids[@]}")" >> "$work/samples.txt"

step "results"
python3 - "$work" "$calls_rc" "$regs_rc" "$rate" "$minutes" "$junk" <<'PY'
import csv, glob, json, os, sys
work, calls_rc, regs_rc, rate, minutes, junk = sys.argv[1:]

def last_row(path):
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    return rows[-1] if rows else {}

def stat(dir_, name):
    files = glob.glob(os.path.join(dir_, name))
    return last_row(files[0]) if files else {}

calls = stat(f"{work}/soak/calls", "calls.csv")
regs = stat(f"{work}/soak/regs", "regs.csv")
num = lambda row, k: int(row.get(k, "0") or 0)

lat_rows = []
for line in open(f"{work}/latency.txt").read().splitlines()[1:]:
    f = line.split()
    if len(f) == 6 and f[2] != "None":
        lat_rows.append((int(f[0]), int(f[1]), *(float(x) / 1000 for x in f[2:])))

samples = [l.split() for l in open(f"{work}/samples.txt").read().splitlines()[1:] if l.strip()]
def col(i):
    return [s[i] for s in samples if len(s) > i and s[i] != "NA"]
def first_last(i):
    c = col(i)
    return (c[0], c[-1]) if c else ("-", "-")

tor_lines = open(f"{work}/tor_calls.log").read().splitlines() if os.path.exists(f"{work}/tor_calls.log") else []
tor_ok = sum(" answered" in l for l in tor_lines)
tor_failed = len(tor_lines) - tor_ok
junk_sent = "-"
try:
    junk_sent = json.loads(open(f"{work}/junk.json").read().strip().splitlines()[-1])["junk_sent"]
except Exception:
    pass

rss0, rss1 = first_last(1)
fd0, fd1 = first_last(2)
out = [
    f"# Soak: {minutes} min at {rate} calls/s and {rate} Digest registrations/s, junk {junk}/s",
    "",
    "| figure | value |",
    "|---|---:|",
    f"| calls placed / succeeded / failed | {num(calls, 'TotalCallCreated')} / {num(calls, 'SuccessfulCall(C)')} / {num(calls, 'FailedCall(C)')} |",
    f"| registrations / succeeded / failed | {num(regs, 'TotalCallCreated')} / {num(regs, 'SuccessfulCall(C)')} / {num(regs, 'FailedCall(C)')} |",
    f"| SIPp exit status, calls / registrations | {calls_rc} / {regs_rc} |",
    f"| Tor calls (Alice -> A -> onion B -> Bob) answered / failed | {tor_ok} / {tor_failed} |",
    f"| junk requests sent | {junk_sent} |",
    f"| proxy RSS, first / last sample | {rss0} / {rss1} KiB |",
    f"| proxy open descriptors, first / last sample | {fd0} / {fd1} |",
]
if lat_rows:
    p50 = sorted(r[2] for r in lat_rows)[len(lat_rows) // 2]
    worst99 = max(r[4] for r in lat_rows)
    out.append(f"| INVITE->180, median of per-minute p50 / worst per-minute p99 | {p50:.2f} / {worst99:.2f} ms |")
out += ["", "Per minute (INVITE->180 on the wire, 5 s of each minute, ms):", "", "| minute | calls | p50 | p90 | p99 | max |", "|---:|---:|---:|---:|---:|---:|"]
out += [f"| {m} | {n} | {a:.2f} | {b:.2f} | {c:.2f} | {d:.2f} |" for m, n, a, b, c, d in lat_rows]
text = "\n".join(out) + "\n"
open(f"{work}/summary.md", "w").write(text)
print(text)
PY

gnuplot <<GP
set terminal svg size 800,360 dynamic font "DejaVu Sans,12"
set datafile missing "NA"
set key top left
set grid
set xlabel "minutes into the soak"
set output "$work/rss.svg"
set title "RSS over the soak ($rate calls/s + $rate registrations/s, junk $junk/s)"
set ylabel "MiB"
set yrange [0:*]
plot "$work/samples.txt" using (\$1/60):(\$2/1024) with lines lw 2 title "proxy under soak", \
     "" using (\$1/60):(\$5/1024) with lines title "Proxy A (Tor)", \
     "" using (\$1/60):(\$8/1024) with lines title "Proxy B (onion)"
set output "$work/fds.svg"
set title "Open file descriptors over the soak"
set ylabel "descriptors"
plot "$work/samples.txt" using (\$1/60):3 with lines lw 2 title "proxy under soak", \
     "" using (\$1/60):6 with lines title "Proxy A (Tor)", \
     "" using (\$1/60):9 with lines title "Proxy B (onion)"
set output "$work/latency.svg"
set title "INVITE->180 through the proxy under soak, per minute"
set xlabel "minute"
set ylabel "ms"
set datafile missing "None"
plot "$work/latency.txt" using 1:(\$3/1000) with linespoints title "p50", \
     "" using 1:(\$4/1000) with linespoints title "p90", \
     "" using 1:(\$5/1000) with linespoints title "p99"
GP
echo "plots: $work/rss.svg $work/fds.svg $work/latency.svg"
