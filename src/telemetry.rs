//! Metrics (Prometheus text at `/metrics`) and the per-request access log.
//!
//! Labels are bounded: routes by their configured id (`GET /items/{no}`), never raw paths;
//! clients by registered id, with every external or anonymous caller folded into one value;
//! failure reasons from a fixed list. Token values never appear anywhere.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Buckets for request and backend latency, in seconds (1 ms … 30 s).
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The process-wide recorder, installed on first use (several gateways in one test process
/// share it). `None` when another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS).ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}

/// Installs the recorder now (idempotent): call before serving, so the first seconds'
/// metrics are kept.
pub fn install() {
    let _ = handle();
}

/// Renders the metrics page.
pub(crate) fn render() -> String {
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

/// Compacts histogram buckets; call periodically (STACK.md trap 8).
pub(crate) fn upkeep() {
    if let Some(h) = handle() {
        h.run_upkeep();
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The method as a label: the standard methods by name, anything else `other` (a caller
/// chooses the method token, so it must not choose series).
pub(crate) fn method_label(method: &str) -> &'static str {
    const KNOWN: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];
    KNOWN.iter().find(|m| **m == method).copied().unwrap_or("other")
}

/// A fault code as a label: the SOAP 1.1/1.2 codes (a dotted 1.1 subcode such as
/// `Client.NotFound` counts under `Client`), anything else `other` (the backend chooses it).
pub(crate) fn fault_code_label(code: &str) -> &'static str {
    const KNOWN: &[&str] =
        &["Client", "Server", "VersionMismatch", "MustUnderstand", "DataEncodingUnknown", "Sender", "Receiver"];
    let head = code.split('.').next().unwrap_or(code);
    KNOWN.iter().find(|c| **c == head).copied().unwrap_or("other")
}

/// A route's request metrics, their handles resolved on first use and kept: a request
/// then costs a map read and two atomic updates, not label strings and registry lookups.
/// Lazily, because a handle taken before the recorder is installed would record nothing.
pub struct RouteMetrics {
    route: String,
    duration: OnceLock<metrics::Histogram>,
    /// Client label → counters by method and status class.
    requests: std::sync::RwLock<std::collections::HashMap<Box<str>, [Option<metrics::Counter>; SLOTS]>>,
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "other"];
const CLASSES: usize = 5;
const SLOTS: usize = 10 * CLASSES;

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics").field("route", &self.route).finish_non_exhaustive()
    }
}

impl RouteMetrics {
    /// Handles for the route `route` (its id).
    pub fn new(route: &str) -> Self {
        RouteMetrics { route: route.to_string(), duration: OnceLock::new(), requests: Default::default() }
    }

    /// One request served on this route.
    pub fn request(&self, method: &str, status: u16, client: &str, elapsed: Duration) {
        let m = METHODS.iter().position(|k| *k == method_label(method)).unwrap_or(METHODS.len() - 1);
        let c = (status / 100).clamp(1, 5) as usize - 1;
        let slot = m * CLASSES + c;
        let known = self.requests.read().ok().and_then(|map| map.get(client).and_then(|slots| slots[slot].clone()));
        let counter = known.unwrap_or_else(|| {
            let labels = [
                ("route", self.route.clone()),
                ("method", METHODS[m].to_string()),
                ("status", status_class(status).to_string()),
                ("client", client.to_string()),
            ];
            let counter = counter!("veneer_requests_total", &labels);
            if let Ok(mut map) = self.requests.write() {
                map.entry(client.into()).or_insert_with(|| [const { None }; SLOTS])[slot] = Some(counter.clone());
            }
            counter
        });
        counter.increment(1);
        self.duration
            .get_or_init(|| histogram!("veneer_request_duration_seconds", "route" => self.route.clone()))
            .record(elapsed.as_secs_f64());
    }
}

/// One served request (of no route: unmatched paths).
pub fn request(route: &str, method: &str, status: u16, client: &str, elapsed: Duration) {
    let labels = [
        ("route", route.to_string()),
        ("method", method_label(method).to_string()),
        ("status", status_class(status).to_string()),
        ("client", client.to_string()),
    ];
    counter!("veneer_requests_total", &labels).increment(1);
    histogram!("veneer_request_duration_seconds", "route" => route.to_string()).record(elapsed.as_secs_f64());
}

