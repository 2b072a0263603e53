//! Compiles `mqtt:` in gateway.yaml: broker address, client id, credentials from env or
//! file, TLS material, shared-subscription group, error topic.

use std::time::Duration;

use super::problems::{AtLeast, FileText, duration};
use super::raw::{BackendTlsSection, GatewayFile, MqttSection};
use super::{ConfigProblem, ConfigSource, secret, tls};
use crate::ingest::mqtt::MqttSettings;

/// The MQTT settings, or `None` without an `mqtt:` section (or with problems).
pub(crate) fn compile(
    source: &ConfigSource,
    file: &FileText,
    raw: &GatewayFile,
    problems: &mut Vec<ConfigProblem>,
) -> Option<MqttSettings> {
    let m = raw.mqtt.as_ref()?;
    let before = problems.len();
    let mut fail = |key: &str, message: String| {
        let path: Vec<&str> = std::iter::once("mqtt").chain(key.split('.').filter(|k| !k.is_empty())).collect();
        problems.push(file.at(&path, format!("mqtt: {message}")))
    };
    if !cfg!(feature = "mqtt") {
        fail("", "this veneer was built without the mqtt feature; rebuild with default features".into());
    }
    let (secure, host, port) = broker(&m.url, &mut fail)?;
    if host.is_empty() {
        fail("url", format!("url {:?} names no host", m.url));
    }
    if m.client_id.trim().is_empty() || m.client_id.len() > 128 {
        fail(
            "client_id",
            "client_id must be 1 to 128 characters, and stable: the broker keeps the session under it".into(),
        );
    }
    let credentials = credentials(source, m, &mut fail);
    let tls = broker_tls(source, secure, m.tls.as_ref(), &mut fail);
    let keep_alive =
        duration("keep_alive", m.keep_alive.as_deref(), Duration::from_secs(30), AtLeast::Secs(1), &mut |msg| {
            fail("keep_alive", msg)
        });
    if let Some(g) = &m.share
        && (g.is_empty() || g.contains(['/', '+', '#']))
    {
        fail("share", format!("share {g:?} must be a plain group name such as veneer"));
    }
    if let Some(t) = &m.error_topic
        && (t.is_empty() || t.contains(['+', '#']))
    {
        fail("error_topic", format!("error_topic {t:?} must be a topic without wildcards"));
    }
    if problems.len() > before {
        return None;
    }
    Some(MqttSettings {
        host,
        port,
        tls,
        client_id: m.client_id.clone(),
        credentials,
        share: m.share.clone(),
        error_topic: m.error_topic.clone(),
        keep_alive,
    })
}

/// `url:` as (TLS or not, host, port), the port defaulting to 1883 or 8883.
fn broker(url: &str, fail: &mut dyn FnMut(&str, String)) -> Option<(bool, String, u16)> {
    let (secure, rest) = match url.split_once("://") {
        Some(("mqtt" | "tcp", rest)) => (false, rest),
        Some(("mqtts" | "ssl", rest)) => (true, rest),
        _ => {
            fail("url", format!("url {:?} is not mqtt://host:port or mqtts://host:port", url));
            return None;
        }
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) => (h.trim_matches(['[', ']']).to_string(), p),
            Err(_) => {
                fail("url", format!("url {:?}: port {p:?} is not a number", url));
                return None;
            }
        },
        None => (rest.to_string(), if secure { 8883 } else { 1883 }),
    };
    Some((secure, host, port))
}

/// `username:` and its password (`password_env` or `password_file`); a password alone is a
/// problem.
fn credentials(source: &ConfigSource, m: &MqttSection, fail: &mut dyn FnMut(&str, String)) -> Option<(String, String)> {
    let password = match (&m.password_env, &m.password_file) {
        (None, None) => None,
        (env, f) => match secret::resolve(source, env.as_deref(), f.as_deref(), "password") {
            Ok(p) => Some(p.trim_end_matches(['\r', '\n']).to_string()),
            Err(msg) => {
                fail(if m.password_env.is_some() { "password_env" } else { "password_file" }, msg);
                None
            }
        },
    };
    match (&m.username, password) {
        (Some(u), p) => Some((u.clone(), p.unwrap_or_default())),
        (None, Some(_)) => {
            fail(
                if m.password_env.is_some() { "password_env" } else { "password_file" },
                "a password needs a username".into(),
            );
            None
        }
        (None, None) => None,
    }
}

/// `tls:` for an `mqtts://` broker: its CA, and a client identity when given.
fn broker_tls(
    source: &ConfigSource,
    secure: bool,
    t: Option<&BackendTlsSection>,
    fail: &mut dyn FnMut(&str, String),
) -> Option<std::sync::Arc<rustls::ClientConfig>> {
    match (secure, t) {
        (false, None) => None,
        (false, Some(_)) => {
            fail("tls", "tls: needs an mqtts:// url".into());
            None
        }
        (true, t) => {
            let ca = t.and_then(|t| t.ca_file.as_deref());
            let identity = t.and_then(|t| t.client_cert_file.as_deref().zip(t.client_key_file.as_deref()));
            match ca {
                None => {
                    fail("url", "mqtts needs tls.ca_file: the CA that signed the broker's certificate".into());
                    None
                }
                Some(ca) => {
                    let (c, k) = identity.map(|(c, k)| (source.path(c), source.path(k))).unzip();
                    match tls::client_config(&source.path(ca), c.as_deref().zip(k.as_deref())) {
                        Ok(cfg) => Some(cfg),
                        Err(msg) => {
                            fail("tls", msg);
                            None
                        }
                    }
                }
            }
        }
    }
}
