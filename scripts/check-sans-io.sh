#!/usr/bin/env bash
# The protocol cores must not depend on an async runtime or do I/O
# (STYLE.md: only the crates that do I/O depend on tokio).
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for crate in privasip-message privasip-identity privasip-digest privasip-transaction privasip-registrar privasip-proxy privasip-ua; do
  if cargo tree -p "$crate" -e normal --prefix none 2>/dev/null | grep -qE '^(tokio|async-std|mio) '; then
    echo "$crate depends on an async runtime" >&2
    status=1
  fi
done
exit $status