/// What became of a backend call (all attempts), as the `outcome` label.
const OUTCOMES: [&str; 4] = ["ok", "shed", "timeout", "error"];

/// A backend's call-duration histograms by operation and outcome, resolved on first use
/// (like [`RouteMetrics`]) instead of building label strings per call.
pub(crate) struct BackendMetrics {
    backend: String,
    operations: Vec<(String, [OnceLock<metrics::Histogram>; OUTCOMES.len()])>,
}

impl std::fmt::Debug for BackendMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendMetrics").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl BackendMetrics {
    /// Handles for backend `backend` with these operations (by index).
    pub(crate) fn new<'a>(backend: &str, operations: impl IntoIterator<Item = &'a str>) -> Self {
        let operations = operations.into_iter().map(|o| (o.to_string(), Default::default())).collect();
        BackendMetrics { backend: backend.to_string(), operations }
    }

    /// One call of operation `op` (all attempts); `outcome` is one of `ok`, `shed`,
    /// `timeout`, `error`.
    pub(crate) fn call(&self, op: usize, outcome: &'static str, elapsed: Duration) {
        let Some((name, slots)) = self.operations.get(op) else { return };
        let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(OUTCOMES.len() - 1);
        slots[i]
            .get_or_init(|| {
                histogram!("veneer_backend_duration_seconds", "backend" => self.backend.clone(), "operation" => name.clone(), "outcome" => OUTCOMES[i])
            })
            .record(elapsed.as_secs_f64());
    }
}

/// A SOAP Fault from a backend.
pub fn fault(backend: &str, code: &str) {
    counter!("veneer_soap_faults_total", "backend" => backend.to_string(), "code" => fault_code_label(code))
        .increment(1);
}

/// A request refused by a limit (`client`, `route`, `client-route`, `day`, `month`).
pub(crate) fn rate_limited(policy: &str) {
    counter!("veneer_rate_limited_total", "policy" => policy.to_string()).increment(1);
}

/// A call shed to protect a backend (`queue`, `circuit_open`, `busy`).
pub fn shed(backend: &str, reason: &'static str) {
    counter!("veneer_shed_total", "backend" => backend.to_string(), "reason" => reason).increment(1);
}

/// Circuit breaker state: 0 closed, 1 open, 2 half-open.
pub(crate) fn circuit_state(backend: &str, state: u8) {
    gauge!("veneer_circuit_state", "backend" => backend.to_string()).set(f64::from(state));
}

/// An ERP session login (`ok`, `failed`).
pub(crate) fn session_login(backend: &str, outcome: &'static str) {
    counter!("veneer_session_logins_total", "backend" => backend.to_string(), "outcome" => outcome).increment(1);
}

/// A call the ERP refused because it forgot the session (sent again after a new login).
pub(crate) fn session_expired(backend: &str) {
    counter!("veneer_session_expired_total", "backend" => backend.to_string()).increment(1);
}

/// A token issued by the built-in server.
pub(crate) fn token_issued(client: &str) {
    counter!("veneer_tokens_issued_total", "client" => client.to_string()).increment(1);
}

/// A token request refused, or a bearer token rejected, by bounded reason.
pub(crate) fn token_failure(stage: &'static str, reason: &'static str) {
    counter!("veneer_token_failures_total", "stage" => stage, "reason" => reason).increment(1);
}

/// A response-cache lookup.
pub fn cache(route: &str, hit: bool) {
    counter!("veneer_cache_lookups_total", "route" => route.to_string(), "result" => if hit { "hit" } else { "miss" })
        .increment(1);
}

/// A queued delivery event (`accepted`, `delivered`, `retried`, `dead`).
pub fn delivery(backend: &str, event: &'static str) {
    counter!("veneer_deliveries_total", "backend" => backend.to_string(), "event" => event).increment(1);
}

/// Idempotency records forgotten before their time because the store reached its bound.
pub(crate) fn idempotency_evicted(n: usize) {
    counter!("veneer_idempotency_evicted_total").increment(n as u64);
}

