//! What a step may reach beyond its input: hosts over HTTP, a scratch
//! directory, read-only directories the server exposes. Deny by default: a
//! step has exactly what its workflow grants, and a workflow can grant only
//! what the server allows (`--allow-http`, `--allow-read`).
//!
//! A host pattern is `host`, `host:port` or `*.domain[:port]`. Without a
//! port it allows the scheme's default ports (80 and 443) only; `*.` matches
//! every subdomain (not the domain itself). Names are compared lowercase.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// One allowed host (with an optional port).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPattern {
    /// Lowercase; `*.example.org` for subdomains.
    host: String,
    port: Option<u16>,
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bracketed = self.host.contains(':');
        match (self.port, bracketed) {
            (Some(port), true) => write!(f, "[{}]:{port}", self.host),
            (Some(port), false) => write!(f, "{}:{port}", self.host),
            (None, true) => write!(f, "[{}]", self.host),
            (None, false) => f.write_str(&self.host),
        }
    }
}

impl HostPattern {
    /// Parses `api.example.com`, `*.example.org:8443`, `127.0.0.1:9000`, `[::1]:8080`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("{text:?} is not a host pattern ({why}): use host, host:port or *.domain, e.g. api.example.com:443")
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(bad("empty"));
        }
        if text.contains("://") || text.contains('/') {
            return Err(bad("a host, not a URL"));
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (ip, after) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            ip.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
            };
            (ip.to_string(), port)
        } else if text.matches(':').count() > 1 {
            return Err(bad("an IPv6 address goes in brackets"));
        } else {
            match text.split_once(':') {
                Some((host, port)) => (host.to_ascii_lowercase(), Some(port)),
                None => (text.to_ascii_lowercase(), None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("the port must be 1 to 65535"))?,
            ),
        };
        let name = host.strip_prefix("*.").unwrap_or(&host);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if host.parse::<IpAddr>().is_err() && !(name.len() <= 253 && name.split('.').all(label_ok)) {
            return Err(bad("letters, digits, '-' and '.' only; '*.' only at the start"));
        }
        Ok(HostPattern { host, port })
    }

    /// Whether a request to `host` on `port` (the URL's, or the scheme's
    /// default) is allowed by this pattern.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => port == 80 || port == 443,
        };
        port_ok && self.host_matches(&host.to_ascii_lowercase())
    }

    fn host_matches(&self, host: &str) -> bool {
        match self.host.strip_prefix("*.") {
            Some(domain) => {
                host.len() > domain.len() + 1 && host.ends_with(domain) && {
                    let cut = host.len() - domain.len();
                    host.as_bytes()[cut - 1] == b'.'
                }
            }
            None => self.host == host,
        }
    }

    /// Whether everything this pattern allows, `cap` allows too (a server's
    /// `--allow-http` covering a workflow's grant).
    pub fn within(&self, cap: &HostPattern) -> bool {
        let port_ok = cap.port.is_none() && self.port.is_none() || cap.port.is_some() && cap.port == self.port;
        if !port_ok {
            return false;
        }
        match (self.host.strip_prefix("*."), cap.host.strip_prefix("*.")) {
            (None, _) => cap.host_matches(&self.host),
            (Some(domain), Some(cap_domain)) => domain == cap_domain || cap.host_matches(domain),
            (Some(_), None) => false,
        }
    }

    /// The exact address this pattern names, when it is an IP literal: a
    /// grant of exactly that address lets a step reach it even if it is
    /// loopback or private.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// Grants of one step, validated and resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Grants {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HostPattern>,
    /// Size of a fresh `/scratch` directory per attempt, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch: Option<u64>,
    /// Names of the server's read-only directories, each seen at `/NAME`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
}

impl Grants {
    pub fn is_empty(&self) -> bool {
        self.http.is_empty() && self.scratch.is_none() && self.read.is_empty()
    }

    /// Whether the step can touch files or the network (what a cache must
    /// not assume is free of effects).
    pub fn has_effects(&self) -> bool {
        !self.is_empty()
    }
}

/// What the server allows workflows to grant.
#[derive(Debug, Clone, Default)]
pub struct ServerGrants {
    /// `--allow-http HOST[,HOST...]`.
    pub http: Vec<HostPattern>,
    /// `--allow-read NAME=DIR`: each directory opened once, as a capability.
    pub read: BTreeMap<String, ReadDir>,
    /// `--allow-unsigned-webhooks`: webhooks with `signature: none`.
    pub unsigned_webhooks: bool,
    /// Accept any grant when validating: for versions already stored, whose
    /// grants were checked when they were applied. Attempts still get only
    /// what is allowed now (`capability_denied` otherwise).
    pub unchecked: bool,
}

/// A directory the server exposes read-only.
#[derive(Debug, Clone)]
pub struct ReadDir {
    pub path: PathBuf,
    pub dir: Arc<cap_std::fs::Dir>,
}

