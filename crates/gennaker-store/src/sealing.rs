//! Secrets in stored executions are sealed: encrypted with the installation's key.
//!
//! A webhook stage must still send its `Authorization` header after a restart, so the
//! secret has to be stored; but anyone who reads the database (a backup, a READ-only
//! query, a copied file) must not read it. [`SealedExecutions`] wraps the execution
//! store the engine uses: every secret string of a written execution document (see
//! `gennaker_core::redact`: secret-named keys, URL passwords) is replaced by
//! `gnk-sealed:v1:<base64url(nonce ‖ ciphertext ‖ tag)>`, encrypted with AES-256-GCM-SIV
//! under a random nonce and bound to the execution's id; reads open them again.
//!
//! GCM-SIV rather than GCM: every commit seals the execution's secrets afresh, and a
//! repeated random nonce under GCM-SIV only shows that two sealed values are equal,
//! where under GCM it would give the key stream away.
//!
//! The key is 32 bytes in a file (`secrets.key` in the data directory unless configured
//! otherwise), created with mode 0600 on first start. Servers sharing one PostgreSQL
//! database must share the key.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gennaker_core::redact::{REDACTED, SEALED_PREFIX, SecretKind, for_each_secret};
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::executions::{
    CommitOutcome, ExecutionQuery, ExecutionRow, ExecutionStore, LeasedMessage, NextLease,
    StepCommit,
};

/// How sealed values of this format start.
const SEALED_V1: &str = "gnk-sealed:v1:";

/// The key's length in bytes.
pub const KEY_LEN: usize = 32;

/// The installation's key for sealing secrets at rest. Cheap to clone; never printed.
#[derive(Clone)]
pub struct SealingKey {
    key: Arc<RandomizedNonceKey>,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

/// A key file's problem, with what to do about it.
fn key_error(path: &Path, problem: impl Into<String>) -> StoreError {
    StoreError::SecretsKey {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

impl SealingKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<Self> {
        let key = RandomizedNonceKey::new(&AES_256_GCM_SIV, bytes).map_err(|_| {
            StoreError::Sealing("the AES-256-GCM-SIV key could not be set up".into())
        })?;
        Ok(Self { key: Arc::new(key) })
    }

    /// Reads the key at `path`, or creates it (32 random bytes, written as 64 hex
    /// digits, mode 0600) when there is none. A file holding 32 raw bytes is read too.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(content) => Self::parse(path, &content),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(key_error(path, format!("cannot be read: {e}"))),
        }
    }

    fn parse(path: &Path, content: &[u8]) -> Result<Self> {
        let bytes: [u8; KEY_LEN] = if let Ok(raw) = <[u8; KEY_LEN]>::try_from(content) {
            raw
        } else {
            let text = std::str::from_utf8(content).unwrap_or_default().trim();
            let mut bytes = [0u8; KEY_LEN];
            hex::decode_to_slice(text, &mut bytes).map_err(|_| {
                key_error(
                    path,
                    format!(
                        "holds {} bytes, not a key: it must be 64 hex digits (e.g. from \
                         `openssl rand -hex 32`) or 32 raw bytes",
                        content.len()
                    ),
                )
            })?;
            bytes
        };
        Self::from_bytes(&bytes)
    }

