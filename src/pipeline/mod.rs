//! One request through a compiled route: match → collect inputs → encode → backend →
//! decode → JSON, or a [`crate::error::GatewayError`] at whichever step failed.

pub mod handler;
