#!/usr/bin/env bash
# Dependency checks (deny.toml) with cargo-deny, part of `make test`:
# licenses, banned crates and sources always; RustSec advisories against the
# advisory database, fetched when the network allows, else the copy already in
# ~/.cargo/advisory-dbs. Without any database it says so, loudly, and the
# other checks still gate the run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null || ! cargo deny --version | grep -q ' 0\.20\.2'; then
  cargo install --locked cargo-deny@0.20.2
fi
cargo deny check licenses bans sources

cargo deny fetch db >/dev/null 2>&1 || true
db=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/advisory-dbs/advisory-db-* 2>/dev/null | head -1 || true)
if [ -z "$db" ]; then
  echo "advisories: NOT CHECKED: the RustSec advisory database (github.com/rustsec/advisory-db) cannot be fetched from this network and no copy is in ~/.cargo/advisory-dbs"
  exit 0
fi
echo "advisory database: $db, last change $(git -C "$db" log -1 --format=%cs 2>/dev/null || echo unknown)"
cargo deny --offline check advisories
