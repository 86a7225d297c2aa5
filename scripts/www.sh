#!/usr/bin/env bash
# Builds the demo web app (www/app → www/dist) against the npm package in
# pkg/ (as a customer installs it: a file: dependency), with Vite.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -f pkg/package.json ] || scripts/pkg.sh
cd www
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.lock.sha256 2>/dev/null)" != "$want" ]; then
  echo "[www] npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > node_modules/.lock.sha256
fi
node node_modules/vite/bin/vite.js build --logLevel warn
echo "[www] built www/dist" >&2
