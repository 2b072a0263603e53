//! Compiles `auth:` into an [`Auth`]: the built-in issuer with its keys and clients,
//! external issuers and introspection.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::problems::{self, AtLeast, CompileOptions, FileText};
use super::raw::{AuthConfigSection, ClientSection, LoginFailuresSection, RateSection};
use super::{ConfigProblem, ConfigSource, secret};
use crate::auth::clients::{self, Client};
use crate::auth::external::{ExternalIssuer, ExternalSettings};
use crate::auth::guard::{LoginGuard, ReplayMemory};
use crate::auth::introspect::{Expect, Introspector};
use crate::auth::keys::KeySet;
use crate::auth::{Auth, LocalIssuer};
use crate::state::{ASSERTION_MEMORY, Retained};
use crate::throttle::Throttle;
use crate::throttle::rate::Rate;

/// Compiles the auth section; `route_scopes` are every scope a route requires (the dev
/// client gets them all).
pub(crate) fn compile(
    source: &ConfigSource,
    file: &FileText,
    s: &AuthConfigSection,
    options: &CompileOptions,
    route_scopes: &BTreeSet<String>,
    throttle: &Throttle,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Auth> {
    // `key`: a dotted key path under `auth` ("" for the section itself).
    let mut here = |key: &str, m: String| {
        let mut path = vec!["auth"];
        path.extend(key.split('.').filter(|k| !k.is_empty()));
        problems.push(file.at(&path, format!("auth: {m}")))
    };
    let ttl = duration("token_ttl", &s.token_ttl, Duration::from_secs(900), &mut here);
    let leeway = duration("leeway", &s.leeway, Duration::from_secs(30), &mut here);
    let clients = registered_clients(s, options, route_scopes, &mut here);
    let local = local_issuer(source, s, options, clients, ttl, throttle, &mut here);
    let external = external_issuers(s, &mut here);
    let introspection = introspection(source, s, &options.retained, &mut here);
    Some(Auth { local, external, introspection, leeway, cache: Auth::new_cache() })
}

/// A duration under `auth` (`key` is its dotted path there), at least zero.
fn duration(key: &str, v: &Option<String>, default: Duration, here: &mut dyn FnMut(&str, String)) -> Duration {
    let label = key.rsplit('.').next().unwrap_or(key);
    problems::duration(label, v.as_deref(), default, AtLeast::Zero, &mut |m| here(key, m))
}

/// `clients:`, and dev mode's: the demo client with every scope routes use, and an operator.
fn registered_clients(
    s: &AuthConfigSection,
    options: &CompileOptions,
    route_scopes: &BTreeSet<String>,
    here: &mut dyn FnMut(&str, String),
) -> BTreeMap<String, Client> {
    let mut clients = BTreeMap::new();
    for (i, c) in s.clients.iter().enumerate() {
        match client(c) {
            Ok(client) => {
                if clients.insert(c.id.clone(), client).is_some() {
                    here(&format!("clients.{i}.id"), format!("client {} is registered twice", c.id));
                }
            }
            Err(m) => here(&format!("clients.{i}"), format!("client {}: {m}", c.id)),
        }
    }
    let admin_scope = BTreeSet::from([crate::auth::ADMIN_SCOPE.to_string()]);
    let dev_clients = [(&options.dev_client, route_scopes), (&options.dev_admin, &admin_scope)];
    for (id, secret, scopes) in dev_clients.iter().filter_map(|(c, scopes)| c.as_ref().map(|(i, s)| (i, s, scopes))) {
        match clients::hash_secret(secret) {
            Ok(hash) => {
                let dev = Client {
                    id: id.clone(),
                    secret_hash: Some(hash),
                    key: None,
                    scopes: (*scopes).clone(),
                    disabled: false,
                };
                clients.insert(id.clone(), dev);
            }
            Err(m) => here("", m),
        }
    }

    clients
}

/// The built-in issuer (`issuer`, `signing_keys`, the clients), when configured; dev mode's
/// runs with an in-memory key.
fn local_issuer(
    source: &ConfigSource,
    s: &AuthConfigSection,
    options: &CompileOptions,
    clients: BTreeMap<String, Client>,
    ttl: Duration,
    throttle: &Throttle,
    here: &mut dyn FnMut(&str, String),
) -> Option<LocalIssuer> {
    let retained = &options.retained;
    let issuer = options.issuer.clone().or_else(|| s.issuer.clone());
    match (&issuer, &s.signing_keys, clients.is_empty() && options.dev_client.is_none()) {
        (None, _, true) => None,
        (None, _, false) => {
            here(
                "clients",
                "registered clients need auth.issuer (Veneer's public base URL, e.g. \"https://veneer.example.com\")"
                    .into(),
            );
            None
        }
        (Some(iss), keys_dir, _) => {
            let keys = match (keys_dir, source) {
                (Some(dir), ConfigSource::Dir(root)) => KeySet::load_dir(&root.join(dir)),
                (None, _) if options.dev_client.is_some() => KeySet::ephemeral(),
                (None, _) => {
                    Err("auth.issuer needs signing_keys: a directory of keys made with `veneer keys new --dir DIR`"
                        .into())
                }
                (Some(_), ConfigSource::Embedded) => KeySet::ephemeral(),
            };
            match (reqwest::Url::parse(iss), keys) {
                (Ok(u), Ok(keys)) if matches!(u.scheme(), "http" | "https") => Some(LocalIssuer {
                    issuer: iss.trim_end_matches('/').to_string(),
                    audience: s.audience.clone().unwrap_or_else(|| iss.trim_end_matches('/').to_string()),
                    keys,
                    ttl,
                    clients,
                    replay: ReplayMemory {
                        local: retained.assertions.clone(),
                        shared: throttle.shared.clone(),
                        ttl: ASSERTION_MEMORY,
                    },
                    guard: login_guard(s.login_failures.as_ref(), retained, here),
                }),
                (_, Err(m)) => {
                    here("signing_keys", m);
                    None
                }
                _ => {
                    here("issuer", format!("issuer {iss:?} is not an http(s) URL"));
                    None
                }
            }
        }
    }
}

/// `external_issuers:`, each with its algorithms and JWKS refresh.
fn external_issuers(s: &AuthConfigSection, here: &mut dyn FnMut(&str, String)) -> Vec<ExternalIssuer> {
    let mut external = Vec::new();
    for (i, e) in s.external_issuers.iter().enumerate() {
        let mut algorithms = Vec::new();
        let names =
            if e.algorithms.is_empty() { vec!["RS256".to_string(), "ES256".to_string()] } else { e.algorithms.clone() };
        for name in &names {
            match asymmetric(name) {
                Ok(a) => algorithms.push(a),
                Err(m) => here(&format!("external_issuers.{i}.algorithms"), format!("issuer {}: {m}", e.issuer)),
            }
        }
        let refresh_interval = duration(
            &format!("external_issuers.{i}.refresh_interval"),
            &e.refresh_interval,
            Duration::from_secs(60),
            here,
        );
        let settings = ExternalSettings {
            issuer: e.issuer.clone(),
            audiences: e.audience.to_vec(),
            jwks_uri: e.jwks_uri.clone(),
            algorithms,
            scope_claim: e.scope_claim.clone(),
            refresh_interval,
        };
        match ExternalIssuer::new(settings) {
            Ok(x) => external.push(x),
            Err(m) => here(&format!("external_issuers.{i}"), m),
        }
    }

    external
}

/// `introspection:` (RFC 7662), its call slots and remembered refusals kept across reloads
/// while its settings hold.
fn introspection(
    source: &ConfigSource,
    s: &AuthConfigSection,
    retained: &Retained,
    here: &mut dyn FnMut(&str, String),
) -> Option<Introspector> {
    let i = s.introspection.as_ref()?;
    let max_cache = duration("introspection.max_cache", &i.max_cache, Duration::from_secs(60), here);
    let expect =
        Expect { audiences: i.audience.as_ref().map(|a| a.to_vec()).unwrap_or_default(), issuer: i.issuer.clone() };
    let slots = i.max_concurrency.unwrap_or(16);
    if slots == 0 {
        here("introspection.max_concurrency", "introspection.max_concurrency must be at least 1".into());
    }
    // Call slots and remembered refusals outlive the snapshot while these settings hold.
    let state = retained.introspection(format!("{}\u{0}{slots}\u{0}{expect:?}", i.endpoint), slots);
    secret::resolve(source, i.client_secret_env.as_deref(), i.client_secret_file.as_deref(), "client_secret")
        .and_then(|sec| Introspector::new(&i.endpoint, &i.client_id, sec, max_cache, expect, state))
        .map_err(|m| here("introspection", m))
        .ok()
}

/// The token endpoint's failed-login limits (defaults: 10/min per client id, 60/min per
/// address), kept across reloads through the limiter registry.
fn login_guard(
    s: Option<&LoginFailuresSection>,
    retained: &Retained,
    here: &mut dyn FnMut(&str, String),
) -> LoginGuard {
    let mut rate = |key: &str, section: Option<&RateSection>, default: u32| {
        let configured = section.and_then(|r| {
            Rate::parse(&r.rate, r.burst)
                .map_err(|m| here(&format!("login_failures.{key}"), format!("login_failures.{key}: {m}")))
                .ok()
        });
        configured.unwrap_or(Rate { count: default, per: Duration::from_secs(60), burst: default })
    };
    let per_client = rate("per_client", s.and_then(|s| s.per_client.as_ref()), 10);
    let per_address = rate("per_address", s.and_then(|s| s.per_address.as_ref()), 60);
    LoginGuard {
        per_client: retained.limiters.get("login:client", per_client),
        per_address: retained.limiters.get("login:address", per_address),
        penalties: retained.login_penalties.clone(),
        hashing: retained.hashing.clone(),
    }
}

fn client(c: &ClientSection) -> Result<Client, String> {
    let key = match (&c.secret_hash, &c.jwk) {
        (Some(hash), None) => {
            clients::check_hash(hash)?;
            None
        }
        (None, Some(jwk)) => {
            let jwk = serde_json::from_value(jwk.clone()).map_err(|e| format!("jwk is not a valid JWK: {e}"))?;
            Some(clients::client_key(&jwk)?)
        }
        _ => {
            return Err(
                "give exactly one of secret_hash (from `veneer client new`) or jwk (for private_key_jwt)".into()
            );
        }
    };
    Ok(Client {
        id: c.id.clone(),
        secret_hash: c.secret_hash.clone(),
        key,
        scopes: c.scopes.iter().cloned().collect(),
        disabled: c.disabled,
    })
}

/// Parses an algorithm name, refusing `none` and HMAC: a public key must never verify an
/// HMAC (algorithm confusion).
fn asymmetric(name: &str) -> Result<Algorithm, String> {
    match name {
        "RS256" => Ok(Algorithm::RS256),
        "RS384" => Ok(Algorithm::RS384),
        "RS512" => Ok(Algorithm::RS512),
        "PS256" => Ok(Algorithm::PS256),
        "PS384" => Ok(Algorithm::PS384),
        "PS512" => Ok(Algorithm::PS512),
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "EdDSA" => Ok(Algorithm::EdDSA),
        "none" | "HS256" | "HS384" | "HS512" => {
            Err(format!("algorithm {name} is never accepted (use an asymmetric one such as RS256 or ES256)"))
        }
        other => Err(format!("unknown algorithm {other:?}; use RS256, PS256, ES256, ES384 or EdDSA")),
    }
}
