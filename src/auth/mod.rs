//! OAuth2: the built-in client-credentials issuer, bearer-token validation (built-in and
//! external issuers, opaque tokens by introspection), and per-route scopes.
//!
//! Everything here is compiled into the [`crate::config::Gateway`] snapshot; a reload
//! builds a new [`Auth`] (and so a fresh token cache), which is how a disabled client's
//! cached tokens stop working at once.

pub mod clients;
pub mod external;
pub(crate) mod guard;
pub mod introspect;
pub mod keys;
pub mod metadata;
pub mod token;
pub mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub use verify::Principal;

/// The scope of the `/admin/` endpoints (deliveries, reload, pause).
pub(crate) const ADMIN_SCOPE: &str = "veneer:admin";

use self::clients::Client;
use self::external::ExternalIssuer;
use self::introspect::Introspector;
use self::keys::KeySet;

/// The built-in authorization server.
#[derive(Debug)]
pub struct LocalIssuer {
    /// `iss` of the tokens it mints (its own base URL).
    pub issuer: String,
    /// `aud` of the tokens it mints.
    pub audience: String,
    /// Signing keys: newest signs, all verify.
    pub keys: KeySet,
    /// Access-token lifetime.
    pub ttl: Duration,
    /// Registered clients by id.
    pub clients: BTreeMap<String, Client>,
    /// `jti`s of client assertions already used (RFC 7523 replay protection), until they expire.
    pub replay: guard::ReplayMemory,
    /// Failed-login limits and the argon2 gate.
    pub guard: guard::LoginGuard,
}

impl LocalIssuer {
    /// The token endpoint's absolute URL (an accepted `aud` of client assertions).
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.issuer.trim_end_matches('/'))
    }

    /// Every scope some client may be granted.
    pub fn scopes(&self) -> BTreeSet<String> {
        self.clients.values().flat_map(|c| c.scopes.iter().cloned()).collect()
    }
}

/// Authentication for one snapshot.
#[derive(Debug)]
pub struct Auth {
    /// The built-in issuer, when configured.
    pub local: Option<LocalIssuer>,
    /// Trusted external issuers.
    pub external: Vec<ExternalIssuer>,
    /// RFC 7662 introspection for opaque tokens.
    pub introspection: Option<Introspector>,
    /// Allowed clock skew for `exp`/`nbf`/`iat`.
    pub leeway: Duration,
    /// Verified tokens, keyed by the token itself, until they expire.
    pub(crate) cache: TokenCache,
}

impl Auth {
    /// Why no caller can be authorised, if none can: no client registered with the
    /// built-in issuer, and no external issuer or introspection to accept other tokens.
    /// Every route but the public ones then answers 401.
    pub(crate) fn nobody_can_call(&self) -> Option<&'static str> {
        let local_clients = self.local.as_ref().is_some_and(|l| !l.clients.is_empty());
        (!local_clients && self.external.is_empty() && self.introspection.is_none()).then_some(
            "no caller can be authorised: no client is registered with the built-in issuer (auth.issuer, \
             signing_keys, clients) and no external issuer or introspection accepts other tokens, so every \
             route that is not public answers 401; `veneer keys new` and `veneer client new` print what to add",
        )
    }
}

/// Verified tokens by token. Hashed with foldhash (randomly seeded per cache) rather than
/// SipHash: every request hashes its ~600-byte token, and SipHash took 1 400 instructions
/// of it. Only tokens that verified are ever inserted, so no caller chooses the keys.
pub(crate) type TokenCache =
    moka::sync::Cache<std::sync::Arc<str>, std::sync::Arc<Principal>, foldhash::fast::RandomState>;

/// A cached token's share of the cache: its length and the entry's bookkeeping.
fn token_weight(token: &std::sync::Arc<str>, _: &std::sync::Arc<Principal>) -> u32 {
    u32::try_from(token.len() + 128).unwrap_or(u32::MAX)
}

impl Auth {
    /// Whose bucket, idempotency keys and deliveries a principal's requests are: a client
    /// registered with the built-in issuer by its id, anyone else by issuer and client id.
    pub fn caller(&self, p: &Principal) -> crate::throttle::Caller {
        let registered =
            self.local.as_ref().is_some_and(|l| l.issuer == p.issuer && l.clients.contains_key(&p.client_id));
        let key = if registered { p.client_id.clone() } else { format!("{}|{}", p.issuer, p.client_id) };
        crate::throttle::Caller { key, registered }
    }

    /// A token cache whose entries expire with their tokens, bounded by the bytes it holds
    /// (about 30 000 one-kilobyte tokens) rather than by a count, as tokens vary in size.
    pub(crate) fn new_cache() -> TokenCache {
        moka::sync::Cache::builder()
            .max_capacity(32 << 20)
            .weigher(token_weight)
            .expire_after(verify::UntilTokenExpiry)
            .build_with_hasher(foldhash::fast::RandomState::default())
    }
}
