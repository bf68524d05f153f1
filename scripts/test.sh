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
cargo test --locked --workspace
