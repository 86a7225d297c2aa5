#!/usr/bin/env bash
# Builds the npm package into pkg/ from pkg-config/: release wasm,
# wasm-bindgen (ESM, --target web), wasm-opt -Oz, the hand-written entry
# points and types. Prints the gzipped size of the wasm.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --profile wasm-release --target wasm32-unknown-unknown --lib
rm -rf pkg && mkdir -p pkg/wasm
wasm-bindgen --target web --out-dir pkg/wasm --out-name kms_envelope --no-typescript \
  target/wasm32-unknown-unknown/wasm-release/kms_envelope.wasm
# wasm-bindgen writes inline JS snippets beside the module; keep them.
raw=$(stat -c %s pkg/wasm/kms_envelope_bg.wasm)
scripts/js/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
  pkg/wasm/kms_envelope_bg.wasm -o pkg/wasm/kms_envelope_bg.wasm
cp pkg-config/package.json pkg-config/README.md pkg-config/index.d.ts pkg-config/api.js pkg-config/upload.js \
  pkg-config/init-browser.js pkg-config/init-node.js pkg-config/pool-worker.js pkg/

# Ship the snippets directory too (the EnvelopeError class lives there).
if [ -d pkg/wasm/snippets ]; then
  node -e '
    const fs = require("fs"); const p = "pkg/package.json"; const j = JSON.parse(fs.readFileSync(p));
    j.files.push("wasm/snippets/"); fs.writeFileSync(p, JSON.stringify(j, null, 2) + "\n");'
fi
opt=$(stat -c %s pkg/wasm/kms_envelope_bg.wasm)
gz=$(gzip -9 -c pkg/wasm/kms_envelope_bg.wasm | wc -c)
js=$(cat pkg/wasm/kms_envelope.js pkg/api.js pkg/init-browser.js | gzip -9 | wc -c)
printf 'pkg: kms_envelope_bg.wasm %d bytes (%d before wasm-opt), %d gzipped; JS glue %d gzipped\n' "$opt" "$raw" "$gz" "$js" | tee pkg/SIZE.txt
