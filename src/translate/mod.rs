//! The pure translation core: JSON → SOAP envelope and SOAP response → JSON or fault.
//!
//! Invariants: no IO, no global state, no panics on any input (client JSON or backend
//! bytes). Every failure is a value: [`FieldError`]s for client input,
//! [`decode::DecodeError`] for backend responses.

pub mod decode;
pub mod encode;
pub mod fault;
pub mod multiref;

/// XML text rules live with the schema reader, which needs them first.
pub use crate::schema::xmltext;

use serde::Serialize;

/// One problem with one input value; several are reported at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer (RFC 6901) into the request body, when the value came from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// `path`, `query` or `header` when the value came from a parameter.
    #[serde(rename = "in", skip_serializing_if = "Option::is_none")]
    pub location: Option<&'static str>,
    /// The parameter's name, with `in`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// What is wrong and what is expected.
    pub detail: String,
}

impl FieldError {
    /// An error about the value at a JSON pointer of the SOAP input being built.
    pub fn at(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { pointer: Some(pointer.into()), location: None, parameter: None, detail: detail.into() }
    }
}
/// XML Schema instance namespace (`xsi:nil`, `xsi:type`).
pub(crate) const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Appends a JSON-pointer token, escaped per RFC 6901.
pub(crate) fn pointer_push(pointer: &str, token: &str) -> String {
    let mut p = String::with_capacity(pointer.len() + token.len() + 1);
    p.push_str(pointer);
    p.push('/');
    for c in token.chars() {
        match c {
            '~' => p.push_str("~0"),
            '/' => p.push_str("~1"),
            _ => p.push(c),
        }
    }
    p
}
