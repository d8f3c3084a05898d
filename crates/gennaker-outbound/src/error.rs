//! What the policy refuses, worded for the user who wrote the URL and the operator who
//! can allow it.

use std::fmt;
use std::net::IpAddr;

use crate::address::AddressKind;

/// Why an address may not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The address.
    pub address: IpAddr,
    /// Its kind when it is one of the ranges refused by default; `None` when it is a
    /// public address and the operator turned public addresses off
    /// (`allow_public = false`).
    pub kind: Option<AddressKind>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Some(kind) => write!(
                f,
                "{}, {kind}, which outbound requests may not reach",
                self.address
            ),
            None => write!(
                f,
                "{}, which is not in the [outbound] allow list (allow_public = false lets outbound requests reach only the listed hosts and networks)",
                self.address
            ),
        }
    }
}

impl Refusal {
    /// The allow-list entry that lets exactly this address through.
    pub fn network(&self) -> String {
        match self.address {
            IpAddr::V4(ip) => format!("{ip}/32"),
            IpAddr::V6(ip) => format!("{ip}/128"),
        }
    }
}

/// An outbound request the policy refused, or a policy that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// A URL whose host is an address (or a redirect to one) the policy refuses.
    #[error(
        "{url} resolves to {refusal}; an operator can allow it with [outbound] allow = [\"{}\"] in gennaker.toml",
        refusal.network()
    )]
    ForbiddenAddress {
        /// The URL as written (or redirected to).
        url: String,
        /// What was refused.
        refusal: Refusal,
    },
    /// A host name whose every address the policy refuses.
    #[error(
        "{host} resolves to {refusal}; an operator can allow it with [outbound] allow = [\"{host}\"] (or [\"{}\"]) in gennaker.toml",
        refusal.network()
    )]
    ForbiddenName {
        /// The host name.
        host: String,
        /// The first refused address (all of them were).
        refusal: Refusal,
    },
    /// A connection that reached an address the policy refuses (a URL with an address
    /// for a host that was not checked before it was sent).
    #[error(
        "the connection went to {refusal}; an operator can allow it with [outbound] allow = [\"{}\"] in gennaker.toml",
        refusal.network()
    )]
    ForbiddenPeer {
        /// What was refused.
        refusal: Refusal,
    },
    /// A connection whose remote address is unknown, so it could not be checked.
    #[error("the connection's remote address is unknown, so the outbound policy refused it")]
    UnknownPeer,
    /// A URL that is not http(s), or has no host.
    #[error(
        "{url} is not an http:// or https:// URL with a host; outbound requests only use http and https"
    )]
    Scheme {
        /// The URL.
        url: String,
    },
    /// A redirect chain longer than the policy follows.
    #[error(
        "{url} redirected more than {max} times; outbound requests follow at most {max} redirects"
    )]
    TooManyRedirects {
        /// The last URL redirected to.
        url: String,
        /// The most redirects followed.
        max: usize,
    },
    /// A host name that could not be resolved.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host name.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// An `[outbound] allow` entry that is not a network, an address, a host name or a
    /// wildcard.
    #[error(
        "[outbound] allow entry '{entry}' {reason}; write a network (\"10.0.0.0/8\"), an address (\"127.0.0.1\"), a host name (\"hooks.example.com\") or a wildcard (\"*.corp.example\")"
    )]
    InvalidAllow {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting out of its range.
    #[error("[outbound] {setting} must be between {min} and {max}, not {value}")]
    OutOfRange {
        /// The setting's name in gennaker.toml.
        setting: &'static str,
        /// The value given.
        value: u64,
        /// The smallest value allowed.
        min: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// The HTTP client could not be built (its TLS backend did not start).
    #[error("cannot build the outbound HTTP client: {0}")]
    Client(String),
}

impl OutboundError {
    /// Whether this is a refusal by the policy (as opposed to a resolution failure or a
    /// configuration error): retrying will not help.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::ForbiddenAddress { .. }
                | Self::ForbiddenName { .. }
                | Self::ForbiddenPeer { .. }
                | Self::UnknownPeer
                | Self::Scheme { .. }
                | Self::TooManyRedirects { .. }
        )
    }
}

/// The policy's refusal behind a failed request, if the policy is why it failed.
pub fn refusal_of<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e OutboundError> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<OutboundError>()
            && found.is_refusal()
        {
            return Some(found);
        }
        current = error.source();
    }
    None
}