/// The name a scratch directory is seen under; never a read-only name.
pub const SCRATCH: &str = "scratch";

impl ServerGrants {
    /// Adds `--allow-http` values (comma-separated patterns).
    pub fn allow_http(&mut self, list: &str) -> Result<(), String> {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            self.http
                .push(HostPattern::parse(item).map_err(|e| format!("--allow-http: {e}"))?);
        }
        Ok(())
    }

    /// Adds an `--allow-read NAME=DIR`: the directory must exist; it is
    /// opened now and only ever reached through that handle.
    pub fn allow_read(&mut self, spec: &str) -> Result<(), String> {
        let (name, dir) = spec
            .split_once('=')
            .ok_or_else(|| format!("--allow-read {spec:?}: expected NAME=DIR"))?;
        check_dir_name(name).map_err(|e| format!("--allow-read {spec:?}: {e}"))?;
        let path = Path::new(dir);
        let handle = cap_std::fs::Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .map_err(|e| format!("--allow-read {spec:?}: cannot open {}: {e}", path.display()))?;
        self.read.insert(
            name.to_string(),
            ReadDir {
                path: path.to_path_buf(),
                dir: Arc::new(handle),
            },
        );
        Ok(())
    }

    /// The same allowances, accepting any grant when validating.
    pub fn unchecked(&self) -> Self {
        ServerGrants {
            unchecked: true,
            ..self.clone()
        }
    }

    /// Why `pattern` cannot be granted here, if it cannot.
    pub fn refuse_http(&self, pattern: &HostPattern) -> Option<String> {
        if self.unchecked || self.http.iter().any(|cap| pattern.within(cap)) {
            return None;
        }
        Some(format!(
            "http host {pattern} is not allowed by this server (--allow-http: {})",
            list_or_none(self.http.iter().map(ToString::to_string))
        ))
    }

    /// Why directory `name` cannot be granted here, if it cannot.
    pub fn refuse_read(&self, name: &str) -> Option<String> {
        if self.unchecked || self.read.contains_key(name) {
            return None;
        }
        Some(format!(
            "directory {name:?} is not allowed by this server (--allow-read names: {})",
            list_or_none(self.read.keys().cloned())
        ))
    }
}

fn list_or_none(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// A read-only directory's name: what the guest sees as `/NAME`.
pub fn check_dir_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && !name.starts_with('.');
    if !ok {
        return Err(format!(
            "directory name {name:?} must be 1 to 64 letters, digits, '_', '-' or '.', not starting with '.'"
        ));
    }
    if name == SCRATCH {
        return Err(format!(
            "{SCRATCH:?} is the scratch directory's name, not a read-only one"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap()
    }

    #[test]
    fn patterns_allow_their_hosts_and_ports_only() {
        assert!(p("api.example.com").allows("API.example.com", 443));
        assert!(p("api.example.com").allows("api.example.com", 80));
        assert!(!p("api.example.com").allows("api.example.com", 8080));
        assert!(!p("api.example.com").allows("evil-api.example.com", 443));
        assert!(p("*.example.org:8443").allows("a.b.example.org", 8443));
        assert!(!p("*.example.org:8443").allows("example.org", 8443));
        assert!(!p("*.example.org:8443").allows("badexample.org", 8443));
        assert!(!p("*.example.org:8443").allows("a.example.org", 443));
        assert!(p("127.0.0.1:9000").allows("127.0.0.1", 9000));
        assert!(!p("127.0.0.1:9000").allows("127.0.0.1", 9001));
        assert_eq!(p("[::1]:8080").to_string(), "[::1]:8080");
        assert_eq!(p("[::1]:8080").ip(), Some("::1".parse().unwrap()));
    }

    #[test]
    fn bad_patterns_say_why() {
        for bad in [
            "", "http://x", "x/y", "a:0", "a:99999", "::1", "*", "a.*.b", "-a.com", "a b",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_grant_is_within_a_cap_only_when_the_cap_covers_it() {
        assert!(p("api.example.org").within(&p("*.example.org")));
        assert!(p("*.a.example.org").within(&p("*.example.org")));
        assert!(p("*.example.org").within(&p("*.example.org")));
        assert!(!p("*.example.org").within(&p("api.example.org")));
        assert!(!p("api.example.org:8443").within(&p("api.example.org")));
        assert!(p("api.example.org:8443").within(&p("api.example.org:8443")));
        assert!(!p("api.example.org").within(&p("api.example.org:443")));
    }

    #[test]
    fn directory_names_exclude_scratch() {
        assert!(check_dir_name("data").is_ok());
        assert!(check_dir_name("scratch").unwrap_err().contains("scratch directory"));
        assert!(check_dir_name("../etc").is_err());
        assert!(check_dir_name(".hidden").is_err());
    }
}
