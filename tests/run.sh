#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test (unit, doc, integration, and the peer
# tests that run third-party software: the MCP conformance suite, server-everything, Node 22).
# Usage (from anywhere): bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Third-party Node peers, pinned by tests/peers/package-lock.json (installed once, locally).
if [ ! -f tests/peers/node_modules/.package-lock.json ] \
  || [ tests/peers/package-lock.json -nt tests/peers/node_modules/.package-lock.json ]; then
  echo "== installing test peers (npm ci --prefix tests/peers)"
  npm ci --prefix tests/peers --no-audit --no-fund
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
