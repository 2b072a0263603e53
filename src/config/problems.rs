//! A leaf module for reporting config problems: a config file's text with the marks of its
//! keys, parsing it, and the options every compile step reads. The `compile*.rs` modules all
//! build on it, and none on each other's internals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use regex::Regex;

use super::marks::Marks;
use super::raw::FaultRuleSection;
use super::units;
use super::{ConfigProblem, ConfigSource};
use crate::backend::faults::FaultRule;
use crate::state::Retained;

/// Adjustments made by the caller rather than the files (dev mode points backends at the
/// in-process ERP).
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Backend name → endpoint URL, replacing the configured one.
    pub backend_urls: BTreeMap<String, String>,
    /// Replaces `auth.issuer` (dev mode: the address actually bound).
    pub issuer: Option<String>,
    /// A client (id, secret) granted every scope routes use (dev mode's demo client).
    pub dev_client: Option<(String, String)>,
    /// A client (id, secret) granted the admin scope (dev mode's `dev-admin`).
    pub dev_admin: Option<(String, String)>,
    /// Replaces `delivery.data_dir` (dev mode's data directory).
    pub data_dir: Option<PathBuf>,
    /// State carried from one snapshot to the next (limits, quotas, replay memory, backend
    /// protections). The default starts afresh; a reloader passes the same one every time.
    pub retained: Arc<Retained>,
}

/// A file's text plus where it came from, for locating problems.
pub(crate) struct FileText {
    pub path: PathBuf,
    pub text: String,
    /// Where each key is, from the YAML parser.
    pub marks: Marks,
}

impl FileText {
    /// A problem about the key at `path` (mapping keys and sequence indexes from the root),
    /// on its line; a key that is not in the file is blamed on its nearest ancestor.
    pub(crate) fn at(&self, path: &[&str], message: impl Into<String>) -> ConfigProblem {
        ConfigProblem { file: self.path.clone(), line: self.marks.line(path), message: message.into() }
    }

    /// The line of the key at `path` (or of its nearest ancestor in the file).
    pub(crate) fn line(&self, path: &[&str]) -> Option<usize> {
        self.marks.line(path)
    }
}

pub(crate) fn read_text(source: &ConfigSource, rel: &Path) -> Result<FileText, ConfigProblem> {
    let bytes = source.read(rel)?;
    let text = String::from_utf8(bytes).map_err(|_| ConfigProblem {
        file: rel.into(),
        line: None,
        message: "not UTF-8 text".into(),
    })?;
    let marks = Marks::of(&text);
    Ok(FileText { path: rel.into(), text, marks })
}

pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(file: &FileText) -> Result<T, ConfigProblem> {
    if file.text.trim().is_empty() {
        // An empty file is an empty mapping, not an error.
        return yaml_serde::from_str("{}").map_err(|e| ConfigProblem {
            file: file.path.clone(),
            line: None,
            message: e.to_string(),
        });
    }
    yaml_serde::from_str(&file.text).map_err(|e| {
        let at = e.location().map(|l| (l.line(), l.column()));
        let message = e.to_string();
        // A key indented wrongly still parses, as a key of another mapping, and the one it
        // belonged to then lacks it: point at the key's own line rather than the mapping's.
        let hint = at.and_then(|(line, column)| misplaced_key(&file.text, &message, line, column));
        match hint {
            Some((line, hint)) => {
                ConfigProblem { file: file.path.clone(), line: Some(line), message: format!("{message}; {hint}") }
            }
            None => ConfigProblem { file: file.path.clone(), line: at.map(|(l, _)| l), message },
        }
    })
}

/// For "missing field `NAME`" on the mapping whose first key is at (`line`, `column`): the
/// line within that mapping's extent where `NAME:` is written at another indentation, and
/// what to change.
fn misplaced_key(text: &str, message: &str, line: usize, column: usize) -> Option<(usize, String)> {
    let (_, rest) = message.split_once("missing field `")?;
    let name = rest.split('`').next()?;
    let indent = column.checked_sub(1)?;
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate().skip(line) {
        let body = l.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let own = l.len() - body.len();
        let is_it = body.strip_prefix(name).is_some_and(|rest| rest.trim_start().starts_with(':'));
        if is_it && own != indent {
            return Some((
                i + 1,
                format!(
                    "line {} has `{name}:` indented by {own} spaces where the keys it belongs with are indented by {indent}: align it with them",
                    i + 1
                ),
            ));
        }
        if own < indent {
            break;
        }
    }
    None
}

