#!/usr/bin/env bash
# Regenerates docs/performance.md: criterion benches (each layer next to its floor), then the load
# harness (wrk against the upstream direct and the gateway with each layer stack, CPU per request,
# peak RSS after 1 M requests with 100 k tokens, instructions per request under callgrind, the upstream
# transports: plain http, HTTPS and stdio, with the npm peers of tests/peers). Takes ~10 minutes; run it on an otherwise idle
# machine. Usage: bash tests/load/run.sh [--duration SECS] [--rss-requests N] [--rss-tokens N]
set -euo pipefail
cd "$(dirname "$0")/../.."
# wrk generates the load; valgrind (callgrind) counts instructions per request
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
# openssl makes the HTTPS row's test CA
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (apt)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# the upstream-transport rows run server-everything and the TLS terminator from the npm peers
[ -e tests/peers/node_modules/@modelcontextprotocol/server-everything ] || npm ci --prefix tests/peers
cargo build --release --locked --bin mcp-enterprise --bin mcp-enterprise-demo-server --bin mcp-enterprise-load
cargo bench --locked -p mcp-enterprise-core -p mcp-enterprise-sso -p mcp-enterprise-dpop -p mcp-enterprise-audit \
  -p mcp-enterprise-gateway --bench inspect --bench verify --bench validate --bench records --bench ratelimit \
  --bench propagation \
  -- --warm-up-time 1 --measurement-time 3
target/release/mcp-enterprise-load --out docs/performance.md "$@"