/// Readings taken in, by how they came (`http`, `mqtt`) and what became of them
/// (`queued`, `delivered`, `rejected`, `failed`).
pub fn readings(origin: &'static str, outcome: &'static str, n: u64) {
    counter!("veneer_readings_total", "origin" => origin, "outcome" => outcome).increment(n);
}

/// A data-dictionary lookup: `fetched` from the ERP or `failed` (a stale value may stand in).
pub fn lookup(name: &str, outcome: &'static str) {
    counter!("veneer_lookups_total", "lookup" => name.to_string(), "outcome" => outcome).increment(1);
}

/// MQTT ingress: messages received, acknowledged, rejected (dead-lettered), and connection
/// events.
pub fn mqtt(event: &'static str) {
    counter!("veneer_mqtt_messages_total", "event" => event).increment(1);
}

/// MQTT ack lag: seconds from a message's arrival to its acknowledgement (after storing).
pub(crate) fn mqtt_ack_lag(seconds: f64) {
    histogram!("veneer_mqtt_ack_lag_seconds").record(seconds);
}

/// MQTT connection state (1 connected, 0 not).
pub(crate) fn mqtt_connected(up: bool) {
    gauge!("veneer_mqtt_connected").set(if up { 1.0 } else { 0.0 });
}

/// A backend's delivery queue: unfinished items, the oldest one's age, and whether paused.
pub(crate) fn queue_depth(backend: &str, depth: usize, oldest_seconds: f64, paused: bool) {
    gauge!("veneer_delivery_queue_depth", "backend" => backend.to_string()).set(depth as f64);
    gauge!("veneer_delivery_oldest_seconds", "backend" => backend.to_string()).set(oldest_seconds);
    gauge!("veneer_delivery_paused", "backend" => backend.to_string()).set(if paused { 1.0 } else { 0.0 });
}

/// Shared limiter (Redis) unreachable.
pub(crate) fn limiter_unavailable() {
    counter!("veneer_limiter_redis_errors_total").increment(1);
}

/// A config reload attempt.
pub fn reload(ok: bool) {
    counter!("veneer_config_reloads_total", "result" => if ok { "success" } else { "failure" }).increment(1);
}

/// The loaded config's fingerprint (one series set to 1; the previous one removed).
pub(crate) fn config_loaded(previous: Option<&str>, hash: &str) {
    if let Some(p) = previous.filter(|p| *p != hash) {
        gauge!("veneer_config_info", "hash" => p.to_string()).set(0.0);
    }
    gauge!("veneer_config_info", "hash" => hash.to_string()).set(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_and_backend_chosen_labels_are_bounded() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("get"), "other", "methods are case-sensitive tokens");
        assert_eq!(method_label("XKCDXKCDXKCD"), "other");
        assert_eq!(fault_code_label("Client.NotFound"), "Client");
        assert_eq!(fault_code_label("Receiver"), "Receiver");
        assert_eq!(fault_code_label("ORA-01017"), "other");
    }

    #[test]
    fn route_metrics_count_by_method_status_and_client() {
        install();
        let m = RouteMetrics::new("GET /metrics-test/{x}");
        m.request("GET", 200, "demo", Duration::from_millis(3));
        m.request("GET", 204, "demo", Duration::from_millis(3));
        m.request("BREW", 503, "external", Duration::from_millis(3));
        let page = render();
        let line = |labels: &str| {
            page.lines()
                .find(|l| {
                    l.starts_with("veneer_requests_total{")
                        && l.contains("route=\"GET /metrics-test/{x}\"")
                        && l.contains(labels)
                })
                .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
        };
        assert_eq!(line("method=\"GET\",status=\"2xx\",client=\"demo\"").as_deref(), Some("2"), "{page}");
        assert_eq!(line("method=\"other\",status=\"5xx\",client=\"external\"").as_deref(), Some("1"), "{page}");
        assert!(page.contains("veneer_request_duration_seconds_count{route=\"GET /metrics-test/{x}\"} 3"), "{page}");
    }
}
