#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test (unit, doc, integration, and the peer
# tests that run third-party software: the MCP conformance suite, server-everything, Node 22).
# It ends with the supply-chain check (cargo-deny) and a fuzz smoke run (fuzz/smoke.sh: every
# cargo-fuzz target for FUZZ_SECONDS, default 20 s each).
# Usage (from anywhere): bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Third-party Node peers, pinned by tests/peers/package-lock.json (installed once, locally).
if [ ! -f tests/peers/node_modules/.package-lock.json ] \
  || [ tests/peers/package-lock.json -nt tests/peers/node_modules/.package-lock.json ]; then
  echo "== installing test peers (npm ci --prefix tests/peers)"
  npm ci --prefix tests/peers --no-audit --no-fund
fi

# The official OpenTelemetry protobuf definitions (PyPI), which judge our OTLP log export.
if [ ! -f tests/peers/py/.installed ] || [ tests/peers/requirements.txt -nt tests/peers/py/.installed ]; then
  echo "== installing Python test peers (pip --target tests/peers/py)"
  python3 -m pip install --quiet --disable-pip-version-check --target tests/peers/py -r tests/peers/requirements.txt
  touch tests/peers/py/.installed
fi

# redis-server (Debian package) backs the shared DPoP replay-store and rate-limit tests; they fail
# without it.
# Its dependency redis-tools gives redis-cli, which the Sentinel test (tests/it/ha.rs) drives.
if ! command -v redis-server >/dev/null 2>&1 && [ -z "${MCP_TEST_REDIS_SERVER:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing redis-server (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "!! redis-server is missing, so the DPoP replay-store and rate-limit tests will fail. Install it with:" >&2
    echo "     sudo apt-get update && sudo apt-get install -y redis-server" >&2
    echo "   (or set MCP_TEST_REDIS_SERVER to a redis-server binary)" >&2
  fi
fi

# zsh and fish (Debian packages) load the completion scripts in tests/it/cli_conventions.rs.
missing_shells=()
for shell in zsh fish; do command -v "$shell" >/dev/null 2>&1 || missing_shells+=("$shell"); done
if [ ${#missing_shells[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${missing_shells[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_shells[@]}" >/dev/null
  else
    echo "!! ${missing_shells[*]} missing, so the completion tests will fail. Install with:" >&2
    echo "     sudo apt-get update && sudo apt-get install -y ${missing_shells[*]}" >&2
  fi
fi

# promtool (Debian package prometheus) checks the gateway's /metrics in tests/it/operability.rs.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing prometheus (apt, for promtool)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "!! promtool is missing, so the metrics test will fail. Install it with:" >&2
    echo "     sudo apt-get update && sudo apt-get install -y prometheus" >&2
  fi
fi

# tinyproxy (Debian package) is the forward proxy of the egress test (tests/it/egress.rs).
if ! command -v tinyproxy >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing tinyproxy (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tinyproxy >/dev/null
  else
    echo "!! tinyproxy is missing, so the egress test will fail. Install it with:" >&2
    echo "     sudo apt-get update && sudo apt-get install -y tinyproxy" >&2
  fi
fi

# The slowloris fault test (tests/it/faults.rs) opens 10 000 connections from the test process
# and into a gateway process: raise the soft open-file limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc (no warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked
echo "== cargo publish --dry-run (every publishable crate packages and builds alone)"
# needs the crates.io index only; examples, tests and tests/load are `publish = false`
# cargo verifies each package against the others through a local registry; its extracted sources
# (in CARGO_HOME) are keyed by name and version only, so after a change a second run would build
# against the first run's: remove them first.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/mcp-enterprise*
# The verification builds in the same target directory as the tests: each package is built with
# its own feature set, but every dependency whose features and profile come out the same is built
# once for both (on a two-core machine: 617 s cold in a directory of its own, 374 s in the tests'
# directory after their build).
# A packaged crate carries no `[profile]` of the workspace, so the verification would build with
# cargo's default `dev` profile, full debug info included; without it, its dependencies match the
# workspace's (`[profile.dev.package."*"] debug = false`) and the build is smaller.
CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=false cargo publish --workspace --dry-run --locked
echo "== cargo deny"
if ! command -v cargo-deny >/dev/null 2>&1; then
  # unoptimised: it builds in 92 s instead of ≈ 220 s on two cores, and the check still takes
  # seconds (2.7 s against 1.5 s)
  echo "== installing cargo-deny (cargo install cargo-deny --locked --debug)"
  cargo install cargo-deny --locked --debug
fi
# The RustSec advisory database is a git repository on GitHub; where it cannot be fetched (this
# project's CI has no route to GitHub) advisories are skipped with a notice: docs/security.md.
deny_checks=(licenses bans sources)
if timeout 30 cargo deny fetch db >/dev/null 2>&1; then
  deny_checks+=(advisories)
else
  echo "!! RustSec advisory database unreachable: advisories not checked (see docs/security.md)" >&2
fi
cargo deny --locked check --hide-inclusion-graph "${deny_checks[@]}"
echo "== cargo test"
# the fault and hostile-input tests run the gateway binary as its own process
cargo build --locked --bin mcp-enterprise --bin example-id-jag-client
cargo test --workspace --locked
echo "== fuzz smoke"
bash fuzz/smoke.sh
