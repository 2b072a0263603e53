//! NetSuite token-based authentication: a `tokenPassport` SOAP header on every call, with a
//! fresh nonce and timestamp and an HMAC-SHA256 signature over
//! `account&consumerKey&tokenId&nonce&timestamp`, keyed with `consumerSecret&tokenSecret`
//! (NetSuite's SuiteTalk guide, "Token-based Authentication and Web Services"). The header
//! is written through the WSDL's own `tokenPassport` element, so its namespaces and order
//! are the ones NetSuite validates against.

use std::fmt;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::schema::{Element, SIMPLE_CONTENT_KEY, SchemaSet, ServiceModel, TypeRef};
use crate::translate::encode;

/// The element NetSuite's WSDL declares for the header.
const ELEMENT: &str = "tokenPassport";

/// The signature method NetSuite names in the header.
pub(crate) const ALGORITHM: &str = "HMAC-SHA256";

/// A TBA credential: the account and the four parts of an integration's access token.
pub struct TokenPassport {
    account: String,
    consumer_key: String,
    consumer_secret: String,
    token_id: String,
    token_secret: String,
    element: Element,
}

impl fmt::Debug for TokenPassport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The account is not secret; nothing else is shown.
        write!(f, "TokenPassport {{ account: {:?} }}", self.account)
    }
}

/// The parts of a token, as configured.
pub struct TokenParts {
    /// Account id.
    pub account: String,
    /// Consumer key of the integration record.
    pub consumer_key: String,
    /// Its consumer secret.
    pub consumer_secret: String,
    /// Access token id.
    pub token_id: String,
    /// Its secret.
    pub token_secret: String,
}

impl TokenPassport {
    /// A credential for the backend whose WSDL is `model`; fails when no operation declares
    /// a `tokenPassport` header (not a NetSuite WSDL, or one older than TBA).
    pub fn new(parts: TokenParts, model: &ServiceModel) -> Result<TokenPassport, String> {
        let element = model
            .operations
            .iter()
            .flat_map(|op| op.headers.iter())
            .find(|h| h.name == ELEMENT)
            .cloned()
            .ok_or_else(|| format!("netsuite_tba: no operation of this WSDL declares a {ELEMENT} SOAP header"))?;
        let passport = TokenPassport {
            account: parts.account,
            consumer_key: parts.consumer_key,
            consumer_secret: parts.consumer_secret,
            token_id: parts.token_id,
            token_secret: parts.token_secret,
            element,
        };
        // Writing one now finds a WSDL whose element has other fields before any call does.
        let mut probe = String::new();
        encode::body_element(&mut probe, &passport.element, &model.schema, &passport.value(&model.schema, "n0nce", 1))
            .map_err(|e| {
                format!(
                    "netsuite_tba: the WSDL's {ELEMENT} element does not take the TBA fields: {}",
                    e.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>().join("; ")
                )
            })?;
        Ok(passport)
    }

    /// A fresh header: a new random nonce and the current time.
    pub fn header(&self, schema: &SchemaSet) -> String {
        self.render(schema, &nonce(), chrono::Utc::now().timestamp())
    }

    /// The header for a given nonce and timestamp (seconds since the epoch).
    pub(crate) fn render(&self, schema: &SchemaSet, nonce: &str, timestamp: i64) -> String {
        let mut out = String::new();
        // Checked against the element when the config loaded; the values are plain text.
        let _ = encode::body_element(&mut out, &self.element, schema, &self.value(schema, nonce, timestamp));
        out
    }

    /// Base64 of HMAC-SHA256 over `account&consumerKey&tokenId&nonce&timestamp`, keyed with
    /// `consumerSecret&tokenSecret`.
    pub fn signature(&self, nonce: &str, timestamp: i64) -> String {
        let base = format!("{}&{}&{}&{nonce}&{timestamp}", self.account, self.consumer_key, self.token_id);
        let key =
            hmac::Key::new(hmac::HMAC_SHA256, format!("{}&{}", self.consumer_secret, self.token_secret).as_bytes());
        STANDARD.encode(hmac::sign(&key, base.as_bytes()).as_ref())
    }

    /// The element's JSON content: its children found by XML name, so any `json_naming`
    /// works.
    fn value(&self, schema: &SchemaSet, nonce: &str, timestamp: i64) -> Value {
        let TypeRef::Complex(id) = self.element.ty else { return Value::Null };
        let mut map = Map::new();
        for child in &schema.complex(id).children {
            let v = match child.name.as_str() {
                "account" => Value::String(self.account.clone()),
                "consumerKey" => Value::String(self.consumer_key.clone()),
                "token" => Value::String(self.token_id.clone()),
                "nonce" => Value::String(nonce.to_string()),
                "timestamp" => Value::from(timestamp),
                "signature" => signature_value(schema, child, self.signature(nonce, timestamp)),
                _ => continue,
            };
            map.insert(child.json_name.clone(), v);
        }
        Value::Object(map)
    }
}

/// `signature` is text with an `algorithm` attribute.
fn signature_value(schema: &SchemaSet, el: &Element, signature: String) -> Value {
    let TypeRef::Complex(id) = el.ty else { return Value::String(signature) };
    let mut map = Map::new();
    map.insert(SIMPLE_CONTENT_KEY.to_string(), Value::String(signature));
    if let Some(a) = schema.complex(id).attributes.iter().find(|a| a.name == "algorithm") {
        map.insert(a.json_name.clone(), Value::String(ALGORITHM.into()));
    }
    Value::Object(map)
}

/// 20 random alphanumeric characters (NetSuite wants 6 to 64).
fn nonce() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 20];
    // Without randomness the nonce would repeat and NetSuite refuse the call; the clock is
    // a last resort that still differs per call.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0).to_le_bytes();
        bytes[..8].copy_from_slice(&t);
    }
    bytes.iter().map(|b| CHARS[usize::from(*b) % CHARS.len()] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_alphanumeric_and_differ() {
        let (a, b) = (nonce(), nonce());
        assert_eq!(a.len(), 20);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
