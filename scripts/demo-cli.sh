#!/usr/bin/env bash
# The job, shown through the CLI and the embedded local KMS: a KMS RSA key,
# a file encrypted to its public key (as the browser will), the envelope
# inspected, decrypted through KMS Decrypt, tampering detected.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/target/release/kms-envelope
work=$(mktemp -d)
kms_pid=
cleanup() { [ -n "$kms_pid" ] && kill "$kms_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "1. A KMS key: RSA-3072 in the embedded local KMS (with AWS, a KMS asymmetric key)"
arn=$($bin keys --data-dir "$work/data" create --spec RSA_3072 --alias demo-files)
echo "   $arn  (alias/demo-files; stored encrypted under $work/data/master.key)"
$bin local-kms --data-dir "$work/data" --listen 127.0.0.1:0 > "$work/kms.out" &
kms_pid=$!
for _ in $(seq 50); do grep -q listening "$work/kms.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^local KMS listening on //p' "$work/kms.out")
echo "   local KMS (AWS KMS JSON protocol) at $url"
# It answers only requests signed with the credentials it generated (0600).
export AWS_SHARED_CREDENTIALS_FILE="$work/data/kms/credentials"
echo "   requests signed (SigV4) with the credentials in $AWS_SHARED_CREDENTIALS_FILE"

say "2. A 5 MiB file to protect"
head -c $((5 * 1024 * 1024)) /dev/urandom > "$work/report.pdf"
sha256sum "$work/report.pdf" | sed 's/ .*//; s/^/   sha256 /'

say "3. Encrypt: AES-256-GCM frames under a fresh data key, wrapped with RSA-OAEP-SHA256 under the KMS public key"
$bin encrypt -i "$work/report.pdf" -o "$work/report.pdf.esdk" \
  --context owner=alice --context file=report.pdf \
  --kms-rsa "arn=$arn,algorithm=RSAES_OAEP_SHA_256" --kms-endpoint "$url"
echo "   $(wc -c < "$work/report.pdf.esdk") bytes of AWS Encryption SDK message (public key fetched with GetPublicKey)"

say "4. Inspect the envelope (no key needed)"
$bin inspect -i "$work/report.pdf.esdk"

say "5. Decrypt: KMS Decrypt unwraps the data key (the context digest is checked), then the frames"
$bin decrypt -i "$work/report.pdf.esdk" -o "$work/report.out" --context owner=alice \
  --kms-rsa "arn=$arn,algorithm=RSAES_OAEP_SHA_256" --kms-endpoint "$url"
cmp "$work/report.pdf" "$work/report.out" && echo "   identical"

say "6. Disable the key: decryption is refused by KMS"
$bin keys --data-dir "$work/data" disable "$arn"
$bin decrypt -i "$work/report.pdf.esdk" -o "$work/refused.out" \
  --kms-rsa "arn=$arn,algorithm=RSAES_OAEP_SHA_256" --kms-endpoint "$url" || true
$bin keys --data-dir "$work/data" enable "$arn"

say "7. Tamper with one byte: decryption fails with a code, and writes nothing"
python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[-100]^=1; open(p,'wb').write(b)" "$work/report.pdf.esdk"
if $bin decrypt -i "$work/report.pdf.esdk" -o "$work/tampered.out" \
  --kms-rsa "arn=$arn,algorithm=RSAES_OAEP_SHA_256" --kms-endpoint "$url"; then
  echo "   unexpected: tampering was not detected"; exit 1
fi
[ ! -e "$work/tampered.out" ] && echo "   no output file was written"
