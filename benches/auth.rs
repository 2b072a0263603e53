//! Token validation cost: a repeat call with a cached verified token against a first call
//! that checks the ES256 signature.

use axum::http::{HeaderMap, HeaderValue, header};
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use veneer::auth::{clients, keys, token};
use veneer::config::compile::CompileOptions;
use veneer::config::{self, ConfigSource};

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
    std::fs::write(dir.path().join("keys/k.pem"), keys::generate_pem(Algorithm::ES256).expect("key")).expect("write");
    let hash = clients::hash_secret("s").expect("hash");
    let yaml = format!(
        "auth:\n  issuer: \"http://127.0.0.1:8080\"\n  signing_keys: keys/\n  clients:\n    - {{ id: bench, secret_hash: \"{hash}\", scopes: [items:read] }}\n"
    );
    std::fs::write(dir.path().join("gateway.yaml"), yaml).expect("write");
    let gw = config::compile(&ConfigSource::Dir(dir.path().into()), &CompileOptions::default()).expect("config");
    let auth = gw.auth.as_ref().expect("auth");
    let local = auth.local.as_ref().expect("issuer");
    let token = token::mint(local, "bench", "items:read").expect("mint");
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).expect("header"));
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");

    c.bench_function("token: cached verified token", |b| {
        b.iter(|| rt.block_on(auth.authenticate(&headers)).expect("valid"))
    });
    c.bench_function("token: signature check (uncached)", |b| {
        b.iter(|| rt.block_on(auth.verify(&token)).expect("valid"))
    });
}

criterion_group!(auth, benches);
criterion_main!(auth);
