#!/usr/bin/env bash
# Starts the demo: the gateway with its embedded local KMS and the web app,
# on 127.0.0.1. Data (KMS keys, objects, SQLite, audit log, demo logins)
# stays in ./demo-data between runs. Stop it with Ctrl-C.
#
# DEMO_STORAGE=s3 (make demo-s3): the production shape. moto's S3 server
# stands in for Amazon S3 on 127.0.0.1 (a bucket with the CORS rule browsers
# need); browsers upload encrypted parts straight to it through presigned
# URLs and read it directly, and the gateway carries no file bytes. moto
# keeps objects in memory only, so this demo starts with an empty bucket and
# an empty object list each time (demo-data-s3/).
set -euo pipefail
cd "$(dirname "$0")/.."

listen=${DEMO_LISTEN:-127.0.0.1:8080}
echo
echo "kms-envelope demo: open http://$listen/ in a browser and sign in with a login printed below."
if [ "${DEMO_STORAGE:-local}" != s3 ]; then
  echo "Files are encrypted in the browser; the server stores only ciphertext (see demo-data/objects/)."
  echo
  exec target/release/kms-envelope serve --demo --data-dir demo-data --web-dir www/dist --listen "$listen"
fi

bucket=kms-envelope-demo
coproc MOTO { exec .venv/bin/python tests/interop/moto_s3.py serve --bucket "$bucket" --cors-origin "http://$listen" 2>/dev/null; }
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
read -r ready s3 _ <&"${MOTO[0]}"
[ "$ready" = ready ] || { echo "moto's S3 server did not start" >&2; exit 1; }
echo "Objects go to S3 (moto's S3 server at $s3, bucket $bucket): the browser sends and reads them there itself."
echo
# moto forgets its objects when it stops: so does the demo's object list.
mkdir -p demo-data-s3
rm -f demo-data-s3/gateway.sqlite3 demo-data-s3/gateway.sqlite3-wal demo-data-s3/gateway.sqlite3-shm
AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo target/release/kms-envelope serve --demo --data-dir demo-data-s3 --web-dir www/dist \
  --listen "$listen" --s3-bucket "$bucket" --s3-endpoint "$s3" --s3-path-style