    /// Writes a new key beside `path` and links it into place, so two servers starting
    /// at once agree on one key and a crash never leaves half a key behind.
    fn create(path: &Path) -> Result<Self> {
        let mut bytes = [0u8; KEY_LEN];
        aws_lc_rs::rand::fill(&mut bytes)
            .map_err(|_| key_error(path, "no random bytes for a new key"))?;
        let temp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
        let written = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temp)?;
            file.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())?;
            file.sync_all()?;
            std::fs::hard_link(&temp, path)
        })();
        // The temporary name is gone either way; a failure to remove it hides nothing.
        let _ = std::fs::remove_file(&temp);
        match written {
            Ok(()) => Self::from_bytes(&bytes),
            // Another server created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_create(path),
            Err(e) => Err(key_error(path, format!("cannot be created: {e}"))),
        }
    }

    /// `plaintext` sealed, bound to `context` (the execution's id).
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String> {
        let mut data = plaintext.as_bytes().to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| StoreError::Sealing("encryption failed".into()))?;
        let mut sealed = nonce.as_ref().to_vec();
        sealed.extend_from_slice(&data);
        Ok(format!("{SEALED_V1}{}", URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// Opens what [`seal`](Self::seal) made for the same `context`; `None` when it was
    /// sealed with another key or for another context, or is damaged.
    pub fn open(&self, sealed: &str, context: &str) -> Option<String> {
        let encoded = sealed.strip_prefix(SEALED_V1)?;
        let mut data = URL_SAFE_NO_PAD.decode(encoded).ok()?;
        if data.len() < NONCE_LEN {
            return None;
        }
        let mut ciphertext = data.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&data).ok()?;
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut ciphertext)
            .ok()?;
        String::from_utf8(plaintext.to_vec()).ok()
    }

    /// Seals every secret string of `document` (JSON text) for execution `id`.
    pub fn seal_document(&self, document: &str, id: &str) -> Result<String> {
        let mut value: Value = serde_json::from_str(document)?;
        let mut failure = None;
        for_each_secret(&mut value, &mut |text, kind| {
            // Only what this key sealed for this execution stays as it is: a value a
            // user typed to look sealed is sealed like any secret, so reading it back
            // opens it instead of failing.
            let sealed_here = kind == SecretKind::Sealed && self.open(text, id).is_some();
            if sealed_here || failure.is_some() {
                return;
            }
            match self.seal(text, id) {
                Ok(sealed) => *text = sealed,
                Err(e) => failure = Some(e),
            }
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(serde_json::to_string(&value)?),
        }
    }

    /// Opens every sealed string of `document` (JSON text) of execution `id`; an error
    /// when one was sealed with another key.
    pub fn open_document(&self, document: &str, id: &str) -> Result<String> {
        match self.open_all(document, id)? {
            (opened, 0) => Ok(opened),
            _ => Err(StoreError::SealedWithAnotherKey {
                execution: id.to_owned(),
            }),
        }
    }

    /// Opens what it can of `document`; each value sealed with another key becomes
    /// [`REDACTED`]. Returns the document and how many values could not be opened.
    fn open_all(&self, document: &str, id: &str) -> Result<(String, usize)> {
        if !document.contains(SEALED_PREFIX) {
            return Ok((document.to_owned(), 0));
        }
        let mut value: Value = serde_json::from_str(document)?;
        let mut unopened = 0;
        for_each_secret(&mut value, &mut |text, kind| {
            if kind != SecretKind::Sealed {
                return;
            }
            match self.open(text, id) {
                Some(plain) => *text = plain,
                None => {
                    unopened += 1;
                    REDACTED.clone_into(text);
                }
            }
        });
        Ok((serde_json::to_string(&value)?, unopened))
    }

    fn seal_row(&self, row: &ExecutionRow) -> Result<ExecutionRow> {
        Ok(ExecutionRow {
            document: self.seal_document(&row.document, &row.id)?,
            ..row.clone()
        })
    }

    fn open_row(&self, mut row: ExecutionRow) -> Result<ExecutionRow> {
        row.document = self.open_document(&row.document, &row.id)?;
        Ok(row)
    }

    /// Opens what it can: a value sealed with another key is listed redacted, so one
    /// such execution does not hide the others.
    fn open_listed_row(&self, mut row: ExecutionRow) -> Result<ExecutionRow> {
        let (opened, unopened) = self.open_all(&row.document, &row.id)?;
        if unopened > 0 {
            tracing::warn!(
                execution = %row.id,
                unopened,
                "an execution holds secrets sealed with another key; they are listed redacted \
                 and the execution cannot run on: set [secrets] key_file to the key it was written with"
            );
        }
        row.document = opened;
        Ok(row)
    }
}

/// An execution store whose documents are sealed at rest: secrets are encrypted on
/// every write and opened on every read. Everything else passes through.
#[derive(Debug, Clone)]
pub struct SealedExecutions {
    inner: Arc<dyn ExecutionStore>,
    key: SealingKey,
}

impl SealedExecutions {
    /// Seals what `inner` stores with `key`.
    pub fn new(inner: Arc<dyn ExecutionStore>, key: SealingKey) -> Self {
        Self { inner, key }
    }

    /// The step as stored: its execution documents and notifications sealed.
    fn seal_step(&self, step: &StepCommit) -> Result<StepCommit> {
        let mut sealed = step.clone();
        for write in &mut sealed.executions {
            write.row = self.key.seal_row(&write.row)?;
        }
        // Notifications carry what their execution does (an evaluated message, a
        // webhook URL with a password): sealed for the same execution, so the notifier
        // opens them with the same key.
        for notification in &mut sealed.notifications {
            notification.document = self
                .key
                .seal_document(&notification.document, &notification.execution_id)?;
        }
        Ok(sealed)
    }
}

#[async_trait]
impl ExecutionStore for SealedExecutions {
    async fn get_execution(&self, id: &str) -> Result<Option<ExecutionRow>> {
        self.inner
            .get_execution(id)
            .await?
            .map(|row| self.key.open_row(row))
            .transpose()
    }

