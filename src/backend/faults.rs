//! Fault mapping: which HTTP status a SOAP Fault becomes.

use axum::http::StatusCode;
use regex::Regex;

use crate::translate::fault::Fault;

/// One rule; every condition given must match.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// Fault code or subcode, prefix ignored.
    pub code: Option<String>,
    /// Pattern searched in the fault reason.
    pub reason: Option<Regex>,
    /// Status to answer with.
    pub status: StatusCode,
}

impl FaultRule {
    /// Does `fault` match every condition given?
    pub fn matches(&self, fault: &Fault) -> bool {
        self.code.as_deref().is_none_or(|c| fault.has_code(c))
            && self.reason.as_ref().is_none_or(|r| r.is_match(&fault.reason))
    }
}

/// The status for a fault: the route's rules, then the backend's, then the default
/// (422 for client/sender faults, 502 for everything else).
pub(crate) fn status_for(route_rules: &[FaultRule], backend_rules: &[FaultRule], fault: &Fault) -> StatusCode {
    route_rules
        .iter()
        .chain(backend_rules)
        .find(|r| r.matches(fault))
        .map(|r| r.status)
        .unwrap_or(if fault.is_client_fault() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::BAD_GATEWAY })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SoapVersion;

    fn fault(code: &str, reason: &str) -> Fault {
        Fault {
            version: SoapVersion::V11,
            code: code.into(),
            subcodes: vec![],
            reason: reason.into(),
            actor: None,
            detail: None,
            declared: vec![],
        }
    }

    #[test]
    fn rules_then_defaults() {
        let rules = vec![FaultRule {
            code: Some("Client".into()),
            reason: Regex::new("does not exist").ok(),
            status: StatusCode::NOT_FOUND,
        }];
        assert_eq!(status_for(&rules, &[], &fault("soap:Client", "Item 9 does not exist")), StatusCode::NOT_FOUND);
        assert_eq!(status_for(&rules, &[], &fault("soap:Client", "bad quantity")), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status_for(&rules, &[], &fault("soap:Server", "does not exist")), StatusCode::BAD_GATEWAY);
        let by_sub = vec![FaultRule { code: Some("NotFound".into()), reason: None, status: StatusCode::NOT_FOUND }];
        let mut f = fault("env:Sender", "x");
        f.subcodes.push("app:NotFound".into());
        assert_eq!(status_for(&[], &by_sub, &f), StatusCode::NOT_FOUND);
    }
}
