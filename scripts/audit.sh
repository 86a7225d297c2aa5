#!/usr/bin/env bash
# Dependency checks (deny.toml) with cargo-deny, part of `make test`:
# licenses, banned crates and sources always; RustSec advisories against the
# advisory database, fetched when the network allows, else the copy already in
# ~/.cargo/advisory-dbs, else the snapshot in ../shared/rustsec-advisory-db.
# Without any database it says so, loudly, and the
# other checks still gate the run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null || ! cargo deny --version | grep -q ' 0\.20\.2'; then
  cargo install --locked cargo-deny@0.20.2
fi
cargo deny check licenses bans sources

cargo deny fetch db >/dev/null 2>&1 || true
db=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/advisory-dbs/advisory-db-* 2>/dev/null | head -1 || true)
# No database fetched: the snapshot beside the project (../shared), if there
# is one, made into the git repository cargo-deny reads, where it looks.
snapshot=../shared/rustsec-advisory-db
if [ -z "$db" ] && [ -d "$snapshot/crates" ]; then
  want=$(cargo deny --offline check advisories 2>&1 | grep -o '/[^" ]*advisory-dbs/advisory-db-[0-9a-f]*' | head -1 || true)
  if [ -n "$want" ]; then
    mkdir -p "$want"
    cp -r "$snapshot"/. "$want"/
    git -C "$want" init -q
    git -C "$want" add -A
    git -C "$want" -c user.name=audit -c user.email=audit@localhost commit -qm "RustSec advisory database ($(grep -o 'commit [0-9a-f]*' "$snapshot/SNAPSHOT.md" | head -1))"
    db=$want
  fi
fi
if [ -z "$db" ]; then
  echo "advisories: NOT CHECKED: the RustSec advisory database (github.com/rustsec/advisory-db) cannot be fetched from this network and no copy is in ~/.cargo/advisory-dbs"
  exit 0
fi
echo "advisory database: $db, last change $(git -C "$db" log -1 --format=%cs 2>/dev/null || echo unknown)"
cargo deny --offline check advisories
