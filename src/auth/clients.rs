//! Registered OAuth2 clients (from config) and how they prove who they are.

use std::collections::BTreeSet;

use argon2::{Argon2, Block, Params, PasswordHash, PasswordHasher, Version};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};

/// A client registered by IT.
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// argon2id PHC string of the secret (`client_secret_basic`/`_post`).
    pub secret_hash: Option<String>,
    /// Public key for `private_key_jwt`, with the algorithms it may sign with.
    pub key: Option<(DecodingKey, Vec<Algorithm>)>,
    /// Scopes it may be granted.
    pub scopes: BTreeSet<String>,
    /// Disabled clients get no tokens, and their earlier tokens stop working.
    pub disabled: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("scopes", &self.scopes)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// A fixed, valid argon2id hash nobody knows the secret of: unknown client ids are checked
/// against it so they cost the same time as known ones (no hint which part was wrong).
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$dmVuZWVyLWRlY295LXNhbHQ$Sg3ThwLzY0Yf4cXqBKQqbkhnG6hKSCqgMGdkLzT6mUU";

/// Checks a client secret against a PHC hash; outputs are compared in constant time.
pub fn verify_secret(hash: Option<&str>, secret: &str) -> bool {
    let ok = verify_reusing_memory(hash.unwrap_or(DECOY_HASH), secret.as_bytes()).unwrap_or(false);
    ok && hash.is_some()
}

thread_local! {
    /// argon2's working memory (19 MiB with the default parameters), kept by each hashing
    /// thread: allocating and freeing it per check fragments the heap until RSS is hundreds
    /// of MiB under a password-guessing flood (measured: 585 MiB after 300 checks).
    static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The most memory a secret hash may ask for, in KiB (OWASP recommends 19–46 MiB).
const MAX_MEMORY_KIB: u32 = 256 * 1024;

/// What verifying against a PHC string needs, read from it without hashing anything.
struct Phc {
    argon2: Argon2<'static>,
    blocks: usize,
    salt: argon2::password_hash::phc::Salt,
    expected: argon2::password_hash::phc::Output,
}

impl Phc {
    /// Reads a PHC string; what is wrong with it otherwise.
    fn read(phc: &str) -> Result<Phc, String> {
        let parsed = PasswordHash::new(phc).map_err(|e| e.to_string())?;
        let params = Params::try_from(&parsed).map_err(|e| e.to_string())?;
        // Each check holds `m` KiB per hashing thread: a hash asking for gigabytes would
        // take them at the first login instead of failing here.
        if params.m_cost() > MAX_MEMORY_KIB {
            return Err(format!("its memory cost m={} KiB is above {MAX_MEMORY_KIB} KiB (256 MiB)", params.m_cost()));
        }
        let algorithm = argon2::Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| e.to_string())?;
        let version = parsed.version.map(Version::try_from).transpose().map_err(|e| e.to_string())?.unwrap_or_default();
        let salt = parsed.salt.ok_or("it has no salt")?;
        let expected = parsed.hash.ok_or("it has no hash")?;
        if expected.len() > 64 {
            return Err("its hash is longer than 64 bytes".into());
        }
        Ok(Phc { blocks: params.block_count(), argon2: Argon2::new(algorithm, version, params), salt, expected })
    }
}

/// argon2 verification of `secret` against a PHC string, in this thread's reused memory.
fn verify_reusing_memory(phc: &str, secret: &[u8]) -> Option<bool> {
    let Phc { argon2, blocks, salt, expected } = Phc::read(phc).ok()?;
    let mut buffer = [0u8; 64];
    let out = buffer.get_mut(..expected.len())?;
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon2.hash_password_into_with_memory(secret, &salt, &mut *out, &mut memory[..blocks]).ok()
    })?;
    // Output's equality is constant-time.
    Some(argon2::password_hash::phc::Output::new(out).ok()? == expected)
}

/// Hashes a secret with argon2id and a random salt, as written into config.
pub fn hash_secret(secret: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(secret.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

/// Validates a PHC string from config.
pub(crate) fn check_hash(hash: &str) -> Result<(), String> {
    if !hash.starts_with("$argon2id$") {
        return Err("secret_hash must be an argon2id hash ($argon2id$…); create one with `veneer client new` or `veneer client hash`".into());
    }
    // A hash that does not parse would make every login fail silently. Read, not verified:
    // a trial hash would cost each client 19 MiB and tens of milliseconds at every start
    // and reload.
    Phc::read(hash).map(|_| ()).map_err(|e| format!("secret_hash is not a valid argon2id hash: {e}"))
}

/// Builds the verifying key of a client's registered public JWK.
pub fn client_key(jwk: &Jwk) -> Result<(DecodingKey, Vec<Algorithm>), String> {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    let algs = match &jwk.algorithm {
        P::EllipticCurve(p) => match p.curve {
            jsonwebtoken::jwk::EllipticCurve::P256 => vec![Algorithm::ES256],
            jsonwebtoken::jwk::EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return Err("unsupported EC curve; use P-256 or P-384".into()),
        },
        P::OctetKeyPair(_) => vec![Algorithm::EdDSA],
        P::RSA(_) => vec![Algorithm::RS256, Algorithm::PS256],
        // A shared secret is not a public key: HMAC is refused here on purpose.
        P::OctetKey(_) => return Err("a symmetric (oct) key is not allowed; register the client's public key".into()),
        _ => return Err("unsupported key type".into()),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("invalid JWK: {e}"))?;
    Ok((key, algs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_decoy_never_matches() {
        let hash = hash_secret("s3cret").expect("hash");
        assert!(check_hash(&hash).is_ok());
        assert!(verify_secret(Some(&hash), "s3cret"));
        assert!(!verify_secret(Some(&hash), "s3cret "));
        assert!(!verify_secret(None, "s3cret"));
        assert!(check_hash(DECOY_HASH).is_ok(), "the decoy must be a valid hash or timing differs");
        assert!(check_hash("$2b$10$bcrypt").is_err());
        // Read without hashing, yet each broken part is still caught.
        let salt = "dmVuZWVyLWRlY295LXNhbHQ";
        for broken in [
            format!("$argon2id$v=19$m=19456,t=2,p=1${salt}"),
            format!("$argon2id$v=19$m=lots,t=2,p=1${salt}$Sg3ThwLzY0Yf4cXqBKQqbkhnG6hKSCqgMGdkLzT6mUU"),
            format!("$argon2id$v=7$m=19456,t=2,p=1${salt}$Sg3ThwLzY0Yf4cXqBKQqbkhnG6hKSCqgMGdkLzT6mUU"),
            "$argon2id$v=19$m=19456,t=2,p=1".to_string(),
            format!("$argon2id$v=19$m=4194304,t=2,p=1${salt}$Sg3ThwLzY0Yf4cXqBKQqbkhnG6hKSCqgMGdkLzT6mUU"),
        ] {
            assert!(check_hash(&broken).is_err(), "{broken}");
        }
    }
}
