//! [`OutboundPolicy`]: the settings, the checks, and the HTTP client that applies them.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::redirect;
use serde::{Deserialize, Serialize};

use crate::address::classify;
use crate::allow::AllowList;
use crate::connect::{PeerCheckLayer, PolicyResolver};
use crate::error::{OutboundError, Refusal};

/// The most redirects one request follows (reqwest's own default).
pub const MAX_REDIRECTS: usize = 10;

/// `[outbound]` in gennaker.toml, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSettings {
    /// Networks (`10.0.0.0/8`, `127.0.0.1`), host names (`hooks.example.com`) and
    /// suffix wildcards (`*.corp.example`) outbound requests may reach even though they
    /// are (or resolve to) addresses refused by default. A listed host name is allowed
    /// whatever it resolves to.
    pub allow: Vec<String>,
    /// Whether public addresses may be reached (default `true`); `false` leaves only
    /// what `allow` lists.
    pub allow_public: bool,
    /// The most bytes of a response body kept (the rest is not read).
    pub max_response_bytes: u64,
    /// Seconds one request may take, connection to last byte.
    pub request_timeout_seconds: u64,
    /// Seconds to establish a connection.
    pub connect_timeout_seconds: u64,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            allow_public: true,
            max_response_bytes: 1 << 20,
            request_timeout_seconds: 30,
            connect_timeout_seconds: 10,
        }
    }
}

/// Which hosts outbound requests (webhooks, their status and cancel URLs, artifact
/// downloads) may reach, how much of a response is kept and how long a request may
/// take. Cheap to clone.
///
/// By default public addresses are allowed and these are refused: loopback,
/// unspecified, link-local (the cloud metadata address included), private (RFC 1918,
/// carrier-grade NAT, IPv6 unique local), multicast, broadcast, documentation and
/// reserved ranges, and the IPv6 forms of such IPv4 addresses. The check applies to
/// the addresses a name resolves to, to URLs with addresses, to every redirect and
/// to the address every connection of [`client`](Self::client) reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPolicy {
    inner: Arc<Inner>,
}

#[derive(Debug, PartialEq, Eq)]
struct Inner {
    allow: AllowList,
    allow_public: bool,
    max_response_bytes: usize,
    request_timeout: Duration,
    connect_timeout: Duration,
}

impl Default for OutboundPolicy {
    /// Public addresses only, 1 MiB responses, 30 s requests, 10 s connects.
    fn default() -> Self {
        let defaults = OutboundSettings::default();
        Self {
            inner: Arc::new(Inner {
                allow: AllowList::default(),
                allow_public: defaults.allow_public,
                max_response_bytes: 1 << 20,
                request_timeout: Duration::from_secs(defaults.request_timeout_seconds),
                connect_timeout: Duration::from_secs(defaults.connect_timeout_seconds),
            }),
        }
    }
}

/// A setting's value if it is within `min..=max`.
fn in_range(setting: &'static str, value: u64, min: u64, max: u64) -> Result<u64, OutboundError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(OutboundError::OutOfRange {
            setting,
            value,
            min,
            max,
        })
    }
}

