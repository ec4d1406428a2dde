#!/usr/bin/env bash
# arti (~400 crates) is compiled for privasip-arti and the binary only:
# no other crate may depend on it, so they build and test without it.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for dir in crates/*/; do
  crate=$(basename "$dir")
  case "$crate" in privasip | privasip-arti) continue ;; esac
  if cargo tree -p "$crate" -e normal,dev --prefix none 2>/dev/null | grep -qE '^arti-client '; then
    echo "$crate depends on arti-client (keep arti in privasip-arti)" >&2
    status=1
  fi
done
exit $status
