#!/usr/bin/env bash
# Installs the js-libp2p interop peer's dependencies (interop/js/node_modules)
# from the committed package-lock.json, for node/tests/js_interop.rs.
#
# Idempotent: runs `npm ci` only when node_modules is missing or the lock file
# changed since the last successful install (its sha256 is kept in
# node_modules/.mc-lock.sha256). Without node/npm it prints a note and exits 0,
# so the Rust test simply skips.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "interop/js: node/npm not found; skipping (js_interop test will be skipped)" >&2
    exit 0
fi

stamp="node_modules/.mc-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ -d node_modules && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "interop/js: node_modules up to date ($(node --version))"
    exit 0
fi

echo "interop/js: npm ci ($(node --version), npm $(npm --version))"
npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
