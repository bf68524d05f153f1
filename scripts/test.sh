#!/usr/bin/env bash
# Sets up (idempotently) and runs every check: formatting, clippy with
# warnings as errors, the documentation build and all tests (unit, property
# and real-process integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked --workspace 2>&1 | tee "$log"
# One closing line for the whole workspace (cargo prints one per test binary,
# and the last of those is often a doc-test run with nothing in it).
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "\nworkspace: %d passed, %d failed", p, f
           if (i > 0) printf ", %d skipped", i
           printf "\n" }' "$log"
