//! Web UI sessions: sign-in with an API token, the session cookie, CSRF tokens.
//!
//! Sessions are kept on the server, in memory: the cookie holds only a random 256-bit
//! session id (never the token), and the server maps the id's SHA-256 to the session.
//! The session keeps the *hash* of the token it was opened with, and every request
//! resolves it to the user again, so revoking the token, deleting the user or changing
//! their roles takes effect on the next page. A restarted server forgets its sessions
//! (users sign in again); sessions expire after [`IDLE_LIMIT`] without use and after
//! [`ABSOLUTE_LIMIT`] in any case, and at most [`MAX_SESSIONS`] are kept (the least
//! recently used goes first).
//!
//! The cookie is `HttpOnly` (scripts cannot read it), `SameSite=Strict` (other sites'
//! pages cannot send it), `Path=/`, and `Secure` when the request came through a proxy
//! that terminated TLS (`X-Forwarded-Proto: https`): the server itself speaks plain HTTP.
//!
//! Every POST carries the session's synchronizer token (`csrf` form field), compared in
//! constant time; a POST whose `Origin` names another host is refused as well. The
//! sign-in form itself is protected by a double-submit token (a short-lived cookie and
//! the same value in the form), as there is no session yet.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header::{COOKIE, HOST, ORIGIN};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::auth::hash_token;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "gennaker_session";
/// The sign-in form's double-submit cookie.
pub(crate) const SIGNIN_COOKIE: &str = "gennaker_signin";
/// A session unused for this long is closed.
pub(crate) const IDLE_LIMIT: Duration = Duration::from_secs(12 * 3600);
/// A session is closed this long after sign-in, however busy.
pub(crate) const ABSOLUTE_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Sessions kept at most; beyond, the least recently used is closed.
pub(crate) const MAX_SESSIONS: usize = 10_000;

/// A message shown once on the next page (the outcome of an action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flash {
    /// `ok` or `error`.
    pub kind: &'static str,
    /// The text.
    pub text: String,
}

#[derive(Debug)]
struct Session {
    token_hash: String,
    /// The token opened for this session by a password sign-in, revoked at sign-out.
    own_token: Option<String>,
    csrf: String,
    created: Instant,
    seen: Instant,
    flash: Option<Flash>,
}

/// What a request's session holds.
#[derive(Debug, Clone)]
pub(crate) struct SessionInfo {
    /// The key under which the session is kept (the SHA-256 of the cookie's id).
    pub key: String,
    /// The hash of the token the user signed in with.
    pub token_hash: String,
    /// The session's CSRF token.
    pub csrf: String,
}

/// The open sessions of this server.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes, hex.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// Whether two secrets are equal, in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while the lock was held cannot leave a session half-written (every
        // change is one assignment), so a poisoned map is still sound.
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session for the token with this hash; returns the cookie's id.
    pub(crate) fn open(&self, token_hash: String) -> String {
        self.open_with(token_hash, None)
    }

    /// Opens a session on a token made for it (a password sign-in), whose id
    /// [`Sessions::close`] returns so that sign-out revokes it.
    pub(crate) fn open_with(&self, token_hash: String, own_token: Option<String>) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut open = self.lock();
        open.retain(|_, session| live(session, now));
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, session)| session.seen)
                .map(|(key, _)| key.clone())
        {
            open.remove(&oldest);
        }
        open.insert(
            hash_token(&id),
            Session {
                token_hash,
                own_token,
                csrf: random_token(),
                created: now,
                seen: now,
                flash: None,
            },
        );
        id
    }

    /// The live session of a request's cookie, marked as used now.
    pub(crate) fn find(&self, headers: &HeaderMap) -> Option<SessionInfo> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let key = hash_token(&id);
        let now = Instant::now();
        let mut open = self.lock();
        let session = open.get_mut(&key)?;
        if !live(session, now) {
            open.remove(&key);
            return None;
        }
        session.seen = now;
        Some(SessionInfo {
            key,
            token_hash: session.token_hash.clone(),
            csrf: session.csrf.clone(),
        })
    }

    /// Closes a session; returns the id of the token made for it, if one was.
    pub(crate) fn close(&self, key: &str) -> Option<String> {
        self.lock()
            .remove(key)
            .and_then(|session| session.own_token)
    }

    /// Leaves a message for the session's next page.
    pub(crate) fn set_flash(&self, key: &str, flash: Flash) {
        if let Some(session) = self.lock().get_mut(key) {
            session.flash = Some(flash);
        }
    }

    /// Takes the message left for this page, if any.
    pub(crate) fn take_flash(&self, key: &str) -> Option<Flash> {
        self.lock().get_mut(key).and_then(|s| s.flash.take())
    }

    /// How many sessions are open (expired ones included until they are swept).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

