#!/usr/bin/env bash
# Installs what kms-envelope's build and tests need, idempotently: each step
# is skipped when what it installs is already present.
#   scripts/setup.sh [rust|wasm|browser|python|node|jstools|postgres|bench|all]...
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION=0.2.130
PY_REQUIREMENTS=tests/interop/requirements.txt
VENV=.venv

log() { printf '[setup] %s\n' "$*" >&2; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

step_rust() {
  command -v cargo >/dev/null || { log "cargo not found: install rustup first"; exit 1; }
  command -v openssl >/dev/null || apt_install openssl
}

step_wasm() {
  step_rust
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
  fi
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ] \
     || ! command -v wasm-bindgen-test-runner >/dev/null; then
    log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes)"
    # No --locked: the CLI's lockfile pins a crate version the registry lacks.
    cargo install -q wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
  fi
}

step_bench() {
  # The load generator for the gateway benchmark, OpenSSL for the AES-GCM
  # ceiling, PostgreSQL for the two-instance benchmark.
  apt_install wrk openssl
  step_postgres
}

step_postgres() {
  # PostgreSQL's server, for the tests that start scratch clusters (tests/interop/pg_scratch.py).
  apt_install postgresql openssl
}

step_browser() {
  apt_install chromium chromium-driver
}

step_python() {
  apt_install python3-venv 2>/dev/null || true
  if [ ! -x "$VENV/bin/python" ]; then
    log "python3 -m venv $VENV"
    python3 -m venv "$VENV"
  fi
  # Reinstall only when the pinned requirements changed.
  local want; want=$(sha256sum "$PY_REQUIREMENTS" | cut -d' ' -f1)
  if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    log "pip install -r $PY_REQUIREMENTS"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$PY_REQUIREMENTS"
    echo "$want" > "$VENV/.requirements.sha256"
  fi
}

step_node() {
  command -v node >/dev/null || apt_install nodejs npm
  if [ ! -d tests/interop/node_modules/@aws-crypto/client-node ]; then
    log "npm ci in tests/interop"
    (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
  fi
  if [ ! -d tests/oidc/node_modules/oidc-provider ]; then
    log "npm ci in tests/oidc (oidc-provider)"
    (cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

step_jstools() {
  command -v node >/dev/null || apt_install nodejs npm
  if [ ! -d scripts/js/node_modules/binaryen ] || [ ! -d scripts/js/node_modules/playwright-core ] || [ ! -d scripts/js/node_modules/vite ]; then
    log "npm ci in scripts/js (binaryen, playwright-core, vite)"
    (cd scripts/js && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

steps=("$@"); [ ${#steps[@]} -eq 0 ] && steps=(all)
for s in "${steps[@]}"; do
  case "$s" in
    all) step_wasm; step_browser; step_python; step_node; step_jstools; step_postgres ;;
    bench) step_browser; step_python; step_node; step_jstools; step_bench ;;
    rust|wasm|browser|python|node|jstools|postgres) "step_$s" ;;
    *) log "unknown step $s"; exit 2 ;;
  esac
done
