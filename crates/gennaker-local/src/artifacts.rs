//! The content-addressed artifact cache: `<local>/artifacts/sha256/<hex>`.
//!
//! A server group runs exactly the bytes it was created with. The artifact is fetched
//! once, stored under its sha256 and the group records that hash; every later start of
//! an instance (a restart, a scale-up, a re-adoption after a server restart) runs the
//! cached file. A source file changed afterwards is a new artifact with a new hash, never
//! a silent swap under a running group.
//!
//! A fetch streams: the bytes go chunk by chunk into a temporary file in the cache
//! directory, hashed on the way, and only a complete file is renamed to its hash, so an
//! interrupted or oversized fetch never becomes an entry and no artifact is ever held in
//! memory whole. Concurrent fetches of one source share a single download.

use std::borrow::Cow;
use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gennaker_core::redact::redact_url_passwords;
use gennaker_outbound::{OutboundError, refusal_of};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::access::{CACHE_DIR, SHARED_ARTIFACT};
use crate::error::LocalError;
use crate::lock;
use crate::policy::DEFAULT_ARTIFACT_FETCH_TIMEOUT;
use crate::spec::{ArtifactSource, decode_embedded};

/// The largest artifact a cache accepts unless told otherwise
/// ([`ArtifactCache::with_max_bytes`]): 1 GiB.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// How much of a file artifact is read at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Ends the names of files being written; no hash does.
const PARTIAL_SUFFIX: &str = ".partial";

/// An artifact fetched into the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinnedArtifact {
    /// Hex sha256 of its bytes.
    pub sha256: String,
    /// Where the cached copy is.
    pub path: PathBuf,
}

/// The result of a fetch in progress, shared by every caller fetching that source.
type Slot = Arc<tokio::sync::Mutex<Option<PinnedArtifact>>>;

/// The cache directory.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    max_bytes: u64,
    /// How long a download may take in all.
    fetch_timeout: Duration,
    /// Whether instances run as another OS user, who must read and run every entry
    /// (see [`access`](crate::access) for why that exposes no secret).
    shared: bool,
    /// Fetches in progress by source name.
    in_flight: Arc<Mutex<HashMap<String, Slot>>>,
}