fn live(session: &Session, now: Instant) -> bool {
    now.duration_since(session.seen) < IDLE_LIMIT
        && now.duration_since(session.created) < ABSOLUTE_LIMIT
}

/// A cookie's value from the request's `Cookie` headers.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// Whether the request came through a proxy that terminated TLS.
fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: `value` for `max_age` (None: delete it).
pub(crate) fn set_cookie(
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age: Option<Duration>,
) -> String {
    let secure = if behind_tls(headers) { "; Secure" } else { "" };
    let age = max_age.map_or(0, |age| age.as_secs());
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{secure}")
}

/// Why a POST is refused before it is looked at: its `Origin` names another site.
pub(crate) fn foreign_origin(headers: &HeaderMap) -> Option<String> {
    let origin = headers.get(ORIGIN)?.to_str().ok()?;
    if origin == "null" {
        return Some(origin.to_owned());
    }
    let host = headers.get(HOST)?.to_str().ok()?;
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    (!origin_host.eq_ignore_ascii_case(host)).then(|| origin.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_when_idle_and_carry_flashes_once() {
        let sessions = Sessions::default();
        let id = sessions.open("hash".into());
        let headers = with_cookie(&format!("a=b; {SESSION_COOKIE}={id}"));
        let info = sessions.find(&headers).unwrap();
        assert_eq!(info.token_hash, "hash");
        assert_eq!(info.csrf.len(), 64);
        sessions.set_flash(
            &info.key,
            Flash {
                kind: "ok",
                text: "done".into(),
            },
        );
        assert_eq!(sessions.take_flash(&info.key).unwrap().text, "done");
        assert!(sessions.take_flash(&info.key).is_none());
        tokio::time::advance(IDLE_LIMIT - Duration::from_secs(1)).await;
        assert!(sessions.find(&headers).is_some(), "use keeps it open");
        tokio::time::advance(IDLE_LIMIT).await;
        assert!(sessions.find(&headers).is_none());
        assert_eq!(sessions.len(), 0);
        assert!(
            sessions
                .find(&with_cookie("gennaker_session=forged"))
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_end_at_the_absolute_limit_however_busy() {
        let sessions = Sessions::default();
        let id = sessions.open("hash".into());
        let headers = with_cookie(&format!("{SESSION_COOKIE}={id}"));
        for _ in 0..(ABSOLUTE_LIMIT.as_secs() / 3600) {
            assert!(sessions.find(&headers).is_some());
            tokio::time::advance(Duration::from_secs(3600)).await;
        }
        assert!(sessions.find(&headers).is_none());
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_behind_tls() {
        let plain = set_cookie(&HeaderMap::new(), "n", "v", Some(IDLE_LIMIT));
        assert_eq!(
            plain,
            "n=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200"
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(set_cookie(&headers, "n", "", None).ends_with("Max-Age=0; Secure"));
    }

    #[test]
    fn foreign_origins_are_told_apart() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:8084"));
        assert_eq!(foreign_origin(&headers), None);
        headers.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:8084"));
        assert_eq!(foreign_origin(&headers), None);
        headers.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert_eq!(
            foreign_origin(&headers).as_deref(),
            Some("https://evil.example")
        );
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
