#!/usr/bin/env bash
# privasip and Kamailio side by side, same SIPp scenarios, same run.
# `bash scripts/bench-proxy.sh --help` says what it measures.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

usage() {
  cat <<'EOF'
Usage: bash scripts/bench-proxy.sh [--quick] [--only privasip|kamailio|kamailio-db] [--secs N]

Measures privasip (release build, one thread) and Kamailio 5.6 (the
reference: testdata/kamailio/proxy.cfg, 4 children, -m 2048) in one run,
with the same SIPp scenarios, on 127.0.0.1 ports 35060 (proxy), 35070
(SIPp uas) and 35090 (SIPp uac). Each test runs for one proxy, then the
other, before the next test starts.

  calls, UDP and TCP   SIPp uac -> proxy -> SIPp uas, Record-Route, so
                       ACK and BYE cross the proxy too (testdata/sipp/
                       uac_rr.xml, uas_rr.xml; TCP: one connection per
                       side). Rates climb until the first failure. A rate
                       passes when the uac exits 0, no call failed, every
                       call succeeded and the median 1-s call rate reached
                       97% of the target. A failing rate is retried once
                       on a freshly started proxy (the machine is shared).
  CPU per call         user+system time of the proxy's processes (from
                       /proc) over each point, divided by the calls.
  INVITE->180          at 200 calls/s, UDP and TCP: from the INVITE
                       reaching the proxy's port to the 180 leaving it
                       towards the uac, on a tcpdump capture with ns
                       timestamps (scripts/sip_latency.py); p50 and p99.
  REGISTER/s           testdata/sipp/reg.xml over UDP, 10 000 users from
                       a generated -inf file, without Digest and with
                       Digest (401, then REGISTER with credentials, 200;
                       MD5, as SIPp speaks no SHA-256); highest rate with
                       0 failures, same pass rule as calls.
  memory/registration  proxy RSS growth after N distinct users registered
                       (no Digest), divided by N.
  memory/INVITE        proxy RSS growth with calls held open: a uas that
                       waits before its 200 keeps rate x secs INVITE
                       transactions (one server + one client transaction
                       each) open at once; peak growth divided by that.
                       Kamailio: RSS summed over its processes counts its
                       shared memory once per process that touched it, so
                       PSS (each shared page split between its users) is
                       reported too and is the fairer number.

Options:
  --quick        a smoke run: 4-s points, calls at 100 and 300/s,
                 REGISTER at 500 and 2000/s (Digest 500 and 1000/s),
                 500 calls/s held open
  --only NAME    measure privasip, kamailio or kamailio-db alone
  --secs N       seconds per point (default 10; --quick 4)
  -h, --help     this text

Environment:
  PRIVASIP_BIN=PATH     use this binary, skip `cargo build`
  BENCH_OUT=DIR         where results go (default runs/bench-proxy-DATE)
  BENCH_CALL_RATES="…"  calls/s to try (default 1000 2000 … 8000)
  BENCH_REG_RATES="…"   REGISTER/s without Digest (default 2000 5000
                        10000 15000 20000 25000 30000 40000 50000)
  BENCH_AUTH_RATES="…"  registrations/s with Digest (default 1000 2000
                        5000 10000 15000 20000 25000 30000)
  BENCH_USERS=N         users (default 10000)
  BENCH_HOLD_RATE=N     calls/s for the memory/INVITE test (default 1000)
  BENCH_TESTS="…"       a subset of: calls-udp calls-tcp latency reg
                        reg-digest mem-reg mem-invite (default: all)
  BENCH_HIDING=all      topology hiding on every link: privasip's
                        [proxy] topology_hiding = "all", Kamailio's topoh
                        (default: neither; privasip's default hides on
                        Tor links only, and this bench has none)
  BENCH_QUIET_WAIT=S    before each point, wait up to S seconds for the
                        machine to fall below 25% busy (default 60; 0 off)
  BENCH_KEEP_PCAP=1     keep the captures
  BENCH_KAMAILIO_DB=1   also measure kamailio-db: Kamailio with its
                        location in SQLite (WAL) in write-through mode
                        (usrloc db_mode 1: each REGISTER's change is
                        written before its 200, as privasip's is), with
                        one worker (its db_sqlite sets no busy timeout);
                        only the REGISTER tests tell it apart

Results: DIR/results.jsonl (one record per point), DIR/summary.csv,
DIR/table.md (markdown tables for BENCHMARKS.md, also printed at the
end) and, per point, the SIPp statistics and error logs and the proxy logs.
EOF
}

quick=0 only="" secs=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --only) only=${2:?--only needs privasip, kamailio or kamailio-db}; shift ;;
    --secs) secs=${2:?--secs needs a number}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
