//! Compiles `limits:`, clients' own limits and quotas, and route limits into [`Throttle`].

use std::time::Duration;

use super::problems::{CompileOptions, FileText};
use super::raw::{GatewayFile, RateSection, RouteLimitSection};
use super::{ConfigProblem, ConfigSource, secret, units};
use crate::state::Retained;
use crate::throttle::quota::{Quota, Window};
use crate::throttle::rate::Rate;
use crate::throttle::shared::{OnUnavailable, Shared};
use crate::throttle::{Limit, RouteLimit, Throttle};

/// Rate of the dev-mode demo client (DESIGN.md): newcomers see throttling work.
pub(crate) const DEV_CLIENT_RATE: (&str, u32) = ("100/s", 200);

/// Readings per caller by default: a line of 100 machines reporting ten sensors a second,
/// with room for two full batches back to back.
pub(crate) const DEFAULT_READINGS_RATE: (&str, u32) = ("1000/s", 2000);

/// Compiles the gateway-wide and per-client parts.
pub(crate) fn compile(
    file: &FileText,
    raw: &GatewayFile,
    options: &CompileOptions,
    retained: &Retained,
    problems: &mut Vec<ConfigProblem>,
) -> Throttle {
    let registry = retained.limiters.clone();
    let mut fail = |key: &str, m: String| problems.push(file.at(&["limits", key], m));
    let section = raw.limits.as_ref();
    let shared = section.and_then(|l| l.redis.as_ref()).and_then(|r| {
        let url = match (&r.url, &r.url_env) {
            (Some(u), None) => Ok(u.clone()),
            (None, Some(_)) => secret::resolve(&ConfigSource::Embedded, r.url_env.as_deref(), None, "url"),
            _ => Err("limits.redis needs exactly one of url or url_env".to_string()),
        };
        let timeout = match r.timeout.as_deref().map(units::duration) {
            None => Ok(Duration::from_millis(50)),
            Some(d) => d,
        };
        let policy: OnUnavailable = r.on_unavailable.unwrap_or_default();
        let made = url.and_then(|u| {
            let timeout = timeout?;
            Shared::new(&u, r.prefix.clone().unwrap_or_else(|| "veneer:".into()), timeout, policy)
        });
        made.map_err(|m| fail("redis", format!("limits.redis: {m}"))).ok()
    });
    let mut t = Throttle { registry: registry.clone(), shared: shared.clone(), ..Throttle::default() };
    if let Some(d) = section.and_then(|l| l.default.as_ref()) {
        match rate(d) {
            Ok(r) => t.default_client = Some(Limit::new("client", "client-default", r, &registry, shared.clone())),
            Err(m) => fail("default", format!("limits.default: {m}")),
        }
    }
    let clients = raw.auth.as_ref().map(|a| a.clients.as_slice()).unwrap_or_default();
    for (i, c) in clients.iter().enumerate() {
        let Some(l) = &c.limits else { continue };
        let index = i.to_string();
        let mut fail_client = |m: String| {
            problems.push(file.at(&["auth", "clients", &index, "limits"], format!("client {}: limits: {m}", c.id)))
        };
        if let Some(r) = &l.rate {
            match Rate::parse(r, l.burst) {
                Ok(r) => {
                    t.clients.insert(
                        c.id.clone(),
                        Limit::new("client", &format!("client:{}", c.id), r, &registry, shared.clone()),
                    );
                }
                Err(m) => fail_client(m),
            }
        }
        if let Some(q) = &l.quota {
            let mut quotas = Vec::new();
            for (window, limit) in [(Window::Day, q.day), (Window::Month, q.month)] {
                match limit {
                    Some(0) => {
                        fail_client("a quota of 0 would refuse every call; remove it or disable the client".into())
                    }
                    Some(n) => quotas.push(Quota::new(window, n, retained.quota_counts(window))),
                    None => {}
                }
            }
            t.quotas.insert(c.id.clone(), quotas);
        }
    }
    // Telemetry's readings: counted one by one, so a 1 000-reading batch costs 1 000.
    let readings = raw.telemetry.as_ref().and_then(|t| t.readings_limit.as_ref());
    let max_readings = raw.telemetry.as_ref().and_then(|t| t.max_readings).unwrap_or(1000);
    let readings_rate = match readings {
        Some(r) => rate(r).map_err(|m| format!("telemetry.readings_limit: {m}")),
        None => Rate::parse(DEFAULT_READINGS_RATE.0, Some(DEFAULT_READINGS_RATE.1)),
    };
    match readings_rate {
        Ok(r) if (r.burst as usize) < max_readings => problems.push(file.at(
            &["telemetry", "readings_limit"],
            format!(
                "telemetry.readings_limit: a burst of {} is less than max_readings ({max_readings}): a full batch would never pass; raise the burst or lower max_readings",
                r.burst
            ),
        )),
        Ok(r) => t.readings = Some(Limit::new("readings", "telemetry-readings", r, &registry, shared.clone())),
        Err(m) => problems.push(file.at(&["telemetry", "readings_limit"], m)),
    }
    if let Some((id, _)) = &options.dev_client
        && let Ok(r) = Rate::parse(DEV_CLIENT_RATE.0, Some(DEV_CLIENT_RATE.1))
    {
        t.clients.insert(id.clone(), Limit::new("client", &format!("client:{id}"), r, &registry, shared));
    }
    t
}

fn rate(s: &RateSection) -> Result<Rate, String> {
    Rate::parse(&s.rate, s.burst)
}

/// A route's own limit.
pub(crate) fn route(s: &RouteLimitSection, route_key: &str, t: &Throttle) -> Result<RouteLimit, String> {
    let rate = Rate::parse(&s.rate, s.burst)?;
    let per_client = s.per == super::raw::LimitPer::Client;
    let (name, scope) = if per_client {
        ("client-route", format!("client-route:{route_key}"))
    } else {
        ("route", format!("route:{route_key}"))
    };
    Ok(RouteLimit { limit: Limit::new(name, &scope, rate, &t.registry, t.shared.clone()), per_client })
}
