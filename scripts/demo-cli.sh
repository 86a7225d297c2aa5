#!/usr/bin/env bash
# The job, shown through the CLI: make a key pair standing in for a KMS key,
# encrypt a file to its public key (as the browser will), look at the
# envelope, decrypt with the private key, compare.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/kms-envelope
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
arn="arn:aws:kms:us-east-1:111122223333:key/demo-0000-4000-8000-000000000001"

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "1. An RSA-3072 key pair (in production: an AWS KMS RSA key; the browser only ever sees its public key)"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$work/kms-private.pem" 2>/dev/null
openssl pkey -in "$work/kms-private.pem" -pubout -outform DER -out "$work/kms-public.der"
echo "   public key (DER SPKI, as KMS GetPublicKey returns it): $(wc -c < "$work/kms-public.der") bytes"

say "2. A 5 MiB file to protect"
head -c $((5 * 1024 * 1024)) /dev/urandom > "$work/report.pdf"
sha256sum "$work/report.pdf" | sed 's/ .*//; s/^/   sha256 /'

say "3. Encrypt: AES-256-GCM frames under a fresh data key, wrapped with RSA-OAEP-SHA256 for the KMS key"
$bin encrypt -i "$work/report.pdf" -o "$work/report.pdf.esdk" \
  --context owner=alice --context file=report.pdf \
  --kms-rsa "arn=$arn,public=$work/kms-public.der,algorithm=RSAES_OAEP_SHA_256" \
  --raw-rsa "namespace=demo,name=escrow,public=$work/kms-public.der,padding=oaep-sha256"
echo "   $(wc -c < "$work/report.pdf.esdk") bytes of AWS Encryption SDK message"

say "4. Inspect the envelope (no key needed)"
$bin inspect -i "$work/report.pdf.esdk"

say "5. Decrypt with the private key and compare"
$bin decrypt -i "$work/report.pdf.esdk" -o "$work/report.out" --context owner=alice \
  --raw-rsa "namespace=demo,name=escrow,private=$work/kms-private.pem,padding=oaep-sha256"
cmp "$work/report.pdf" "$work/report.out" && echo "   identical"

say "6. Tamper with one byte: decryption fails with a code, and writes nothing"
python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[-100]^=1; open(p,'wb').write(b)" "$work/report.pdf.esdk"
rm -f "$work/tampered.out"
if $bin decrypt -i "$work/report.pdf.esdk" -o "$work/tampered.out" \
  --raw-rsa "namespace=demo,name=escrow,private=$work/kms-private.pem,padding=oaep-sha256"; then
  echo "   unexpected: tampering was not detected"; exit 1
fi
[ ! -e "$work/tampered.out" ] && echo "   no output file was written"