impl OutboundPolicy {
    /// The policy `settings` describe; an entry or a value out of range is an error
    /// naming the setting.
    pub fn new(settings: &OutboundSettings) -> Result<Self, OutboundError> {
        let max_response_bytes = in_range(
            "max_response_bytes",
            settings.max_response_bytes,
            1024,
            64 << 20,
        )?;
        let request = in_range(
            "request_timeout_seconds",
            settings.request_timeout_seconds,
            1,
            3600,
        )?;
        let connect = in_range(
            "connect_timeout_seconds",
            settings.connect_timeout_seconds,
            1,
            300,
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                allow: AllowList::parse(&settings.allow)?,
                allow_public: settings.allow_public,
                max_response_bytes: usize::try_from(max_response_bytes).unwrap_or(usize::MAX),
                request_timeout: Duration::from_secs(request),
                connect_timeout: Duration::from_secs(connect),
            }),
        })
    }

    /// The default policy plus these `allow` entries (what tests that talk to
    /// 127.0.0.1 use).
    pub fn allowing(entries: &[&str]) -> Result<Self, OutboundError> {
        Self::new(&OutboundSettings {
            allow: entries.iter().map(|e| (*e).to_owned()).collect(),
            ..OutboundSettings::default()
        })
    }

    /// Whether `ip` may be reached: listed in `allow`, or public while public
    /// addresses are allowed.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.inner.allow.allows_address(ip) {
            return Ok(());
        }
        match classify(ip) {
            None if self.inner.allow_public => Ok(()),
            kind => Err(Refusal { address: ip, kind }),
        }
    }

    /// Whether `host` is a name the operator listed (it may then resolve to anything).
    pub fn allows_host(&self, host: &str) -> bool {
        self.inner.allow.allows_host(host)
    }

    /// The checks that need no DNS: an http(s) URL with a host, whose address (when
    /// the host is one) may be reached. Call it before sending a request: for a URL
    /// with an address no resolver runs, so this is what refuses it before any
    /// connection is attempted. Names are checked when they are resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), OutboundError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::Scheme {
                url: url.to_string(),
            });
        }
        let address = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => {
                return Err(OutboundError::Scheme {
                    url: url.to_string(),
                });
            }
        };
        self.check_address(address)
            .map_err(|refusal| OutboundError::ForbiddenAddress {
                url: url.to_string(),
                refusal,
            })
    }

    /// The most bytes of a response body to keep (see [`read_capped`](crate::read_capped)).
    pub fn max_response_bytes(&self) -> usize {
        self.inner.max_response_bytes
    }

    /// How long one request may take, connection to last byte (set it per request:
    /// the client itself only limits connecting and each read, so long downloads that
    /// keep flowing are not cut off).
    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// An HTTP client that applies this policy to every request:
    ///
    /// - names are resolved by a resolver that drops refused addresses (a name whose
    ///   every address is refused fails with [`OutboundError::ForbiddenName`]);
    /// - every redirect target is checked by [`check_url`](Self::check_url) before it
    ///   is followed (names in it go through the same resolver), at most
    ///   [`MAX_REDIRECTS`] times;
    /// - every connection that did not go through the resolver (a URL with an address)
    ///   has its remote address checked once connected, and is dropped before a byte
    ///   of the request is sent if it is refused. Callers should still call
    ///   [`check_url`](Self::check_url) first so no connection is attempted at all.
    ///
    /// System proxy settings are not used: a proxy would hide the destination from
    /// these checks.
    pub fn client(&self) -> Result<reqwest::Client, OutboundError> {
        let redirects = self.clone();
        reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver::new(self.clone())))
            .connector_layer(PeerCheckLayer::new(self.clone()))
            .redirect(redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    let url = attempt.url().to_string();
                    return attempt.error(OutboundError::TooManyRedirects {
                        url,
                        max: MAX_REDIRECTS,
                    });
                }
                match redirects.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(refused) => attempt.error(refused),
                }
            }))
            .connect_timeout(self.inner.connect_timeout)
            .read_timeout(self.inner.request_timeout)
            .build()
            .map_err(|e| OutboundError::Client(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::AddressKind;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn urls_with_refused_addresses_are_refused_with_how_to_allow_them() {
        let policy = OutboundPolicy::default();
        let error = policy
            .check_url(&url("http://127.0.0.1:9/x"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "http://127.0.0.1:9/x resolves to 127.0.0.1, a loopback address, which outbound requests may not reach; an operator can allow it with [outbound] allow = [\"127.0.0.1/32\"] in gennaker.toml"
            )
        );
        for (text, kind) in [
            ("http://0.0.0.0:80/", AddressKind::Unspecified),
            ("http://[::1]:8080/", AddressKind::Loopback),
            ("http://[::ffff:127.0.0.1]/", AddressKind::Loopback),
            (
                "http://169.254.169.254/latest/meta-data/",
                AddressKind::CloudMetadata,
            ),
            ("http://10.1.2.3/", AddressKind::Private),
            // The URL parser reads these as 127.0.0.1, as a browser would.
            ("http://2130706433/", AddressKind::Loopback),
            ("http://0x7f.1/", AddressKind::Loopback),
        ] {
            match policy.check_url(&url(text)) {
                Err(OutboundError::ForbiddenAddress { refusal, .. }) => {
                    assert_eq!(refusal.kind, Some(kind), "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(policy.check_url(&url("https://93.184.215.14/")).is_ok());
        assert!(policy.check_url(&url("https://hooks.example.com/")).is_ok());
        assert!(matches!(
            policy.check_url(&url("file:///etc/passwd")),
            Err(OutboundError::Scheme { .. })
        ));
    }

    #[test]
    fn the_allow_list_opens_addresses_and_allow_public_false_closes_the_rest() {
        let policy = OutboundPolicy::allowing(&["127.0.0.1/32", "10.0.0.0/8"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(policy.check_url(&url("http://127.0.0.1:9/x")).is_ok());
        assert!(policy.check_url(&url("http://10.9.8.7/")).is_ok());
        assert!(policy.check_url(&url("http://127.0.0.2/")).is_err());
        assert!(policy.check_url(&url("http://8.8.8.8/")).is_ok());

        let closed = OutboundPolicy::new(&OutboundSettings {
            allow: vec!["10.0.0.0/8".into(), "hooks.example.com".into()],
            allow_public: false,
            ..OutboundSettings::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(closed.check_url(&url("http://10.1.1.1/")).is_ok());
        let error = closed
            .check_url(&url("http://8.8.8.8/"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("not in the [outbound] allow list"),
            "{error}"
        );
        assert!(closed.allows_host("hooks.example.com"));
    }

    #[test]
    fn settings_out_of_range_name_the_setting() {
        let error = OutboundPolicy::new(&OutboundSettings {
            max_response_bytes: 0,
            ..OutboundSettings::default()
        })
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("[outbound] max_response_bytes must be between 1024 and 67108864, not 0")
        );
        assert!(
            OutboundPolicy::new(&OutboundSettings {
                request_timeout_seconds: 0,
                ..OutboundSettings::default()
            })
            .is_err()
        );
    }
}
