//! The operator's allow-list: networks, exact host names and `*.` suffix wildcards.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::address::embedded_v4;
use crate::error::OutboundError;

/// One `[outbound] allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// `10.0.0.0/8`, or a bare address (`127.0.0.1` is `127.0.0.1/32`).
    Network(IpNet),
    /// `hooks.example.com`: that host, whatever it resolves to.
    Host(String),
    /// `*.corp.example`: every name under `corp.example` (not `corp.example` itself),
    /// stored as `.corp.example`.
    Suffix(String),
}

/// The hosts and networks an operator lets outbound requests reach beyond the public
/// Internet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AllowList {
    entries: Vec<Entry>,
}

impl AllowList {
    /// Parses the entries; the first that is none of the accepted forms is an error.
    pub(crate) fn parse(entries: &[String]) -> Result<Self, OutboundError> {
        let entries = entries
            .iter()
            .map(|text| parse_entry(text))
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether an allowed network holds `ip` (or the IPv4 address an IPv6 form of it
    /// carries, e.g. `::ffff:10.0.0.1` for `10.0.0.0/8`).
    pub(crate) fn allows_address(&self, ip: IpAddr) -> bool {
        let inner = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.entries.iter().any(|entry| match entry {
            Entry::Network(net) => net.contains(&ip) || inner.is_some_and(|v4| net.contains(&v4)),
            _ => false,
        })
    }

    /// Whether an allowed host name or wildcard names `host` (compared without case
    /// and without a trailing dot).
    pub(crate) fn allows_host(&self, host: &str) -> bool {
        let host = normalize(host);
        self.entries.iter().any(|entry| match entry {
            Entry::Host(name) => *name == host,
            Entry::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
            Entry::Network(_) => false,
        })
    }
}

fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn parse_entry(text: &str) -> Result<Entry, OutboundError> {
    let invalid = |reason: &str| OutboundError::InvalidAllow {
        entry: text.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid("is empty"));
    }
    if trimmed.contains("://") {
        return Err(invalid(
            "looks like a URL; list only the host (every port and scheme of it is allowed)",
        ));
    }
    if trimmed.contains('/') {
        return trimmed
            .parse::<IpNet>()
            .map(|net| Entry::Network(net.trunc()))
            .map_err(|_| invalid("is not a valid network (address/prefix length)"));
    }
    if let Ok(ip) = trimmed.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(Entry::Network(IpNet::from(ip)));
    }
    if trimmed.contains(':') {
        return Err(invalid(
            "has a port; list only the host (every port of it is allowed)",
        ));
    }
    let name = normalize(trimmed);
    let (suffix, wildcard) = match name.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (name.as_str(), false),
    };
    if suffix.contains('*') {
        return Err(invalid(
            "has a '*' that is not a leading '*.' (only suffix wildcards like *.corp.example are supported)",
        ));
    }
    let labels_ok = suffix.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if !labels_ok || suffix.len() > 253 {
        return Err(invalid("is not a valid host name"));
    }
    Ok(if wildcard {
        Entry::Suffix(format!(".{suffix}"))
    } else {
        Entry::Host(suffix.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        let entries: Vec<String> = entries.iter().map(|s| (*s).to_owned()).collect();
        AllowList::parse(&entries).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn networks_and_bare_addresses_match_addresses() {
        let allow = list(&[
            "10.0.0.0/8",
            "127.0.0.1",
            "fd00::/8",
            "[::1]",
            "192.168.1.77/24",
        ]);
        assert!(allow.allows_address(ip("10.20.30.40")));
        assert!(allow.allows_address(ip("127.0.0.1")));
        assert!(!allow.allows_address(ip("127.0.0.2")));
        assert!(allow.allows_address(ip("fd00::5")));
        assert!(allow.allows_address(ip("::1")));
        assert!(
            allow.allows_address(ip("192.168.1.1")),
            "host bits are ignored"
        );
        assert!(!allow.allows_address(ip("11.0.0.1")));
        // An IPv6 form of an allowed IPv4 address is allowed too.
        assert!(allow.allows_address(ip("::ffff:10.0.0.1")));
        assert!(!allow.allows_address(ip("::ffff:11.0.0.1")));
    }

    #[test]
    fn host_names_match_exactly_and_wildcards_match_below_their_suffix() {
        let allow = list(&["Hooks.Example.com", "*.corp.example"]);
        assert!(allow.allows_host("hooks.example.com"));
        assert!(allow.allows_host("HOOKS.example.com."));
        assert!(!allow.allows_host("evil-hooks.example.com"));
        assert!(!allow.allows_host("hooks.example.com.evil.net"));
        assert!(!allow.allows_host("example.com"));
        assert!(allow.allows_host("ci.corp.example"));
        assert!(allow.allows_host("a.b.corp.example"));
        assert!(
            !allow.allows_host("corp.example"),
            "the wildcard needs a label"
        );
        assert!(!allow.allows_host("evilcorp.example"));
        assert!(!allow.allows_address(ip("10.0.0.1")));
    }

    #[test]
    fn entries_that_are_none_of_the_forms_are_refused_with_the_forms() {
        for (entry, why) in [
            ("", "is empty"),
            ("10.0.0.0/33", "not a valid network"),
            ("http://hooks.example.com", "looks like a URL"),
            ("hooks.example.com:8443", "has a port"),
            ("a.*.example", "only suffix wildcards"),
            ("*", "only suffix wildcards"),
            ("*..example", "not a valid host name"),
            ("bad host", "not a valid host name"),
        ] {
            let error = AllowList::parse(&[entry.to_owned()])
                .err()
                .unwrap_or_else(|| panic!("'{entry}' was accepted"))
                .to_string();
            assert!(error.contains(why), "{entry}: {error}");
            assert!(error.contains("*.corp.example"), "{error}");
        }
    }
}
