#!/usr/bin/env bash
# Starts the demo: the gateway with its embedded local KMS and the web app,
# on 127.0.0.1. Data (KMS keys, objects, SQLite, audit log, demo logins)
# stays in ./demo-data between runs. Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

listen=${DEMO_LISTEN:-127.0.0.1:8080}
echo
echo "kms-envelope demo: open http://$listen/ in a browser and sign in with a login printed below."
echo "Files are encrypted in the browser; the server stores only ciphertext (see demo-data/objects/)."
echo
exec target/release/kms-envelope serve --demo --data-dir demo-data --web-dir www/dist --listen "$listen"
