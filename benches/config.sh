# Sourced by benches/load.sh, benches/ab.sh and benches/instructions.sh: the gateway config
# they benchmark.
#
# bench_credentials DIR BIN: signing keys in DIR/keys, and the bench client's secret in
# SECRET with its argon2 hash in HASH (for bench_config).
#
# bench_config DIR PORT ISSUER HASH BIN [EXTRA]: writes DIR (keys already in DIR/keys) for
# the harness's backend: its WSDL, the route in benches/items-route.yaml, one client with
# secret hash HASH, limits that never bind; EXTRA is YAML added to the backend's settings.
# Checked with BIN before use.
bench_credentials() {
  local dir=$1 bin=$2
  "$bin" keys new --dir "$dir/keys" >/dev/null
  SECRET=$("$bin" client new --id bench --scopes items:read | sed -n 's/^client_secret: //p')
  HASH=$(printf '%s' "$SECRET" | "$bin" client hash)
}

# bench_config DIR PORT ISSUER HASH BIN [EXTRA]: see above.
bench_config() {
  local dir=$1 port=$2 issuer=$3 hash=$4 bin=$5 extra=${6:-}
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  mkdir -p "$dir/routes" "$dir/wsdl"
  cp "$root/benches/load/backend/erp.wsdl" "$dir/wsdl/erp.wsdl"
  cp "$root/benches/items-route.yaml" "$dir/routes/items.yaml"
  cat > "$dir/gateway.yaml" <<YAML
server: { listen: "127.0.0.1:$port" }
backends:
  erp:
    url: "http://127.0.0.1:18080/erp/soap"
    wsdl: wsdl/erp.wsdl
    timeout: 10s
    max_concurrency: 256
    rename: { Location: locations }
$extra
limits:
  default: { rate: 1000000/s, burst: 1000000 }
auth:
  issuer: "$issuer"
  signing_keys: keys/
  token_ttl: 2h
  clients:
    - { id: bench, secret_hash: "$hash", scopes: [items:read] }
YAML
  "$bin" check --config "$dir" >/dev/null
}