impl ArtifactCache {
    /// The cache under `data_dir`, accepting artifacts up to
    /// [`DEFAULT_MAX_ARTIFACT_BYTES`] and downloads taking up to
    /// [`DEFAULT_ARTIFACT_FETCH_TIMEOUT`].
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: CACHE_DIR
                .iter()
                .fold(data_dir.to_path_buf(), |dir, part| dir.join(part)),
            max_bytes: DEFAULT_MAX_ARTIFACT_BYTES,
            fetch_timeout: DEFAULT_ARTIFACT_FETCH_TIMEOUT,
            shared: false,
            in_flight: Arc::default(),
        }
    }

    /// The same cache giving up on a download after `timeout` in all.
    #[must_use]
    pub fn with_fetch_timeout(self, timeout: Duration) -> Self {
        Self {
            fetch_timeout: timeout,
            ..self
        }
    }

    /// The same cache storing entries readable and executable by everyone
    /// ([`SHARED_ARTIFACT`]) rather than with their source's mode: instances run as
    /// another OS user (`[local] run_as_user`).
    #[must_use]
    pub fn shared_with_instances(self) -> Self {
        Self {
            shared: true,
            ..self
        }
    }

    /// The same cache refusing artifacts larger than `max_bytes`.
    #[must_use]
    pub fn with_max_bytes(self, max_bytes: u64) -> Self {
        Self { max_bytes, ..self }
    }

    /// The cached file of a hash (present or not).
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// Fetches `source` into the cache and pins it. A fetch of a source that is being
    /// fetched already waits for that one and shares its result instead of fetching
    /// again; once none is in progress, the next fetch reads the source anew.
    pub async fn fetch(
        &self,
        source: &ArtifactSource,
        http: &reqwest::Client,
    ) -> Result<PinnedArtifact, LocalError> {
        let joined = Joined::new(&self.in_flight, &source_name(source));
        let mut shared = joined.slot.lock().await;
        if let Some(pinned) = shared.as_ref() {
            return Ok(pinned.clone());
        }
        let pinned = self.fetch_now(source, http).await?;
        *shared = Some(pinned.clone());
        Ok(pinned)
    }

    /// Removes what interrupted fetches left (a server killed mid-download).
    pub(crate) async fn remove_partials(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            if entry
                .file_name()
                .to_string_lossy()
                .ends_with(PARTIAL_SUFFIX)
            {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }

    async fn fetch_now(
        &self,
        source: &ArtifactSource,
        http: &reqwest::Client,
    ) -> Result<PinnedArtifact, LocalError> {
        let name = source_name(source);
        let name = name.as_ref();
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| LocalError::io(&self.dir, &e))?;
        let mut partial = Partial::create(&self.dir, name, self.max_bytes).await?;
        let mode = match source {
            ArtifactSource::Path(path) => copy_file(path, &mut partial).await?,
            ArtifactSource::Base64(data) => {
                partial.write(&decode_embedded(data)?).await?;
                // Like a download: there to be run.
                0o755
            }
            ArtifactSource::Url(url) => {
                tokio::time::timeout(self.fetch_timeout, download(url, http, &mut partial))
                    .await
                    .map_err(|_| {
                        LocalError::Refused(format!(
                            "artifact url '{}' did not download within {}s: it is refused ([local] artifact_fetch_timeout_seconds in gennaker.toml)",
                            redact_url_passwords(url),
                            self.fetch_timeout.as_secs()
                        ))
                    })??;
                // A downloaded artifact is there to be run (the command defaults to it).
                0o755
            }
        };
        let mode = if self.shared { SHARED_ARTIFACT } else { mode };
        let sha256 = partial.sha256();
        let path = self.path_of(&sha256);
        // Present already: the same bytes; the partial copy is removed when dropped.
        if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            partial.keep_as(&path, mode).await?;
            tracing::info!(artifact = %redact_url_passwords(name), %sha256, "artifact cached");
        }
        Ok(PinnedArtifact { sha256, path })
    }
}

/// What a source is known by (fetches in progress, logs): an embedded artifact by the
/// hash of its text, so neither its bytes nor a prefix shared by two of them are used.
fn source_name(source: &ArtifactSource) -> Cow<'_, str> {
    match source {
        ArtifactSource::Path(path) => Cow::Borrowed(path),
        ArtifactSource::Url(url) => Cow::Borrowed(url),
        ArtifactSource::Base64(data) => Cow::Owned(format!(
            "embedded:{}",
            hex::encode(Sha256::digest(data.as_bytes()))
        )),
    }
}

/// Copies a local file into `partial`; returns its permission bits. Only a regular file
/// is copied: a device (`/dev/urandom`) never ends, a FIFO blocks, a directory has no
/// bytes. It is opened without blocking (a FIFO with no writer would wait forever) and
/// checked by what was opened, not by the name, so nothing is swapped in between.
async fn copy_file(path: &str, partial: &mut Partial) -> Result<u32, LocalError> {
    let fail = |e: std::io::Error| LocalError::Artifact {
        source_name: path.to_owned(),
        reason: e.to_string(),
    };
    let mut file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .await
        .map_err(fail)?;
    let metadata = file.metadata().await.map_err(fail)?;
    if !metadata.is_file() {
        return Err(LocalError::Refused(format!(
            "artifact path '{path}' is {}, not a regular file: only regular files can be deployed",
            file_kind(&metadata.file_type())
        )));
    }
    let mode = metadata.permissions().mode() & 0o777;
    let mut buffer = vec![0; READ_CHUNK];
    loop {
        let read = file.read(&mut buffer).await.map_err(fail)?;
        if read == 0 {
            return Ok(mode);
        }
        partial.write(&buffer[..read]).await?;
    }
}

/// What a file that is not a regular file is, for messages.
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// An artifact URL the outbound policy refuses: refused for good (the address will not
/// become allowed by retrying), naming the URL, what was refused and the `[outbound]
/// allow` entry that would let it through. A password in the URL is not repeated.
pub(crate) fn refused_url(url: &str, refusal: &OutboundError) -> LocalError {
    let message = format!("artifact url '{url}' is refused: {refusal}");
    LocalError::Refused(redact_url_passwords(&message).into_owned())
}

