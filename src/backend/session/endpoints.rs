//! Where a session's captured endpoint (`url: "{session.server_url}"`) may send later
//! calls. Those calls carry the backend's credentials (Basic, OAuth2, WS-Security, TBA) and
//! the session id, and the URL comes from the ERP's login answer: a hostile or spoofed
//! answer must not be able to send them to another host, or downgrade https to http.

use std::fmt;

/// One `session.allowed_hosts` entry: `host`, `host:port` or `*.domain[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostRule {
    /// Lower-case host, or the domain under `*.`.
    host: String,
    /// `*.domain`: any subdomain of `host` (not `host` itself).
    subdomains: bool,
    /// Without one, the scheme's default port.
    port: Option<u16>,
}

impl HostRule {
    fn matches(&self, host: &str, port: u16, default_port: u16) -> bool {
        let host_ok = if self.subdomains {
            host.strip_suffix(self.host.as_str()).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
        } else {
            host == self.host
        };
        host_ok && self.port.unwrap_or(default_port) == port
    }
}

/// The origins a session's endpoint may point at.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// (scheme, host, port) of the backend's URL and the login call's.
    own: Vec<(String, String, u16)>,
    /// `session.allowed_hosts`.
    hosts: Vec<HostRule>,
    /// The backend is reached over https: a session never moves it to plain http.
    https_only: bool,
}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let own: Vec<String> = self.own.iter().map(|(s, h, p)| format!("{s}://{h}:{p}")).collect();
        f.debug_struct("Endpoints").field("own", &own).field("hosts", &self.hosts).finish()
    }
}

impl Endpoints {
    /// The backend's own origins (its URL, the login call's) and the configured extra
    /// hosts; an entry that cannot be read is an error naming it.
    pub(crate) fn new<'a>(
        own: impl IntoIterator<Item = &'a reqwest::Url>,
        allowed_hosts: &[String],
    ) -> Result<Self, String> {
        let mut e = Endpoints::default();
        for url in own {
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else { continue };
            e.https_only |= url.scheme() == "https";
            e.own.push((url.scheme().to_string(), host.to_ascii_lowercase(), port));
        }
        for entry in allowed_hosts {
            e.hosts.push(parse_rule(entry)?);
        }
        Ok(e)
    }

    /// Refuses a URL outside the allowed origins; the reason names its host, never the rest
    /// (a path may hold an org id or a session).
    pub(crate) fn check(&self, url: &reqwest::Url) -> Result<(), String> {
        let scheme = url.scheme();
        if !matches!(scheme, "http" | "https") {
            return Err("the session's url is not an http(s) URL".into());
        }
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let default_port = if scheme == "https" { 443 } else { 80 };
        let port = url.port().unwrap_or(default_port);
        if self.https_only && scheme == "http" {
            return Err(format!(
                "the login answer names plain http://{host}:{port} for later calls, and the backend is reached over \
                 https: refused (the backend's credentials never go out unencrypted)"
            ));
        }
        let own = self.own.iter().any(|(s, h, p)| *h == host && *p == port && (s == scheme || scheme == "https"));
        if own || self.hosts.iter().any(|r| r.matches(&host, port, default_port)) {
            return Ok(());
        }
        Err(format!(
            "the login answer names {host}:{port} for later calls, which is neither the backend's own origin nor in \
             session.allowed_hosts: refused (the backend's credentials go only to configured hosts)"
        ))
    }
}

/// Reads `host`, `host:port`, `*.domain` or `*.domain:port`.
fn parse_rule(entry: &str) -> Result<HostRule, String> {
    let text = entry.trim().to_ascii_lowercase();
    let bad = |why: &str| {
        format!("{entry:?} {why}; write a host name such as erp.example.com, erp.example.com:8443 or *.example.com")
    };
    if text.contains("://") || text.contains('/') {
        return Err(bad("is a URL"));
    }
    let (subdomains, rest) = match text.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, text.as_str()),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            (h, Some(p.parse::<u16>().map_err(|_| bad("has a port that is not a number"))?))
        }
        _ => (rest, None),
    };
    let label_ok = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if host.is_empty() || !host.split('.').all(label_ok) || host.contains('*') {
        return Err(bad("is not a host name"));
    }
    Ok(HostRule { host: host.to_string(), subdomains, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).expect("url")
    }

    #[test]
    fn only_the_backends_origin_and_listed_hosts_pass() {
        let backend = url("https://login.salesforce.com/services/Soap/u/58.0");
        let e =
            Endpoints::new([&backend], &["*.my.salesforce.com".into(), "erp.plant.local:8443".into()]).expect("rules");
        assert!(e.check(&url("https://login.salesforce.com/services/Soap/u/58.0/00D")).is_ok());
        assert!(e.check(&url("https://acme.my.salesforce.com/services/Soap/u/58.0/00D")).is_ok());
        assert!(e.check(&url("https://erp.plant.local:8443/x")).is_ok());
        for refused in [
            "https://evil.example/x",
            "https://my.salesforce.com/x", // the domain itself is not a subdomain
            "https://acme.my.salesforce.com.evil.example/x", // a suffix trick
            "https://login.salesforce.com:8443/x", // another port
            "https://erp.plant.local/x",   // listed with another port
            "http://login.salesforce.com/x", // https → http
            "http://acme.my.salesforce.com/x",
            "ftp://login.salesforce.com/x",
        ] {
            let why = e.check(&url(refused)).expect_err(refused);
            assert!(!why.contains("/x"), "the reason names the host only: {why}");
        }
        // A plain-http backend may be sent to its own origin over https, never elsewhere.
        let e = Endpoints::new([&url("http://127.0.0.1:8080/soap")], &[]).expect("rules");
        assert!(e.check(&url("http://127.0.0.1:8080/other")).is_ok());
        assert!(e.check(&url("http://127.0.0.1:9090/evil")).is_err());
    }

    #[test]
    fn unreadable_entries_are_named() {
        for bad in ["https://x.example", "x.example/path", "x.example:http", "", "*.", "a..b", "*.*.example"] {
            let e = Endpoints::new([], &[bad.to_string()]).expect_err(bad);
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
