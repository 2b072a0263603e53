//! The pure translation core: JSON → SOAP envelope and SOAP response → JSON or fault.
//!
//! Invariants: no IO, no global state, no panics on any input (client JSON or backend
//! bytes). Every failure is a value: [`crate::error::FieldError`]s for client input,
//! [`decode::DecodeError`] for backend responses.

pub mod decode;
pub mod encode;
pub mod fault;
pub mod multiref;
pub mod xmltext;

/// XML Schema instance namespace (`xsi:nil`, `xsi:type`).
pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

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
