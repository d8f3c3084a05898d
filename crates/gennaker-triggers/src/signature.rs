//! Webhook signatures: GitHub's `X-Hub-Signature-256` (HMAC-SHA256) and
//! `X-Hub-Signature` (HMAC-SHA1, which Bitbucket also sends as `sha256=…`), and
//! GitLab's `X-Gitlab-Token` (the secret itself). Compared in constant time.
//!
//! What is kept of a request is never a secret: the HMACs as sent, and a SHA-256 of a
//! token, so an event re-handled after a crash is checked exactly as on arrival.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use subtle::ConstantTimeEq;

/// The signature material of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signatures {
    /// `X-Hub-Signature-256` as sent (`sha256=<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_signature_256: Option<String>,
    /// `X-Hub-Signature` as sent (`sha1=<hex>` or `sha256=<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_signature: Option<String>,
    /// SHA-256 (hex) of the `X-Gitlab-Token` (or `X-Webhook-Token`) header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

/// Whether `sent` (`<prefix><hex>`) is the HMAC of `body` under `secret`, with the
/// hash `$digest`; the MAC library compares in constant time.
macro_rules! hmac_matches {
    ($digest:ty, $secret:expr, $body:expr, $sent:expr, $prefix:expr) => {{
        let decoded = $sent
            .strip_prefix($prefix)
            .and_then(|h: &str| hex::decode(h.to_ascii_lowercase()).ok());
        match (
            decoded,
            <Hmac<$digest> as KeyInit>::new_from_slice($secret.as_bytes()),
        ) {
            (Some(sent), Ok(mut mac)) => {
                mac.update($body);
                mac.verify_slice(&sent).is_ok()
            }
            _ => false,
        }
    }};
}

impl Signatures {
    /// From the request's header values (a token is hashed at once and never kept).
    pub fn new(
        hub_signature_256: Option<&str>,
        hub_signature: Option<&str>,
        token: Option<&str>,
    ) -> Self {
        Self {
            hub_signature_256: hub_signature_256.map(|s| s.trim().chars().take(200).collect()),
            hub_signature: hub_signature.map(|s| s.trim().chars().take(200).collect()),
            token_sha256: token.map(|t| hex::encode(sha2::Sha256::digest(t.as_bytes()))),
        }
    }

    /// Whether the request carried any signature or token.
    pub fn any(&self) -> bool {
        self.hub_signature_256.is_some()
            || self.hub_signature.is_some()
            || self.token_sha256.is_some()
    }

    /// Checks the request against the trigger's `secret`, by Spinnaker's rules: with a
    /// secret, a valid signature or token is required; without one, a signed request
    /// is refused too (its sender expects a check this trigger cannot make).
    /// `Err` says why, without the secret or the signature.
    pub fn verify(&self, secret: Option<&str>, body: &[u8]) -> Result<(), String> {
        let Some(secret) = secret.filter(|s| !s.is_empty()) else {
            return if self.any() {
                Err("signature invalid: the request is signed but the trigger has no secret; set the trigger's \"secret\" to the webhook's secret".into())
            } else {
                Ok(())
            };
        };
        if !self.any() {
            return Err("signature missing: the trigger has a secret but the request carries no X-Hub-Signature-256, X-Hub-Signature or X-Gitlab-Token header".into());
        }
        let mut checked = false;
        if let Some(sent) = &self.hub_signature_256 {
            checked = true;
            if !hmac_matches!(sha2::Sha256, secret, body, sent, "sha256=") {
                return Err("signature invalid: X-Hub-Signature-256 does not match the body signed with the trigger's secret".into());
            }
        }
        if let Some(sent) = &self.hub_signature {
            checked = true;
            let valid = if sent.starts_with("sha256=") {
                hmac_matches!(sha2::Sha256, secret, body, sent, "sha256=")
            } else {
                hmac_matches!(sha1::Sha1, secret, body, sent, "sha1=")
            };
            if !valid {
                return Err("signature invalid: X-Hub-Signature does not match the body signed with the trigger's secret".into());
            }
        }
        if let Some(sent) = &self.token_sha256 {
            checked = true;
            let expected = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
            if !bool::from(expected.as_bytes().ct_eq(sent.as_bytes())) {
                return Err(
                    "signature invalid: the token header does not equal the trigger's secret"
                        .into(),
                );
            }
        }
        if checked {
            Ok(())
        } else {
            Err("signature missing".into())
        }
    }
}

/// `sha256=<hex>` of `body` under `secret`, as GitHub sends it (for tests and for
/// senders that want to sign).
pub fn github_signature_256(secret: &str, body: &[u8]) -> String {
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sha1_signature(secret: &str, body: &[u8]) -> String {
        let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn github_signatures_are_verified() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = github_signature_256("s3cr3t", body);
        assert_eq!(
            Signatures::new(Some(&good), None, None).verify(Some("s3cr3t"), body),
            Ok(())
        );
        let sha1 = sha1_signature("s3cr3t", body);
        assert_eq!(
            Signatures::new(None, Some(&sha1), None).verify(Some("s3cr3t"), body),
            Ok(())
        );
        let wrong = Signatures::new(Some(&good), None, None)
            .verify(Some("other"), body)
            .unwrap_err();
        assert!(
            wrong.starts_with("signature invalid: X-Hub-Signature-256"),
            "{wrong}"
        );
        let tampered = Signatures::new(Some(&good), None, None)
            .verify(Some("s3cr3t"), b"{}")
            .unwrap_err();
        assert!(tampered.starts_with("signature invalid"), "{tampered}");
        let missing = Signatures::default()
            .verify(Some("s3cr3t"), body)
            .unwrap_err();
        assert!(missing.starts_with("signature missing"), "{missing}");
        let unexpected = Signatures::new(Some(&good), None, None)
            .verify(None, body)
            .unwrap_err();
        assert!(
            unexpected.contains("the trigger has no secret"),
            "{unexpected}"
        );
        assert_eq!(Signatures::default().verify(None, body), Ok(()));
        assert!(!wrong.contains("s3cr3t") && !wrong.contains(&good[7..]));
    }

    #[test]
    fn tokens_compare_by_hash_and_are_never_kept() {
        let signatures = Signatures::new(None, None, Some("tok"));
        assert!(
            !serde_json::to_string(&signatures)
                .unwrap()
                .contains("\"tok\"")
        );
        assert_eq!(signatures.verify(Some("tok"), b"{}"), Ok(()));
        assert!(
            signatures
                .verify(Some("other"), b"{}")
                .unwrap_err()
                .contains("token header")
        );
    }
}
