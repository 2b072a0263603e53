#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need, then runs every
# test. The end-to-end tests use real peers not written in this project:
#   - spyne (Python), a SOAP server;
#   - PHP's SoapServer (php-cli, php-soap), an rpc/encoded SOAP server;
#   - oidc-provider (npm), an OpenID provider;
#   - redis-server (Debian), for limits shared across replicas;
#   - mosquitto and mosquitto-clients (Debian), an MQTT broker and its publisher;
#   - openapi-spec-validator and schemathesis (Python), the OpenAPI contract checks;
#   - chromium (Debian) and playwright-core (npm), the docs-page and CORS browser tests.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh --test spyne_backend).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # Another installer holding the lock (unattended upgrades on a fresh VM) is waited for.
    apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
  else
    echo "please install: $*" >&2
    exit 1
  fi
}

command -v python3 >/dev/null || apt_install python3 python3-pip
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
command -v redis-server >/dev/null || apt_install redis-server
# Debian installs the broker in /usr/sbin, which a non-root PATH may lack.
{ command -v mosquitto || [ -x /usr/sbin/mosquitto ]; } >/dev/null && command -v mosquitto_pub >/dev/null \
  || apt_install mosquitto mosquitto-clients
command -v chromium >/dev/null || apt_install chromium
php -m 2>/dev/null | grep -qx soap || apt_install php-cli php-soap

if ! python3 -c 'import spyne, lxml, openapi_spec_validator, schemathesis' >/dev/null 2>&1; then
  echo "installing spyne, lxml, openapi-spec-validator, schemathesis"
  python3 -m pip install --quiet --disable-pip-version-check \
    'spyne==2.14.0' 'lxml>=5' 'openapi-spec-validator==0.9.0' 'schemathesis==4.32.5'
fi

for dir in tests/oidc tests/browser; do
  if [ ! -d "$dir/node_modules" ]; then
    echo "installing npm packages in $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
  fi
done

# Every test binary runs even when one fails (a summary at the end lists the failures);
# rerun one with `scripts/test.sh --test NAME [TEST_NAME_FILTER]`.
cargo test --locked --no-fail-fast "$@"
