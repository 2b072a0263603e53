//! Veneer: a REST/JSON facade in front of SOAP ERPs.
//!
//! Data flows one way, and each step has its own module:
//!
//! - [`config`]: YAML files → validated, compiled, immutable [`config::Gateway`] snapshot.
//! - [`schema`]: the operation model (element trees, XSD types) read from a WSDL.
//! - [`translate`]: the pure core, JSON ⇄ SOAP. No IO, no panics on any input.
//! - [`route`]: compiled routes, their inputs, cache and delivery settings, and the
//!   exchange with the ERP (encode → [`backend`] call → decode) that every way in uses.
//! - [`pipeline`]: one HTTP request through a compiled route: authenticate → throttle →
//!   `Idempotency-Key` → exchange, queue or cache → JSON or problem.
//! - [`auth`]: OAuth2: the built-in issuer, bearer checks, external issuers, introspection.
//! - [`throttle`]: rate limits and quotas per client and route (local, or shared in Redis).
//! - [`backend`]: pooled HTTP clients for the SOAP services, and their protections.
//! - [`delivery`]: queued writes (durable store, delivery workers, dead letters) and
//!   `Idempotency-Key`.
//! - [`ingest`]: telemetry in: the data dictionary, `POST /telemetry`, MQTT.
//! - [`state`]: what outlives a config snapshot (buckets, counters, replay memory, backend
//!   slots and breakers), so a reload never resets it.
//! - [`server`]: the axum app, its middleware stack, health endpoints, graceful shutdown.
//! - `placeholder`: `{…}` placeholders, split one way for every template in the config.
//! - [`error`]: the one error type and its mapping to `application/problem+json`.
//! - [`openapi`]: the OpenAPI 3.1 document, built from the compiled routes.
//! - [`telemetry`]: Prometheus metrics with bounded labels.
//! - [`import`]: `veneer import-wsdl`, a WSDL turned into routes.
//! - [`admin`]: `veneer keys` and `veneer client`: signing keys and client secrets.
//! - [`dev`]: the in-process sample ERP behind `veneer serve --dev`.
//! - [`cli`]: the `veneer` command line.
//!
//! The layers import downwards only (`tests/architecture.rs` keeps the graph free of loops):
//! `schema` ← `translate` ← `error` ← `throttle`, `auth` ← `backend` ← `state`, `route` ←
//! `delivery` ← `ingest` ← `config` ← `openapi`, `pipeline` ← `server` ← `cli`. A room below
//! reads what it needs from the serving snapshot through a trait of its own
//! (`backend::Kept`, `delivery::Directory`, `ingest::mqtt::Current`), implemented above.
//!
//! Items are `pub(crate)` unless something outside the crate uses them. The public seams are
//! what the binary, the end-to-end tests, the benchmarks and the examples drive: compiling a
//! config (`config::compile`, `CompileOptions`, `ConfigSource`) and serving it
//! (`server::app`, `server::run`, `AppState`); the pure translation core (`translate`,
//! `schema::wsdl::read`) that the fixture, fuzz and decoder benchmarks call directly; the
//! delivery store and its items (`delivery`), which crash tests open after a kill -9; the
//! sample ERP (`dev::start`); and the operator commands (`admin`, `import`, `openapi`).

pub mod admin;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod dev;
pub mod error;
pub mod import;
pub mod ingest;
pub mod openapi;
pub mod pipeline;
pub(crate) mod placeholder;
pub mod route;
pub mod schema;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod throttle;
pub mod translate;
