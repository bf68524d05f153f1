#!/usr/bin/env bash
# Sets up (idempotently), builds in release mode and starts a local testnet of
# real mc-node processes on loopback, printing each node's status URL.
# Extra arguments go to `mc-testnet up` (default: --nodes 5). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "testnet: building mc-node and mc-testnet (release; the first build takes a few minutes)"
cargo build --release --locked -p mc-node -p mc-testnet
if [ $# -eq 0 ]; then set -- --nodes 5; fi
exec target/release/mc-testnet up "$@"