/// Compiles fault rules (the list at key path `at`), recording problems against the file.
pub(crate) fn fault_rules(
    file: &FileText,
    at: &[&str],
    sections: &[FaultRuleSection],
    problems: &mut Vec<ConfigProblem>,
) -> Vec<FaultRule> {
    let mut rules = Vec::new();
    for (i, r) in sections.iter().enumerate() {
        let index = i.to_string();
        let key = |k: &'static str| -> Vec<&str> {
            let mut p = at.to_vec();
            p.push(&index);
            if !k.is_empty() {
                p.push(k);
            }
            p
        };
        let status =
            match StatusCode::from_u16(r.status) {
                Ok(s) if s.is_client_error() || s.is_server_error() => s,
                _ => {
                    problems.push(file.at(
                        &key("status"),
                        format!("fault status {} is not an HTTP error status; use 400–599", r.status),
                    ));
                    continue;
                }
            };
        let reason = match r.reason.as_deref().map(Regex::new) {
            None => None,
            Some(Ok(re)) => Some(re),
            Some(Err(e)) => {
                problems.push(file.at(&key("reason"), format!("fault reason is not a valid regular expression: {e}")));
                continue;
            }
        };
        if r.code.is_none() && reason.is_none() {
            problems.push(file.at(&key(""), "a fault rule needs code:, reason: or both"));
            continue;
        }
        rules.push(FaultRule { code: r.code.clone(), reason, status });
    }
    rules
}

/// The least a duration setting may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtLeast {
    /// Any duration, zero too.
    Zero,
    /// More than zero.
    Positive,
    /// At least this many seconds.
    Secs(u64),
}

/// A duration setting: `default` when absent. A text that is not a duration, or is below
/// `least`, is reported as `"{label}: …"` and gives the default, so the compile goes on and
/// finds every other problem in the same run.
pub(crate) fn duration(
    label: &str,
    text: Option<&str>,
    default: Duration,
    least: AtLeast,
    report: &mut dyn FnMut(String),
) -> Duration {
    let Some(text) = text else { return default };
    let problem = match (units::duration(text), least) {
        (Err(m), _) => format!("{label}: {m}"),
        (Ok(d), AtLeast::Positive) if d.is_zero() => format!("{label} must be more than 0s"),
        (Ok(d), AtLeast::Secs(n)) if d < Duration::from_secs(n) => format!("{label} must be at least {n}s"),
        (Ok(d), _) => return d,
    };
    report(problem);
    default
}

/// `text` as an http(s) URL, or what is wrong with it.
pub(crate) fn http_url(text: &str) -> Result<reqwest::Url, String> {
    match reqwest::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u),
        _ => Err(format!("{text:?} is not an http(s) URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_report_what_is_wrong_and_fall_back_to_the_default() {
        let mut said = Vec::new();
        let mut d = |text: Option<&str>, least| {
            duration("x.timeout", text, Duration::from_secs(7), least, &mut |m| said.push(m))
        };
        assert_eq!(d(None, AtLeast::Positive), Duration::from_secs(7));
        assert_eq!(d(Some("250ms"), AtLeast::Zero), Duration::from_millis(250));
        assert_eq!(d(Some("0s"), AtLeast::Zero), Duration::ZERO);
        assert_eq!(d(Some("0s"), AtLeast::Positive), Duration::from_secs(7));
        assert_eq!(d(Some("500ms"), AtLeast::Secs(1)), Duration::from_secs(7));
        assert_eq!(d(Some("soon"), AtLeast::Zero), Duration::from_secs(7));
        assert_eq!(
            said,
            [
                "x.timeout must be more than 0s",
                "x.timeout must be at least 1s",
                "x.timeout: \"soon\" is not a duration; write e.g. 250ms, 5s or 1m",
            ]
        );
    }
}
