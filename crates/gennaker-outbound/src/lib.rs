//! Gennaker's outbound request policy: which hosts and networks the server's own HTTP
//! requests (webhook calls, their status and cancel URLs, artifact downloads) may
//! reach, how much of a response is kept, and how long a request may take.
//!
//! A user who can write a pipeline chooses these URLs, so without a policy the server
//! would fetch whatever they point at on its behalf (server-side request forgery):
//! services on 127.0.0.1, the private network, the cloud metadata service. The
//! [`OutboundPolicy`] refuses those by default and lets an operator open exactly what
//! is needed (`[outbound] allow` in gennaker.toml), like Spinnaker Orca's
//! `UserConfiguredUrlRestrictions`, but judged on the addresses a name resolves to
//! (so a public name pointing at 127.0.0.1 is refused) and again on every redirect.
//!
//! [`OutboundPolicy::client`] builds a `reqwest::Client` that enforces the policy on
//! everything it sends; [`OutboundPolicy::check_url`] refuses URLs with a refused
//! address before any connection; [`read_capped`] keeps at most
//! [`OutboundPolicy::max_response_bytes`] of a body.

mod address;
mod allow;
mod body;
mod connect;
mod error;
mod policy;

pub use address::{AddressKind, classify};
pub use body::{CappedBody, read_capped};
pub use error::{OutboundError, Refusal, refusal_of};
pub use policy::{MAX_REDIRECTS, OutboundPolicy, OutboundSettings};
