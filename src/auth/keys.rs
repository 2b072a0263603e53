//! Token signing keys: PKCS#8 PEM files (ES256 or EdDSA), several at once for rotation.
//!
//! The key whose file name sorts last signs; every key verifies. `veneer keys new` names
//! files by creation time, so "sorts last" is "newest", and replicas reading the same
//! directory agree on both without talking to each other. Key ids are RFC 7638 thumbprints.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// One signing key with its public half.
pub struct SigningKey {
    /// RFC 7638 thumbprint, used as `kid`.
    pub kid: String,
    /// ES256 or EdDSA.
    pub alg: Algorithm,
    /// Private half.
    pub encoding: EncodingKey,
    /// Public half.
    pub decoding: DecodingKey,
    /// Public JWK as published.
    pub jwk: Jwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey {{ kid: {}, alg: {:?} }}", self.kid, self.alg)
    }
}

/// The keys of the built-in issuer, oldest first.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<SigningKey>,
}

// DER encodings of the key-type OIDs inside a PKCS#8 document.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

impl KeySet {
    /// Loads every `*.pem` in `dir`; errors name the file.
    pub fn load_dir(dir: &Path) -> Result<KeySet, String> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read signing key directory {}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pem"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!(
                "no *.pem signing keys in {}; create one with `veneer keys new --dir {}`",
                dir.display(),
                dir.display()
            ));
        }
        let keys = files
            .iter()
            .map(|f| {
                let pem = std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
                from_pem(&pem).map_err(|e| format!("{}: {e}", f.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KeySet { keys })
    }

    /// A fresh in-memory ES256 key, for dev mode: tokens die with the process.
    pub(crate) fn ephemeral() -> Result<KeySet, String> {
        Ok(KeySet { keys: vec![from_pem(&generate_pem(Algorithm::ES256)?)?] })
    }

    /// The key that signs new tokens.
    pub fn signer(&self) -> &SigningKey {
        // load_dir and ephemeral never build an empty set.
        &self.keys[self.keys.len() - 1]
    }

    /// The key with this id.
    pub fn find(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The public keys, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: self.keys.iter().map(|k| k.jwk.clone()).collect() }
    }
}

/// Parses a PKCS#8 PEM private key (EC P-256 → ES256, Ed25519 → EdDSA).
pub fn from_pem(pem: &str) -> Result<SigningKey, String> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    if !pem.contains("-----BEGIN PRIVATE KEY-----") {
        return Err("expected a PKCS#8 \"BEGIN PRIVATE KEY\" PEM (as written by `veneer keys new`)".into());
    }
    let der = STANDARD.decode(body.trim()).map_err(|e| format!("the PEM body is not base64: {e}"))?;
    let contains = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    let (alg, encoding) = if contains(OID_EC_PUBLIC_KEY) {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|e| format!("not a P-256 key: {e}"))?;
        (Algorithm::ES256, EncodingKey::from_ec_der(&der))
    } else if contains(OID_ED25519) {
        // jsonwebtoken wants the PKCS#8 v1 form; normalise whatever we were given.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|e| format!("not an Ed25519 key: {e}"))?;
        let v1 = pair.to_pkcs8v1().map_err(|e| format!("cannot re-encode the Ed25519 key: {e}"))?;
        (Algorithm::EdDSA, EncodingKey::from_ed_der(v1.as_ref()))
    } else {
        return Err("unsupported key type; use an EC P-256 (ES256) or Ed25519 (EdDSA) key".into());
    };
    let mut jwk = Jwk::from_encoding_key(&encoding, alg).map_err(|e| format!("cannot derive the public key: {e}"))?;
    let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(|e| format!("cannot compute the key id: {e}"))?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| format!("cannot build the verifying key: {e}"))?;
    Ok(SigningKey { kid, alg, encoding, decoding, jwk })
}

/// A new private key as PKCS#8 PEM.
pub fn generate_pem(alg: Algorithm) -> Result<String, String> {
    let rng = SystemRandom::new();
    let der = match alg {
        Algorithm::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map(|d| d.as_ref().to_vec())
        }
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&rng).map(|d| d.as_ref().to_vec()),
        other => return Err(format!("{other:?} keys are not supported; use ES256 or EdDSA")),
    }
    .map_err(|_| "key generation failed".to_string())?;
    let b64 = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_sign() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA] {
            let pem = generate_pem(alg).expect("generate");
            let key = from_pem(&pem).expect("load");
            assert_eq!(key.alg, alg);
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(alg),
                &serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}),
                &key.encoding,
            )
            .expect("sign");
            let mut v = jsonwebtoken::Validation::new(alg);
            v.validate_aud = false;
            jsonwebtoken::decode::<serde_json::Value>(&token, &key.decoding, &v).expect("verify");
        }
        assert!(from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err());
        assert!(from_pem("garbage").is_err());
    }
}
