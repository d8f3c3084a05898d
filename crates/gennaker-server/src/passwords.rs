//! User passwords, for signing in to the web UI.
//!
//! Only an Argon2id hash is stored (a PHC string: algorithm, parameters, a random salt
//! and the hash), never the password; the API sets and removes it (admins only) and
//! never returns or logs it. Hashing is slow on purpose (OWASP's parameters: 19 MiB,
//! two passes), so it runs on the blocking pool, not on the server's async workers.
//! Checking the password of a user who has none (or does not exist) costs the same as
//! checking a real one, so the time of an answer does not tell who has a password.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::ApiError;

/// The shortest password accepted, in characters.
pub(crate) const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted, in bytes (hashing cost grows with it).
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a new password is refused, if it is.
pub(crate) fn password_problem(password: &str) -> Option<String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Some(format!(
            "the password is too short: use at least {MIN_PASSWORD_CHARS} characters (a few random words are easy to remember)"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Some(format!(
            "the password is too long: at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    if password.trim() != password {
        return Some("the password starts or ends with a space; remove it".to_owned());
    }
    None
}

/// The PHC string to store for `password` (a fresh random salt each time).
pub(crate) async fn hash_password(password: String) -> Result<String, ApiError> {
    let hashed = tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
    })
    .await
    .map_err(|err| ApiError::Internal(format!("password hashing did not finish: {err}")))?;
    hashed.map_err(|err| ApiError::Internal(format!("the password could not be hashed: {err}")))
}

/// A hash of a random password, checked against when there is no real one.
fn stand_in_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut bytes = [0u8; 16];
        rand::fill(&mut bytes);
        Argon2::default()
            .hash_password(hex::encode(bytes).as_bytes())
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    })
}

/// Whether `password` matches the stored hash. With no hash (no such user, or no
/// password) it is false, after the same work as a real check.
pub(crate) async fn verify_password(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| stand_in_hash().to_owned());
        let matches = PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        known && matches
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_salted_and_check_only_the_right_password() {
        let password = "correct horse battery".to_owned();
        let first = hash_password(password.clone()).await.unwrap();
        let second = hash_password(password.clone()).await.unwrap();
        assert!(first.starts_with("$argon2id$"), "{first}");
        assert_ne!(first, second, "a fresh salt each time");
        assert!(!first.contains(&password));
        assert!(verify_password(password.clone(), Some(first.clone())).await);
        assert!(!verify_password("correct horse battery!".into(), Some(first)).await);
        assert!(!verify_password(password.clone(), None).await);
        assert!(!verify_password(password, Some("not a hash".into())).await);
    }

    #[test]
    fn weak_or_odd_passwords_are_refused_with_a_reason() {
        assert!(password_problem("short").unwrap().contains("at least 12"));
        assert!(
            password_problem(&"x".repeat(2000))
                .unwrap()
                .contains("too long")
        );
        assert!(
            password_problem(" twelve chars ok")
                .unwrap()
                .contains("space")
        );
        assert_eq!(password_problem("twelve chars ok"), None);
    }
}