case $only in ""|privasip|kamailio|kamailio-db) ;; *) echo "--only takes privasip, kamailio or kamailio-db" >&2; exit 2 ;; esac
[[ ${secs:-1} =~ ^[1-9][0-9]*$ ]] || { echo "--secs takes a whole number of seconds" >&2; exit 2; }

if [ "$quick" = 1 ]; then
  secs=${secs:-4}
  call_rates=${BENCH_CALL_RATES:-100 300}
  reg_rates=${BENCH_REG_RATES:-500 2000}
  auth_rates=${BENCH_AUTH_RATES:-500 1000}
  hold_rate=${BENCH_HOLD_RATE:-500}
else
  secs=${secs:-10}
  call_rates=${BENCH_CALL_RATES:-1000 2000 3000 4000 5000 6000 7000 8000}
  reg_rates=${BENCH_REG_RATES:-2000 5000 10000 15000 20000 25000 30000 40000 50000}
  auth_rates=${BENCH_AUTH_RATES:-1000 2000 5000 10000 15000 20000 25000 30000}
  hold_rate=${BENCH_HOLD_RATE:-1000}
fi
users=${BENCH_USERS:-10000}
tests=" ${BENCH_TESTS:-calls-udp calls-tcp latency reg reg-digest mem-reg mem-invite} "
want() { [[ $tests == *" $1 "* ]]; }
quiet_wait=${BENCH_QUIET_WAIT:-60}
hiding=${BENCH_HIDING:-tor}
case $hiding in tor|all) ;; *) echo "BENCH_HIDING takes all (or tor, the default)" >&2; exit 2 ;; esac
latency_rate=200
users_rate=2000              # REGISTER/s while filling the registrar
domain=bench.example
PROXY=35060 UAS=35070 UAC=35090
proxies=(privasip kamailio)
[ "${BENCH_KAMAILIO_DB:-0}" = 1 ] && proxies+=(kamailio-db)
[ -z "$only" ] || proxies=("$only")

source scripts/lib.sh
ensure_deb sip-tester kamailio tcpdump python3
[[ " ${proxies[*]} " != *" kamailio-db "* ]] || ensure_deb kamailio-sqlite-modules

root=""; nice=()
if [ "$(id -u)" -ne 0 ]; then root=sudo; else nice=(nice -n -10); fi

