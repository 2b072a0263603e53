#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (a real SOAP
# server, spyne, for the end-to-end tests), then runs every test. Extra arguments go to
# `cargo test` (e.g. scripts/test.sh --test spyne_backend).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import spyne, lxml' >/dev/null 2>&1; then
  echo "installing spyne 2.14 + lxml (the SOAP server the end-to-end tests run against)"
  python3 -m pip install --quiet --disable-pip-version-check 'spyne==2.14.0' 'lxml>=5'
fi

cargo test --locked "$@"
