# Shared helpers for the scripts; `source` it.

step() { printf '\n==> %s\n' "$*"; }

# ensure_deb PACKAGE... : install Debian packages that are missing.
ensure_deb() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# ensure_cargo_tool BINARY CRATE : install a cargo tool that is missing.
ensure_cargo_tool() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "installing $2 (once; it takes a few minutes)"
    cargo install --locked --quiet "$2"
  fi
}

# make_sipp_users DIR N DOMAIN PRIVASIP PORT : N users u00000.. with
# password "secret": DIR/users.csv for SIPp's -inf, and DIR/users.db, a
# privasip store holding their HA1 (one `privasip user add` makes the
# store with the binary's own schema; the rest go in with one SQLite
# transaction, as N processes would take minutes). PORT only fills the
# throwaway configuration that names the store.
make_sipp_users() {
  local dir=$1 n=$2 domain=$3 privasip=$4 port=$5
  mkdir -p "$dir"
  python3 - "$dir/users.csv" "$n" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("SEQUENTIAL\n")
    for i in range(n):
        f.write(f"u{i:05d};[authentication username=u{i:05d} password=secret];\n")
PY
  printf '[proxy]\ndomains = ["%s"]\nsent_by = "127.0.0.1:%s"\n[listen]\nudp = "127.0.0.1:%s"\n[store]\npath = "users.db"\n' \
    "$domain" "$port" "$port" > "$dir/users.toml"
  echo secret | "$privasip" user add --config "$dir/users.toml" u00000 >/dev/null
  python3 - "$dir/users.db" "$n" "$domain" <<'PY'
import hashlib, sqlite3, sys
path, n, realm = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ha1 = lambda u: [h(f"{u}:{realm}:secret".encode()).hexdigest() for h in (hashlib.md5, hashlib.sha256)]
db = sqlite3.connect(path)
stored = db.execute("SELECT ha1_md5, ha1_sha256 FROM users WHERE user = 'u00000'").fetchone()
if list(stored) != ha1("u00000"):
    sys.exit("users.db: privasip stores HA1 differently from md5/sha256(user:realm:password)")
with db:
    db.executemany(
        "INSERT OR REPLACE INTO users (realm, user, ha1_md5, ha1_sha256) VALUES (?, ?, ?, ?)",
        ((realm, f"u{i:05d}", *ha1(f"u{i:05d}")) for i in range(1, n)))
print(db.execute("SELECT count(*) FROM users").fetchone()[0], "users in privasip's store")
PY
}

# release_copy WORK : the privasip to measure, as WORK/bin/privasip: the
# release build (or $PRIVASIP_BIN, not built), copied so that a rebuild
# during the run does not change what is measured. Sets $privasip.
release_copy() {
  local src
  if [ -n "${PRIVASIP_BIN:-}" ]; then
    step "privasip: $PRIVASIP_BIN (no build)"
    src=$PRIVASIP_BIN
  else
    step "build privasip (release)"
    cargo build --release --locked -p privasip
    src=target/release/privasip
  fi
  mkdir -p "$1/bin"
  cp "$src" "$1/bin/privasip"
  privasip=$1/bin/privasip
}

# alive PID : running (a zombie that was not reaped yet is not)
alive() { [ -e "/proc/$1" ] && ! awk '{sub(/.*\) /, ""); exit $1 == "Z" ? 0 : 1}' "/proc/$1/stat" 2>/dev/null; }

# wait_until SECONDS COMMAND... : poll until COMMAND succeeds; false at the deadline.
wait_until() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.1
  done
}