work=${BENCH_OUT:-$repo/runs/bench-proxy-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
: > "$work/results.jsonl"

# Every process we start, by PID; all of them go when the script ends.
started=()
cleanup() {
  local p
  for p in "${started[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${started[@]}"; do alive "$p" && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${started[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  [ -z "${tcpdump_pid:-}" ] || $root kill -KILL "$tcpdump_pid" 2>/dev/null || true
  [ -z "${work:-}" ] || rm -rf "$work/bin"   # the copy of privasip (its checksum is in results.jsonl)
}
trap cleanup EXIT
trap 'exit 130' INT TERM

release_copy "$work"
privasip_version=$("$privasip" --version | awk '{print $2}')
kamailio_version=$(kamailio -v 2>/dev/null | awk 'NR==1{print $3}')
tick=$(getconf CLK_TCK)
privasip_sha256=$(sha256sum "$privasip" | cut -c1-64)
scen=$repo/testdata/sipp

# ---------------------------------------------------------------- helpers

# record KEY=VALUE... : one JSON line in results.jsonl.
record() {
  local out="{" sep="" kv k v
  for kv in "$@"; do
    k=${kv%%=*} v=${kv#*=}
    if [[ $v =~ ^-?(0|[1-9][0-9]*)(\.[0-9]+)?$ ]]; then
      out+="$sep\"$k\":$v"
    else
      v=${v//\\/\\\\}; out+="$sep\"$k\":\"${v//\"/\\\"}\""
    fi
    sep=","
  done
  echo "$out}" >> "$work/results.jsonl"
}



bound() { # PROTO PORT : something listens there
  local flag=-Hlnu; [ "$1" = tcp ] && flag=-Hlnt
  [ -n "$(ss $flag "sport = :$2" 2>/dev/null)" ]
}
free_port() { ! bound udp "$1" && ! bound tcp "$1"; }
ports_free() { free_port $PROXY && free_port $UAS && free_port $UAC; }

# machine_busy: percent of all cores busy over one second.
machine_busy() {
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat); sleep 1
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN{split(a,x," ");split(b,y," ");
    busy=y[1]-x[1]; idle=y[2]-x[2]; printf "%d", (busy+idle) ? 100*busy/(busy+idle) : 0}'
}

# quiet: wait (bounded) for other work on the machine to calm down.
busy_before=0
quiet() {
  local end=$((SECONDS + quiet_wait))
  busy_before=$(machine_busy)
  while [ "$busy_before" -ge 25 ] && [ $SECONDS -lt $end ]; do
    sleep 2; busy_before=$(machine_busy)
  done
}

proxy_pids=()
proxy_ticks() {
  local total=0 p t
  for p in "${proxy_pids[@]}"; do
    t=$(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo $total
}
proxy_mem() { # "RSS PSS" in kB, summed over the proxy's processes
  local rss=0 pss=0 p r s
  for p in "${proxy_pids[@]}"; do
    r=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    s=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
    rss=$((rss + ${r:-0})) pss=$((pss + ${s:-0}))
  done
  echo "$rss $pss"
}

# The users: a SIPp -inf file and privasip's store (scripts/lib.sh).
make_users() {
  step "$users users"
  make_sipp_users "$work/users" "$users" "$domain" "$privasip" "$PROXY"
}

# start_proxy NAME MODE DIR : MODE is calls-udp, calls-tcp, reg or auth.
proxy_main=""
start_proxy() {
  local name=$1 mode=$2 dir=$3
  mkdir -p "$dir"
  wait_until 30 ports_free || { echo "ports $PROXY/$UAS/$UAC stay busy" >&2; ss -Hlnup | grep -E ":(35060|35070|35090) " >&2; exit 1; }
  if [ "$name" = privasip ]; then
    local transport=udp auth=false
    [ "$mode" = calls-tcp ] && transport=tcp
    [ "$mode" = auth ] && { auth=true; cp "$work/users/users.db" "$dir/proxy.db"; }
    cat > "$dir/privasip.toml" <<TOML
[proxy]
domains = ["$domain"]
sent_by = "127.0.0.1:$PROXY"
record_route = true
# SIPp's Request-URI has no ;transport=: forward on the uac's transport.
default_transport = "$transport"
authenticate = $auth
digest = ["MD5"]
topology_hiding = "$hiding"

# SIPp is a trusted peer: its requests name the uas by IP address and are
# relayed without Digest. Every other limit stays at its default.
[relay]
trusted = ["127.0.0.1"]
allow_networks = ["127.0.0.0/8"]

[listen]
udp = "127.0.0.1:$PROXY"
tcp = "127.0.0.1:$PROXY"

[store]
path = "proxy.db"
TOML
    (cd "$dir" && exec "${nice[@]}" "$privasip" proxy --config privasip.toml) > "$dir/proxy.log" 2>&1 &
    proxy_main=$!
  else
    local defs=(-A BENCH_PORT=$PROXY -A "BENCH_DOMAIN=\"$domain\"")
    [ "$mode" = reg ] && defs+=(-A WITH_REGISTRAR)
    [ "$mode" = auth ] && defs+=(-A WITH_REGISTRAR -A WITH_AUTH)
    [ "$hiding" = all ] && defs+=(-A WITH_TOPOH)
    local children=4
    if [ "$name" = kamailio-db ]; then
      # An empty location table from Debian's schema, as kamdbctl makes
      # it, in WAL mode (kept in the file). One worker: 5.6's db_sqlite
      # sets no busy timeout, and workers writing at once fail with
      # "database is locked" (as its children did setting WAL themselves).
      python3 - "$dir/location.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for f in ("standard-create.sql", "usrloc-create.sql"):
    db.executescript(open("/usr/share/kamailio/db_sqlite/" + f).read())
db.commit()
assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
PY
      defs+=(-A WITH_DB -A "DB_URL=\"sqlite:///$dir/location.db\"")
      children=1
    fi
    mkdir -p "$dir/run"
    (cd "$dir" && exec "${nice[@]}" kamailio -f "$repo/testdata/kamailio/proxy.cfg" -DD -E \
       -n "$children" -m 2048 -M 16 -Y "$dir/run" -w "$dir" "${defs[@]}") > "$dir/proxy.log" 2>&1 &
    proxy_main=$!
  fi
  started+=("$proxy_main")
  if ! wait_until 20 bound udp $PROXY || ! wait_until 10 bound tcp $PROXY; then
    echo "$name did not start; $dir/proxy.log:" >&2; tail -20 "$dir/proxy.log" >&2; exit 1
  fi
  sleep 1
  alive "$proxy_main" || { echo "$name exited; see $dir/proxy.log" >&2; exit 1; }
  proxy_pids=("$proxy_main")
  if [ "$name" != privasip ]; then
    # all its children, once their number stops changing
    local k n=-1
    for _ in $(seq 30); do
      k=$(pgrep -P "$proxy_main" | wc -l || true)
      [ "$k" = "$n" ] && break
      n=$k; sleep 0.3
    done
    for k in $(pgrep -P "$proxy_main"); do proxy_pids+=("$k"); started+=("$k"); done
  fi
}

dead() { ! alive "$1"; }
stop_proxy() {
  local p
  kill -TERM "$proxy_main" 2>/dev/null || true
  wait_until 15 dead "$proxy_main" || true
  for p in "${proxy_pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait "$proxy_main" 2>/dev/null || true
  proxy_pids=() proxy_main=""
}

# sipp_stat FILE : "created successful failed retransmissions median-rate"
sipp_stat() {
  python3 - "$1" <<'PY'
import csv, statistics, sys
try:
    rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
except OSError:
    print("0 0 0 0 0"); sys.exit()
head = rows[0]
data = [dict(zip(head, r)) for r in rows[1:] if len(r) >= len(head) - 1]
last = data[-1] if data else {}
n = lambda k: int(float(last.get(k) or 0))
# full 1-s periods in which calls were started
rates = [float(r["CallRate(P)"]) for r in data
         if r.get("ElapsedTime(P)", "00:00:00")[:8] >= "00:00:01" and int(r.get("OutgoingCall(P)") or 0) > 0]
median = round(statistics.median(rates)) if rates else 0
print(n("TotalCallCreated"), n("SuccessfulCall(C)"), n("FailedCall(C)"), n("Retransmissions(C)"), median)
PY
}

# challenged DIR : how many 401s the uac answered (from -trace_counts)
challenged() {
  python3 - "$1" <<'PY'
import csv, glob, sys
files = glob.glob(sys.argv[1] + "/*_counts.csv")
if not files:
    print(0); sys.exit()
rows = list(csv.reader(open(files[0]), delimiter=";"))
last = dict(zip(rows[0], rows[-1]))
print(sum(int(v or 0) for k, v in last.items() if k.endswith("_401_Recv")))
PY
}

# wait_pid PID SECONDS : wait for a child with a deadline; its exit code,
# or 124 after killing it at the deadline.
wait_pid() {
  local end=$((SECONDS + $2))
  while alive "$1"; do
    if [ $SECONDS -ge $end ]; then kill -KILL "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; return 124; fi
    sleep 0.1
  done
  local rc=0; wait "$1" || rc=$?; return $rc
}

common_sipp=(-i 127.0.0.1 -nostdin -max_socket 15000 -buff_size 1048576
             -default_behaviors all,-abortunexp -trace_err)

# point KIND PROXY TRANSPORT RATE DIR [HOLD] : one bounded SIPp run against
# the running proxy. KIND: calls or reg. Sets ok, line and the p_* values.
point() {
  local kind=$1 name=$2 t=$3 rate=$4 dir=$5 hold=${6:-0}
  local calls=$((rate * secs)) tr=u1 uas="" uac rc=0
  [ "$t" = tcp ] && tr=t1
  [ "$hold" -gt 0 ] && calls=$((rate * hold))
  mkdir -p "$dir"
  local limit=$((secs + hold + 40))
  quiet
  if [ "$kind" = calls ]; then
    local uas_scen=$scen/uas_rr.xml
    if [ "$hold" -gt 0 ]; then
      # the callee rings, then answers only after HOLD seconds
      uas_scen=$dir/uas_hold.xml
      awk -v ms=$((hold * 1000)) '/<send retrans="500">/ && !done {print "  <pause milliseconds=\"" ms "\"/>"; done=1} {print}' \
        "$scen/uas_rr.xml" > "$uas_scen"
    fi
    (cd "$dir" && exec "${nice[@]}" sipp -sf "$uas_scen" -p $UAS -t $tr -m "$calls" -timeout "$((limit + 5))s" \
       "${common_sipp[@]}") > "$dir/uas.out" 2>&1 &
    uas=$!; started+=("$uas")
    wait_until 10 bound "$([ "$t" = tcp ] && echo tcp || echo udp)" $UAS || { echo "the SIPp uas did not start" >&2; exit 1; }
    uac=(sipp "127.0.0.1:$UAS" -sf "$scen/uac_rr.xml" -s service -key to_domain "127.0.0.1:$UAS"
         -rsa "127.0.0.1:$PROXY")
  else
    uac=(sipp "127.0.0.1:$PROXY" -sf "$scen/reg.xml" -inf "$work/users/users.csv" -key domain "$domain"
         -trace_counts)
  fi
  uac+=(-p $UAC -t $tr -r "$rate" -m "$calls" -timeout "${limit}s" -recv_timeout $((hold * 1000 + 10000))
        -trace_stat -stf uac_stat.csv -fd 1 "${common_sipp[@]}")
  local mem0 t0 peak_rss=0 peak_pss=0 m p f
  mem0=$(proxy_mem); t0=$(proxy_ticks)
  (cd "$dir" && exec "${nice[@]}" "${uac[@]}") > "$dir/uac.out" 2>&1 &
  local pid=$!; started+=("$pid")
  if [ "$hold" -gt 0 ]; then
    local end=$((SECONDS + limit + 15))
    while alive "$pid" && [ $SECONDS -lt $end ]; do
      read -r m p <<<"$(proxy_mem)"
      [ "$m" -gt "$peak_rss" ] && peak_rss=$m
      [ "$p" -gt "$peak_pss" ] && peak_pss=$p
      sleep 0.2
    done
  fi
  wait_pid "$pid" $((limit + 15)) || rc=$?
  local t1; t1=$(proxy_ticks)
  local mem1; mem1=$(proxy_mem)
  if [ -n "$uas" ]; then kill -TERM "$uas" 2>/dev/null || true; wait_pid "$uas" 5 || true; fi
  read -r p_created p_ok p_failed p_retrans p_rate <<<"$(sipp_stat "$dir/uac_stat.csv")"
  local cpu_ms=$(( (t1 - t0) * 1000 / tick ))
  p_us=0; [ "$p_ok" -gt 0 ] && p_us=$(( (t1 - t0) * 1000000 / tick / p_ok ))
  read -r p_rss0 p_pss0 <<<"$mem0"
  read -r p_rss1 p_pss1 <<<"$mem1"
  p_peak_rss=$peak_rss p_peak_pss=$peak_pss p_calls=$calls
  p_401=""; [ "$kind" = reg ] && p_401=$(challenged "$dir")
  # Messages SIPp ignored (-abortunexp off): a proxy whose workers reorder
  # ACK and BYE, or 180 and 200, shows them; they cost no call.
  p_unexp=0
  for f in "$dir"/*_errors.log; do
    [ ! -e "$f" ] || p_unexp=$((p_unexp + $(awk '{n += gsub(/unexpected/, "")} END {print n + 0}' "$f")))
  done
  ok=1
  [ "$rc" -eq 0 ] && [ "$p_failed" -eq 0 ] && [ "$p_ok" -eq "$calls" ] || ok=0
  [ "$hold" -gt 0 ] || [ $((p_rate * 100)) -ge $((rate * 97)) ] || ok=0
  line="rc $rc, $p_ok/$calls ok, $p_failed failed, $p_retrans retransmissions, ${p_rate}/s reached, proxy CPU ${cpu_ms} ms = ${p_us} us each"
  [ -z "$p_401" ] || line+=", $p_401 challenged"
  [ "$p_unexp" = 0 ] || line+=", $p_unexp unexpected messages ignored"
  p_rc=$rc p_cpu_ms=$cpu_ms
}

# sweep TEST PROXY MODE TRANSPORT KIND RATES... : climb until the first
# failure; a failing rate gets one more try on a restarted proxy.
sweep() {
  local test=$1 name=$2 mode=$3 t=$4 kind=$5; shift 5
  local rate attempt dir base=$work/$test-$name
  start_proxy "$name" "$mode" "$base/proxy"
  for rate in "$@"; do
    for attempt in 1 2; do
      dir=$base/r$rate-$attempt
      point "$kind" "$name" "$t" "$rate" "$dir"
      if [ "$kind" = reg ]; then
        # every registration must take the path the test is about
        if [ "$mode" = auth ] && [ "$p_401" -ne "$p_ok" ]; then ok=0; line+=" (expected $p_ok)"; fi
        if [ "$mode" = reg ] && [ "$p_401" -ne 0 ]; then ok=0; line+=" (expected none)"; fi
      fi
      record test="$test" proxy="$name" transport="$t" rate="$rate" attempt=$attempt ok=$ok rc=$p_rc \
        calls=$p_calls successful=$p_ok failed=$p_failed retransmissions=$p_retrans rate_reached=$p_rate \
        cpu_ms=$p_cpu_ms cpu_us_each=$p_us challenged="${p_401:-}" unexpected=$p_unexp busy_before=$busy_before dir="$dir"
      printf '  %-8s %-9s %6s/s  %s  %s\n' "$name" "$test" "$rate" "$([ $ok = 1 ] && echo pass || echo FAIL)" "$line"
      [ $ok = 1 ] && break
      [ $attempt = 2 ] && break
      stop_proxy; sleep 2; start_proxy "$name" "$mode" "$base/proxy-$rate-retry"
    done
    [ $ok = 1 ] || break
    sleep 2   # let the last calls' timers run out
  done
  stop_proxy
}

latency() { # PROXY TRANSPORT
  local name=$1 t=$2 test=latency-$2 base=$work/latency-$2-$1
  start_proxy "$name" "calls-$t" "$base/proxy"
  local dir=$base/r$latency_rate
  mkdir -p "$dir"
  # --immediate-mode: otherwise the packets of the last second are still
  # in the kernel's ring when tcpdump is stopped, and are lost.
  $root tcpdump -i lo -n -s 0 -B 32768 --immediate-mode --time-stamp-precision=nano -Z "$(id -un)" \
    -w "$dir/capture.pcap" "port $PROXY" > "$dir/tcpdump.out" 2>&1 &
  tcpdump_pid=$!; started+=("$tcpdump_pid")
  wait_until 10 grep -qs "listening on" "$dir/tcpdump.out" || { echo "tcpdump did not start:" >&2; cat "$dir/tcpdump.out" >&2; exit 1; }
  point calls "$name" "$t" $latency_rate "$dir"
  sleep 1
  $root kill -INT "$tcpdump_pid" 2>/dev/null || true
  wait_pid "$tcpdump_pid" 10 || true
  tcpdump_pid=""
  stop_proxy
  python3 "$repo/scripts/sip_latency.py" "$dir/capture.pcap" --proxy-port $PROXY --json "$dir/latency.json"
  local p50 p99 n drops
  read -r p50 p99 n <<<"$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["p50_us"], d["p99_us"], d["with_180"])' "$dir/latency.json")"
  drops=$(awk '/dropped by kernel/{print $1}' "$dir/tcpdump.out")
  [ "${BENCH_KEEP_PCAP:-}" = 1 ] || rm -f "$dir/capture.pcap"
  record test="$test" proxy="$name" transport="$t" rate=$latency_rate ok=$ok rc=$p_rc calls=$p_calls \
    successful=$p_ok failed=$p_failed retransmissions=$p_retrans cpu_us_each=$p_us unexpected=$p_unexp \
    p50_us="$p50" p99_us="$p99" measured=$n capture_drops="${drops:-0}" busy_before=$busy_before dir="$dir"
  printf '  %-8s %-9s %6s/s  %s  INVITE->180 p50 %s us, p99 %s us over %s calls; %s\n' \
    "$name" "$test" $latency_rate "$([ $ok = 1 ] && echo pass || echo FAIL)" "$p50" "$p99" "$n" "$line"
}

mem_registrations() { # PROXY
  local name=$1 base=$work/mem-reg-$1 saved=$secs
  start_proxy "$name" reg "$base/proxy"
  secs=$(( (users + users_rate - 1) / users_rate ))
  point reg "$name" udp $users_rate "$base/fill"
  secs=$saved
  sleep 2   # privasip's store writer catches up; Kamailio's timer runs
  local after; after=$(proxy_mem)
  stop_proxy
  read -r p_rss1 p_pss1 <<<"$after"
  local n=$p_ok
  local rss_b=0 pss_b=0
  if [ "$n" -gt 0 ]; then
    rss_b=$(( (p_rss1 - p_rss0) * 1024 / n )) pss_b=$(( (p_pss1 - p_pss0) * 1024 / n ))
  fi
  record test=mem-reg proxy="$name" ok=$ok registered="$n" rss_before_kb="$p_rss0" rss_after_kb="$p_rss1" \
    pss_before_kb="$p_pss0" pss_after_kb="$p_pss1" rss_bytes_each=$rss_b pss_bytes_each=$pss_b dir="$base"
  printf '  %-8s %-9s  %s registered: RSS %s -> %s kB = %s B each; PSS %s -> %s kB = %s B each\n' \
    "$name" mem-reg "$n" "$p_rss0" "$p_rss1" "$rss_b" "$p_pss0" "$p_pss1" "$pss_b"
}

mem_invites() { # PROXY
  local name=$1 base=$work/mem-inv-$1
  start_proxy "$name" calls-udp "$base/proxy"
  point calls "$name" udp "$hold_rate" "$base/hold" "$secs"
  stop_proxy
  local n=$((hold_rate * secs)) rss_b=0 pss_b=0
  rss_b=$(( (p_peak_rss - p_rss0) * 1024 / n )) pss_b=$(( (p_peak_pss - p_pss0) * 1024 / n ))
  record test=mem-invite proxy="$name" ok=$ok held="$n" successful=$p_ok failed=$p_failed \
    rss_before_kb="$p_rss0" rss_peak_kb="$p_peak_rss" pss_before_kb="$p_pss0" pss_peak_kb="$p_peak_pss" \
    rss_bytes_each=$rss_b pss_bytes_each=$pss_b dir="$base"
  printf '  %-8s %-9s  %s held open: RSS %s -> %s kB = %s B each; PSS %s -> %s kB = %s B each (%s)\n' \
    "$name" mem-inv "$n" "$p_rss0" "$p_peak_rss" "$rss_b" "$p_pss0" "$p_peak_pss" "$pss_b" \
    "$([ $ok = 1 ] && echo "all $p_ok calls completed" || echo "FAIL: $line")"
}

# ------------------------------------------------------------------- run

started_at=$SECONDS
record test=run date="$(date -u +%FT%TZ)" privasip="$privasip_version" privasip_sha256="$privasip_sha256" \
  kamailio="$kamailio_version" sipp="$(sipp -v 2>&1 | grep -o 'v[0-9][^ -]*' | head -1)" cores="$(nproc)" \
  secs=$secs users=$users kernel="$(uname -r)"
echo "privasip $privasip_version, Kamailio $kamailio_version, $(nproc) cores, $secs s per point; results in $work"
make_users

if want calls-udp; then
  step "calls over UDP: $call_rates calls/s"
  for n in "${proxies[@]}"; do sweep calls-udp "$n" calls-udp udp calls $call_rates; done
fi
if want calls-tcp; then
  step "calls over TCP: $call_rates calls/s"
  for n in "${proxies[@]}"; do sweep calls-tcp "$n" calls-tcp tcp calls $call_rates; done
fi
if want latency; then
  step "INVITE->180 at $latency_rate calls/s, from a capture"
  for t in udp tcp; do for n in "${proxies[@]}"; do latency "$n" "$t"; done; done
fi
if want reg; then
  step "REGISTER without Digest: $reg_rates /s"
  for n in "${proxies[@]}"; do sweep reg "$n" reg udp reg $reg_rates; done
fi
if want reg-digest; then
  step "REGISTER with Digest (401, then 200): $auth_rates registrations/s"
  for n in "${proxies[@]}"; do sweep reg-digest "$n" auth udp reg $auth_rates; done
fi
if want mem-reg; then
  step "memory per registration: $users users at $users_rate/s"
  for n in "${proxies[@]}"; do mem_registrations "$n"; done
fi
if want mem-invite; then
  step "memory per open INVITE: $hold_rate calls/s answered after $secs s"
  for n in "${proxies[@]}"; do mem_invites "$n"; done
fi

step "tables ($(( (SECONDS - started_at) / 60 )) min $(( (SECONDS - started_at) % 60 )) s)"
python3 - "$work" "$privasip_version" "$kamailio_version" "$secs" "$(nproc)" "$users" <<'PY'
import csv, json, sys
work, pv, kv, secs, cores, users = sys.argv[1:]
recs = [json.loads(l) for l in open(f"{work}/results.jsonl")]
names = [n for n in ("privasip", "kamailio", "kamailio-db") if any(r.get("proxy") == n for r in recs)]
recs = [r for r in recs if r["test"] != "run"]
label = {"privasip": f"privasip {pv}", "kamailio": f"Kamailio {kv}",
         "kamailio-db": f"Kamailio {kv}, usrloc write-through (SQLite)"}

def final(test, name):
    """The points of a sweep, the last attempt at each rate."""
    out = {}
    for r in recs:
        if r["test"] == test and r["proxy"] == name:
            out[r["rate"]] = r
    return [out[k] for k in sorted(out)]

def highest(test, name, unit):
    pts = final(test, name)
    if not pts:
        return "-"
    ok = [p for p in pts if p["ok"]]
    bad = [p for p in pts if not p["ok"]]
    best = f"{ok[-1]['rate']:,}" if ok else "none"
    if bad:
        b = bad[0]
        return f"{best} (at {b['rate']:,}: {b['successful']:,}/{b['calls']:,} {unit}, {b['failed']:,} failed, {b['rate_reached']:,}/s reached)"
    return f">= {best} (highest rate tried)"

def cpu_at_best(test, name):
    ok = [p for p in final(test, name) if p["ok"]]
    return f"{ok[-1]['cpu_us_each']} us at {ok[-1]['rate']:,}/s" if ok else "-"

def one(test, name):
    return next((r for r in recs if r["test"] == test and r["proxy"] == name), None)

def lat(t, name):
    r = one(f"latency-{t}", name)
    if not r:
        return "-"
    s = f"{r['p50_us']:.0f} / {r['p99_us']:.0f} us" if r.get("p50_us") not in (None, "None") else "no data"
    if r["measured"] < r["successful"]:
        s += f" ({r['measured']:,} of {r['successful']:,} calls had a 180)"
    return s if r["ok"] else s + " (calls failed)"

def mem(test, name, n_key):
    r = one(test, name)
    if not r:
        return "-"
    n = r[n_key]
    if name != "privasip":
        s = f"{r['pss_bytes_each']:,} B (PSS; RSS sum {r['rss_bytes_each']:,} B), n={n:,}"
    else:
        s = f"{r['rss_bytes_each']:,} B, n={n:,}"
    return s if r["ok"] else s + " (run failed)"

rows = [
    ("calls/s with 0 failures, UDP", lambda n: highest("calls-udp", n, "calls")),
    ("calls/s with 0 failures, TCP", lambda n: highest("calls-tcp", n, "calls")),
    ("proxy CPU per call, UDP, highest passing rate", lambda n: cpu_at_best("calls-udp", n)),
    ("proxy CPU per call, TCP, highest passing rate", lambda n: cpu_at_best("calls-tcp", n)),
    ("INVITE->180 at the uac, 200 calls/s, UDP, p50 / p99", lambda n: lat("udp", n)),
    ("INVITE->180 at the uac, 200 calls/s, TCP, p50 / p99", lambda n: lat("tcp", n)),
    ("REGISTER/s with 0 failures, no Digest", lambda n: highest("reg", n, "registered")),
    ("registrations/s with 0 failures, Digest (401, 200)", lambda n: highest("reg-digest", n, "registered")),
    ("proxy CPU per registration, no Digest / Digest", lambda n: f"{cpu_at_best('reg', n)} / {cpu_at_best('reg-digest', n)}"),
    ("memory per registration", lambda n: mem("mem-reg", n, "registered")),
    ("memory per INVITE held open (server + client transaction)", lambda n: mem("mem-invite", n, "held")),
]
md = []
md.append(f"| {secs} s per point, {cores} cores | " + " | ".join(label[n] for n in names) + " |")
md.append("|---|" + "---:|" * len(names))
summary = []
for title, f in rows:
    vals = [f(n) for n in names]
    if all(v.strip("- /") == "" for v in vals):
        continue  # a test this run left out (BENCH_TESTS)
    md.append(f"| {title} | " + " | ".join(vals) + " |")
    summary.append([title] + vals)

def per_rate(tests, unit):
    cols = [(t, n) for t in tests for n in names if final(t, n)]
    rates = sorted({r["rate"] for r in recs if r["test"] in tests})
    if not cols:
        return []
    out = ["", f"| {unit} | " + " | ".join(f"{n} {t}" for t, n in cols) + " |",
           "|---:|" + "---:|" * len(cols)]
    for rate in rates:
        cells = []
        for t, n in cols:
            p = next((p for p in final(t, n) if p["rate"] == rate), None)
            if not p:
                cells.append("")
            elif p["ok"]:
                cells.append(f"{p['cpu_us_each']} us")
            else:
                cells.append(f"fail: {p['successful']:,}/{p['calls']:,} at {p['rate_reached']:,}/s")
        out.append(f"| {rate:,} | " + " | ".join(cells) + " |")
    return out

md += per_rate(["calls-udp", "calls-tcp"], "calls/s (proxy CPU per call)")
md += per_rate(["reg", "reg-digest"], "registrations/s (proxy CPU per registration)")
md.append("")
md.append("Kamailio: 4 children (4 UDP + 4 TCP workers), -m 2048, testdata/kamailio/proxy.cfg; its memory is")
md.append("summed over its processes. RSS counts a shared-memory page once in every process that touched it,")
md.append("PSS splits it between them; PSS is the comparable figure. CPU is user+system of all proxy processes.")
md.append("SIPp runs with -default_behaviors all,-abortunexp: Kamailio's UDP workers sometimes reorder ACK and BYE,")
md.append("or 180 and 200 (its tm then drops the late 180); SIPp ignores such a message and the call still counts.")
if "kamailio-db" in names:
    md.append("Kamailio, usrloc write-through: one worker, db_mode 1 on db_sqlite, WAL journal, synchronous=FULL")
    md.append("(a sync per commit, one commit per change); privasip: one transaction per group of REGISTERs,")
    md.append("WAL with synchronous=NORMAL (survives the process dying, not the machine losing power).")
text = "\n".join(md)
open(f"{work}/table.md", "w").write(text + "\n")
with open(f"{work}/summary.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["measure"] + [label[n] for n in names])
    w.writerows(summary)
print(text)
PY
echo
echo "results: $work/{table.md,summary.csv,results.jsonl}"
