#!/usr/bin/env bash
# Fuzz smoke run: builds every cargo-fuzz target and runs each for a short period, failing on any
# crash, leak, timeout or out-of-memory. CI runs it at the end of tests/run.sh.
#
#   bash fuzz/smoke.sh                 # every target, 20 s each
#   FUZZ_SECONDS=600 bash fuzz/smoke.sh jwt inspect   # chosen targets, longer
#
# Seeds come from fuzz/corpus/<target>/ (read only); what a run discovers goes to a scratch
# corpus that is thrown away. A crash leaves its input in fuzz/artifacts/<target>/ and the exact
# command to reproduce it in the output (see docs/testing.md, "Fuzzing").
#
# RUSTC_BOOTSTRAP=1: cargo-fuzz passes nightly-only compiler flags (-Zsanitizer=address and the
# sanitizer-coverage options). Only a stable toolchain is installed here and in CI, and no nightly
# can be fetched; RUSTC_BOOTSTRAP lets that stable compiler accept those flags. It is set for the
# fuzz builds only, never for the workspace build.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-20}"
# address sanitizer by default; FUZZ_SANITIZER=none where ASan is not available
sanitizer="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1
# Optimisation of the fuzz build (cargo-fuzz builds the `release` profile). A smoke run of seconds
# needs the build quickly more than the fastest code, so it builds at opt-level 1 (build times and
# executions per second at 1 and 3: docs/testing.md, "Fuzzing"). Longer runs: FUZZ_OPT_LEVEL=3.
export CARGO_PROFILE_RELEASE_OPT_LEVEL="${FUZZ_OPT_LEVEL:-1}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${#targets[@]} fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build -s "$sanitizer" --debug-assertions

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s"
  mkdir -p "$scratch/$target" "corpus/$target"
  # the first directory receives new inputs; the checked-in seeds are only read
  if ! cargo fuzz run -s "$sanitizer" --debug-assertions "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 \
      2>"$scratch/$target.log"; then
    tail -n 60 "$scratch/$target.log" >&2
    failed+=("$target")
  else
    grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$scratch/$target.log" || true
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "!! fuzz targets failed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
  exit 1
fi
echo "== fuzz smoke: ${#targets[@]} targets clean"
