#!/usr/bin/env bash
# Runs every test of kms-envelope and ends with one summary line that counts
# them all. Called by `make test` (and so by .ci/run).
set -uo pipefail
cd "$(dirname "$0")/.."

logs=$(mktemp -d)
# Everything the tests put in a temporary directory (browser profiles,
# scratch apps, the e2e files) goes under one directory, removed at the end.
export TMPDIR="$logs/tmp"
mkdir -p "$TMPDIR"
trap 'rm -rf "$logs"' EXIT
export CARGO_TERM_COLOR=never
# One clean build: incremental artifacts would only take disk.
export CARGO_INCREMENTAL=0
export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
# The Chromium suite runs long CPU-bound cases (every bit flip of a message).
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-900}

failed_steps=()
step() {
  local name=$1; shift
  echo "== $name: $*"
  if ! "$@" 2>&1 | tee "$logs/$name.log"; then
    failed_steps+=("$name")
  fi
}

step native   cargo test --workspace --all-targets
step doc      cargo test --workspace --doc
step interop  cargo test --test interop -- --include-ignored
step localkms cargo test -p kms-envelope-server --test localkms --test kms_emulators --test s3 --test postgres --test oidc -- --include-ignored
# The gateway tests again with metadata in PostgreSQL (a scratch server per
# test binary, a database per gateway), and the metadata suite against it.
step postgres env KMS_ENVELOPE_TEST_POSTGRES=1 cargo test -p kms-envelope-server --bin kms-envelope --test gateway --test review --test s3 -- --include-ignored
step node     cargo test --target wasm32-unknown-unknown --test core --test js_node
# Headless Chromium: chromedriver gives up on a renderer that has not
# answered one of its polls for 30 s ("Timed out receiving message from
# renderer"), which a loaded 2-core machine can cause without any test
# failing. Such a run is said so and made once more; a test that fails
# fails the step whatever the retry says.
renderer_retry() {
  local run=$logs/renderer-retry.run attempt
  for attempt in 1 2; do
    if "$@" > "$run" 2>&1; then
      cat "$run"; rm -f "$run"; return 0
    fi
    if [ "$attempt" = 1 ] && grep -q 'Timed out receiving message from renderer' "$run" \
        && ! grep -Eq '^test result: FAILED|^failures:' "$run"; then
      # Shown, but not counted: the second run's results are.
      sed 's/^test result:/(first run) result:/' "$run"
      echo "chromium: the renderer stopped answering the driver (no test failed): running the step again"
      continue
    fi
    cat "$run"; rm -f "$run"; return 1
  done
}
step chromium renderer_retry cargo test --target wasm32-unknown-unknown --test browser --test js_browser
step pkg      bash -c 'scripts/pkg.sh && node tests/pkg/run.mjs'
step e2e      bash -c 'scripts/www.sh && node tests/e2e/run.mjs && node tests/e2e/s3.mjs && node tests/e2e/oidc.mjs'
step audit    scripts/audit.sh
# Every seed and past finding through the fuzz properties, then a short fuzz run.
step fuzz     bash -c 'CARGO_TARGET_DIR=target cargo test --manifest-path fuzz/Cargo.toml && scripts/fuzz.sh "${FUZZ_TEST_SECONDS:-15}"'

# Sum the runners' own result lines (cargo's and wasm-bindgen-test-runner's).
read -r passed failed < <(cat "$logs"/*.log | sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' \
  | awk '{p+=$1; f+=$2} END {print p+0, f+0}')
echo
if [ ${#failed_steps[@]} -gt 0 ]; then
  echo "failed steps: ${failed_steps[*]}"
  [ "$failed" -eq 0 ] && failed=${#failed_steps[@]}
  echo "summary: $passed passed, $failed failed"
  exit 1
fi
echo "summary: $passed passed, $failed failed"
