#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target (fuzz/) for a bounded time each.
#   scripts/fuzz.sh [seconds-per-target] [target...]
# Default: 20 s per target, every target (the gate's bounded run). For a longer run on demand:
#   scripts/fuzz.sh 3600 import_csv
# Uses the machine's nightly toolchain (the project itself stays on its pinned stable one) and
# cargo-fuzz 0.13.2, installed from crates.io into .tools/cargo on first use. Each run starts
# from the committed seeds (fuzz/seeds/<target>, made from real data by
# `cargo +nightly run --manifest-path fuzz/Cargo.toml --example gen_seeds`) plus the working
# corpus it grew before (fuzz/corpus/<target>, not committed). A crash stops the script with
# the input saved under fuzz/artifacts/<target>/; turn it into a unit test in the crate
# concerned. RCPFED_FUZZ_SANITIZER=none builds without AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
shift || true
sanitizer="${RCPFED_FUZZ_SANITIZER:-address}"

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: no nightly toolchain (rustup toolchain install nightly); cannot fuzz" >&2
  exit 1
fi
if [ ! -x .tools/cargo/bin/cargo-fuzz ]; then
  echo "installing cargo-fuzz 0.13.2 (crates.io) into .tools/cargo"
  mkdir -p .tools/cargo
  CARGO_TARGET_DIR="$PWD/.tools/cargo-build" \
    cargo +nightly install cargo-fuzz --version 0.13.2 --locked --root .tools/cargo --quiet
  rm -rf .tools/cargo-build
fi
export PATH="$PWD/.tools/cargo/bin:$PATH"
# The fuzz project has its own target dir (fuzz/target); a CARGO_TARGET_DIR from the
# environment would put the instrumented build into the project's.
unset CARGO_TARGET_DIR

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi

echo "== cargo fuzz build (${sanitizer} sanitizer): ${targets[*]}"
(cd fuzz && cargo +nightly fuzz build -O --sanitizer "$sanitizer")

for t in "${targets[@]}"; do
  echo "== fuzz ${t} for ${seconds} s"
  mkdir -p "fuzz/corpus/${t}"
  log="fuzz/target/fuzz-${t}.log"
  mkdir -p fuzz/target
  rc=0
  (cd fuzz && cargo +nightly fuzz run -O --sanitizer "$sanitizer" "$t" \
    "corpus/${t}" "seeds/${t}" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=20 \
    -print_final_stats=1) >"$log" 2>&1 || rc=$?
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  if [ "$rc" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz: ${t} failed (exit ${rc}); the input is under fuzz/artifacts/${t}/, the log in ${log}" >&2
    exit 1
  fi
done
echo "== fuzz: every target ran ${seconds} s without a crash"
