#!/usr/bin/env bash
# Runs every libFuzzer target of fuzz/ for a set time: `make fuzz`
# (FUZZ_SECONDS per target, default 300), or the short run of `make test`.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Seeds: the peer messages of tests/vectors/, fuzz/seeds/<target>/ and
# fuzz/regressions/<target>/; the growing corpus stays in fuzz/corpus/
# (not committed). A crash is saved under fuzz/artifacts/<target>/, makes the
# run fail, and belongs in fuzz/regressions/<target>/ once fixed, where the
# replay test of `make test` keeps checking it.
# Prints one line per target and writes them to artifacts/fuzz/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-${FUZZ_SECONDS:-300}}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(header context decrypt stream_chunked gateway_request)
sanitizer=${FUZZ_SANITIZER:-none}   # the library has no unsafe code; `address` runs ~3x slower

if ! command -v cargo-fuzz >/dev/null || ! cargo fuzz --version | grep -q ' 0\.13\.2'; then
  cargo install --locked cargo-fuzz@0.13.2
fi
# cargo-fuzz needs nightly flags: the nightly toolchain when installed, else
# the stable compiler told to accept them.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

# Seed corpora: message bytes after each vector's blank line; the chunking
# target takes one leading byte that picks the chunk sizes.
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
python3 - "$seeds" <<'EOF'
import os, sys, glob
out = sys.argv[1]
for t in ("header", "decrypt", "stream_chunked", "context"):
    os.makedirs(f"{out}/{t}", exist_ok=True)
for i, path in enumerate(sorted(glob.glob("tests/vectors/*/*.vec"))):
    data = open(path, "rb").read()
    head = data[:400]
    if not data[data.index(b"\n\n") + 2:]:
        continue  # an empty message (a failure vector) seeds nothing
    # One RSA seed: an RSA-2048 private-key operation costs the instrumented
    # build ~10 ms, so a corpus full of RSA messages fuzzes at ~80 execs/s;
    # with one, libFuzzer still reaches the RSA unwrap, and most runs stay fast.
    rsa_seed = os.path.basename(path) == "python-0478-raw-rsa-oaep-sha256-2048-f128-n0.vec"
    if b"keyring: raw-aes" not in head and not rsa_seed:
        # Only messages for the fuzz keyrings reach the body (see
        # fuzz/src/lib.rs); the header target takes them all.
        msg = data[data.index(b"\n\n") + 2:]
        open(f"{out}/header/{os.path.basename(path)[:-4]}", "wb").write(msg)
        continue
    msg = data[data.index(b"\n\n") + 2:]
    name = os.path.basename(path)[:-4]
    for t in ("header", "decrypt"):
        open(f"{out}/{t}/{name}", "wb").write(msg)
    open(f"{out}/stream_chunked/{name}", "wb").write(bytes([i % 256]) + msg)
    at = 20 if msg[0] == 1 else 35
    n = int.from_bytes(msg[at:at + 2], "big")
    open(f"{out}/context/{name}", "wb").write(msg[at + 2:at + 2 + n])
EOF

mkdir -p artifacts/fuzz
summary=artifacts/fuzz/summary.txt
: > "$summary"
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  dirs=("fuzz/corpus/$t")
  for d in "$seeds/$t" "fuzz/seeds/$t" "fuzz/regressions/$t"; do
    [ -d "$d" ] && dirs+=("$d")
  done
  case $t in decrypt|stream_chunked) max_len=16384 ;; *) max_len=4096 ;; esac
  log="artifacts/fuzz/$t.log"
  echo "== fuzz $t: ${seconds}s"
  if "${fuzz[@]}" run --fuzz-dir fuzz --release --debug-assertions --sanitizer "$sanitizer" "$t" \
        "${dirs[@]}" -- -max_total_time="$seconds" -max_len="$max_len" -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" -timeout=20 -rss_limit_mb=2048 >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log; inputs in fuzz/artifacts/$t/)"
    status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  crashes=$(find "fuzz/artifacts/$t" -type f | wc -l)
  line="fuzz $t: ${seconds}s, ${execs:-0} execs (${rate:-0}/s), coverage ${cov:-0}, corpus $corpus, crashes $crashes: $result"
  echo "$line" | tee -a "$summary"
done
exit $status