    /// Lists leniently: lists are read to show executions or to pick which to start
    /// (never to run a task), and one execution sealed with another key must not hide
    /// the others.
    async fn list_executions(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionRow>> {
        self.inner
            .list_executions(query)
            .await?
            .into_iter()
            .map(|row| self.key.open_listed_row(row))
            .collect()
    }

    async fn commit_step(&self, step: &StepCommit) -> Result<CommitOutcome> {
        if step.executions.is_empty() && step.notifications.is_empty() {
            return self.inner.commit_step(step).await;
        }
        self.inner.commit_step(&self.seal_step(step)?).await
    }

    async fn commit_step_and_lease(
        &self,
        step: &StepCommit,
        next: &NextLease,
    ) -> Result<(CommitOutcome, Vec<LeasedMessage>)> {
        if step.executions.is_empty() && step.notifications.is_empty() {
            return self.inner.commit_step_and_lease(step, next).await;
        }
        self.inner
            .commit_step_and_lease(&self.seal_step(step)?, next)
            .await
    }

    async fn claim_messages(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        partitions: i64,
        per_partition: i64,
    ) -> Result<Vec<LeasedMessage>> {
        self.inner
            .claim_messages(owner, now, lease_until, partitions, per_partition)
            .await
    }

    async fn extend_leases(&self, owner: &str, ids: &[i64], lease_until: i64) -> Result<()> {
        self.inner.extend_leases(owner, ids, lease_until).await
    }

    async fn release_messages(&self, owner: &str, ids: &[i64], deliver_at: i64) -> Result<()> {
        self.inner.release_messages(owner, ids, deliver_at).await
    }

    async fn release_all_leases(&self) -> Result<u64> {
        self.inner.release_all_leases().await
    }

    async fn next_delivery(&self) -> Result<Option<i64>> {
        self.inner.next_delivery().await
    }

    async fn queue_depth(&self) -> Result<i64> {
        self.inner.queue_depth().await
    }

    async fn partition_messages(&self, partition: &str) -> Result<Vec<LeasedMessage>> {
        self.inner.partition_messages(partition).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SealingKey {
        SealingKey::from_bytes(&[byte; KEY_LEN]).unwrap()
    }

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_execution() {
        let sealed = key(1).seal("Bearer s3cr3t", "e1").unwrap();
        assert!(sealed.starts_with(SEALED_V1));
        assert!(!sealed.contains("s3cr3t"));
        assert_eq!(key(1).open(&sealed, "e1").as_deref(), Some("Bearer s3cr3t"));
        assert_eq!(key(2).open(&sealed, "e1"), None, "another key");
        assert_eq!(key(1).open(&sealed, "e2"), None, "another execution");
        assert_eq!(key(1).open("gnk-sealed:v1:AAAA", "e1"), None, "damaged");
        assert_ne!(
            sealed,
            key(1).seal("Bearer s3cr3t", "e1").unwrap(),
            "fresh nonce"
        );
    }

    #[test]
    fn documents_round_trip_with_only_their_secrets_sealed() {
        let document = serde_json::json!({
            "id": "e1",
            "stages": [{"context": {
                "url": "http://user:pa55@127.0.0.1:9/",
                "customHeaders": {"Authorization": "Bearer s3cr3t", "X-Plain": "visible"},
            }}],
            "trigger": {"parameters": {"api_token": "t0k"}},
        })
        .to_string();
        let sealed = key(1).seal_document(&document, "e1").unwrap();
        for secret in ["pa55", "s3cr3t", "t0k"] {
            assert!(!sealed.contains(secret), "{secret} in {sealed}");
        }
        assert!(sealed.contains("visible"));
        assert_eq!(key(1).open_document(&sealed, "e1").unwrap(), document);
        let wrong = key(2).open_document(&sealed, "e1").unwrap_err();
        assert!(wrong.to_string().contains("[secrets] key_file"), "{wrong}");
        let (listed, unopened) = key(2).open_all(&sealed, "e1").unwrap();
        assert_eq!(unopened, 3);
        assert!(
            listed.contains(REDACTED) && listed.contains("visible"),
            "{listed}"
        );
        assert!(!listed.contains("gnk-sealed:"), "{listed}");
    }

    #[test]
    fn a_value_typed_to_look_sealed_is_sealed_and_read_back() {
        let document = serde_json::json!({
            "id": "e1",
            "trigger": {"parameters": {"region": "gnk-sealed:x", "api_token": "gnk-sealed:v1:AAAA"}},
        })
        .to_string();
        let sealed = key(1).seal_document(&document, "e1").unwrap();
        assert_eq!(key(1).open_document(&sealed, "e1").unwrap(), document);
        // Sealing again leaves what is sealed as it is.
        let again = key(1).seal_document(&sealed, "e1").unwrap();
        assert_eq!(again, sealed);
    }

    #[test]
    fn a_key_file_is_created_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let first = SealingKey::load_or_create(&path).unwrap();
        let sealed = first.seal("x", "e").unwrap();
        let again = SealingKey::load_or_create(&path).unwrap();
        assert_eq!(again.open(&sealed, "e").as_deref(), Some("x"));
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn a_raw_key_file_is_accepted_and_a_bad_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw.key");
        std::fs::write(&raw, [9u8; KEY_LEN]).unwrap();
        let sealed = key(9).seal("x", "e").unwrap();
        let loaded = SealingKey::load_or_create(&raw).unwrap();
        assert_eq!(loaded.open(&sealed, "e").as_deref(), Some("x"));
        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "short").unwrap();
        let err = SealingKey::load_or_create(&bad).unwrap_err().to_string();
        assert!(
            err.contains("bad.key") && err.contains("64 hex digits"),
            "{err}"
        );
    }
}