/// Streams a URL's body into `partial`, refusing at once a body announced too large.
async fn download(
    url: &str,
    http: &reqwest::Client,
    partial: &mut Partial,
) -> Result<(), LocalError> {
    // reqwest's own text ("error sending request for url ...") hides the policy's
    // reason, and a connection error reads as worth retrying: a refusal is neither.
    let fail = |e: reqwest::Error| match refusal_of(&e) {
        Some(refusal) => refused_url(url, refusal),
        None => LocalError::Artifact {
            source_name: url.to_owned(),
            reason: e.to_string(),
        },
    };
    let mut response = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(fail)?;
    if response
        .content_length()
        .is_some_and(|length| length > partial.limit)
    {
        return Err(partial.too_large());
    }
    while let Some(chunk) = response.chunk().await.map_err(fail)? {
        partial.write(&chunk).await?;
    }
    Ok(())
}

/// One caller's share of a fetch in progress. The last one out forgets the fetch.
struct Joined<'a> {
    in_flight: &'a Mutex<HashMap<String, Slot>>,
    name: String,
    slot: Slot,
}

impl<'a> Joined<'a> {
    fn new(in_flight: &'a Mutex<HashMap<String, Slot>>, name: &str) -> Self {
        let slot = lock(in_flight).entry(name.to_owned()).or_default().clone();
        Self {
            in_flight,
            name: name.to_owned(),
            slot,
        }
    }
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        let mut in_flight = lock(self.in_flight);
        // Held by the map and by us alone (the map lock keeps anyone from taking it
        // now): nobody else waits for this fetch.
        if in_flight
            .get(&self.name)
            .is_some_and(|slot| Arc::ptr_eq(slot, &self.slot))
            && Arc::strong_count(&self.slot) == 2
        {
            in_flight.remove(&self.name);
        }
    }
}

/// A file being written in the cache directory under a name no lookup uses, hashed as
/// it is written. Removed when dropped unless kept under its hash.
struct Partial {
    /// `None` once kept.
    path: Option<PathBuf>,
    file: tokio::fs::File,
    hasher: Sha256,
    written: u64,
    source_name: String,
    limit: u64,
}

impl Partial {
    async fn create(dir: &Path, source_name: &str, limit: u64) -> Result<Self, LocalError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = dir.join(format!(
            ".{}-{}{PARTIAL_SUFFIX}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| LocalError::io(&path, &e))?;
        Ok(Self {
            path: Some(path),
            file,
            hasher: Sha256::new(),
            written: 0,
            source_name: source_name.to_owned(),
            limit,
        })
    }

    fn too_large(&self) -> LocalError {
        LocalError::ArtifactTooLarge {
            source_name: self.source_name.clone(),
            limit: self.limit,
        }
    }

    fn io_error(&self, err: &std::io::Error) -> LocalError {
        LocalError::io(self.path.as_deref().unwrap_or(Path::new("")), err)
    }

    /// Appends a chunk; refuses one that would take the file over the limit.
    async fn write(&mut self, chunk: &[u8]) -> Result<(), LocalError> {
        let length = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        let total = self.written.saturating_add(length);
        if total > self.limit {
            return Err(self.too_large());
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| self.io_error(&e))?;
        self.written = total;
        Ok(())
    }

    fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// Makes the complete file the cache entry `path`: on disk and closed first, then
    /// renamed, so an entry is never a partial file, even after a crash.
    async fn keep_as(mut self, path: &Path, mode: u32) -> Result<(), LocalError> {
        self.file.flush().await.map_err(|e| self.io_error(&e))?;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .await
            .map_err(|e| self.io_error(&e))?;
        self.file.sync_all().await.map_err(|e| self.io_error(&e))?;
        let Some(partial) = self.path.take() else {
            return Ok(());
        };
        if let Err(e) = tokio::fs::rename(&partial, path).await {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(LocalError::io(path, &e));
        }
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
