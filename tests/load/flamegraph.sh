#!/usr/bin/env bash
# Regenerates the flame graph of one gateway stack under load (docs/flamegraph-full-pack.svg by
# default): the load harness starts the upstream and the gateway (`--serve STACK`), wrk drives it
# at 16 connections as the harness does, and `perf record --call-graph dwarf` samples the gateway
# process; `inferno` folds and draws the stacks. Symbols come from the release binary's symbol
# table (no debug info needed). Needs perf (Debian: linux-perf) and inferno (cargo install
# inferno); the permission to profile (root, or kernel.perf_event_paranoid <= 1).
#
# After the graph it prints where the gateway's CPU per request goes, by owner (layer, proxy,
# transport) and kind (signature maths, SHA-2, allocator, kernel): tests/load/breakdown.py on the
# folded stacks, scaled by the gateway's CPU time over the requests wrk completed.
#
# Usage: bash tests/load/flamegraph.sh [--stack FullPack] [--seconds 5] [--out docs/flamegraph-full-pack.svg]
#        [--bins target/release] [--folded FILE] [--no-build]
# The stack names are the harness's (`FullPack`, `Bare`, `BearerPack`, `SsoDpopDistinct`, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
stack=FullPack seconds=5 out=docs/flamegraph-full-pack.svg bins="${CARGO_TARGET_DIR:-target}/release" folded="" build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --stack) stack="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --bins) bins="$2"; build=0; shift 2 ;;
    --folded) folded="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
missing=()
command -v perf >/dev/null 2>&1 || missing+=(linux-perf)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (apt)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v inferno-flamegraph >/dev/null 2>&1 || cargo install --locked inferno
if [ "$build" = 1 ]; then
  # as tests/load/run.sh builds them
  cargo build --release --locked --bin mcp-enterprise --bin mcp-enterprise-demo-server --bin mcp-enterprise-load
fi
work=$(mktemp -d)
harness=""
cleanup() {
  # the harness's process group: it, the gateway and the upstream it started
  [ -n "$harness" ] && kill -- "-$harness" 2>/dev/null && wait "$harness" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
# a process group of its own (setsid), so that cleanup stops its children with it
setsid "$bins/mcp-enterprise-load" --serve "$stack" >"$work/serve" 2>"$work/serve.err" &
harness=$!
for _ in $(seq 1 600); do
  [ -s "$work/serve" ] && break
  kill -0 "$harness" 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
  sleep 0.1
done
read -r url script pid <"$work/serve"
echo "== $stack at $url (gateway pid $pid): warm-up, then $seconds s under perf"
wrk -t 2 -c 16 -d 2s --timeout 10s -s "$script" "$url" >/dev/null
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(ticks)
wrk -t 2 -c 16 -d "$((seconds + 2))s" --timeout 10s -s "$script" "$url" >"$work/wrk" &
wrk_pid=$!
sleep 1
perf record -q -F "${MCPE_PERF_FREQ:-999}" --call-graph dwarf,32768 -p "$pid" -o "$work/perf.data" -- sleep "$seconds" 2>/dev/null
wait "$wrk_pid"
after=$(ticks)
grep RESULT "$work/wrk" || true
requests=$(awk '/^RESULT/ {print $2}' "$work/wrk")
perf script --no-inline -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf >"$work/folded"
[ -n "$folded" ] && cp "$work/folded" "$folded"
inferno-flamegraph --title "gateway CPU: $stack, wrk 16 connections, perf dwarf, $seconds s" --width 1400 \
  <"$work/folded" >"$out"
echo "== wrote $out ($(wc -l <"$work/folded") distinct stacks)"
if [ -n "$requests" ] && [ "$requests" -gt 0 ]; then
  cpu=$(awk -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" -v n="$requests" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
  echo "== $stack: $cpu µs of gateway CPU per request (perf running); where it goes:"
  python3 tests/load/breakdown.py "$work/folded" "$cpu"
fi
