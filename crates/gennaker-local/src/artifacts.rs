//! The content-addressed artifact cache: `<data>/artifacts/sha256/<hex>`.
//!
//! A server group runs exactly the bytes it was created with. The artifact is fetched
//! once, stored under its sha256 and the group records that hash; every later start of
//! an instance (a restart, a scale-up, a re-adoption after a server restart) runs the
//! cached file. A source file changed afterwards is a new artifact with a new hash, never
//! a silent swap under a running group.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::LocalError;
use crate::spec::ArtifactSource;

/// An artifact fetched into the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinnedArtifact {
    /// Hex sha256 of its bytes.
    pub sha256: String,
    /// Where the cached copy is.
    pub path: PathBuf,
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// The cache under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("artifacts").join("sha256"),
        }
    }

    /// The cached file of a hash (present or not).
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// Fetches `source` into the cache (once per distinct content) and pins it.
    pub async fn fetch(
        &self,
        source: &ArtifactSource,
        http: &reqwest::Client,
    ) -> Result<PinnedArtifact, LocalError> {
        let (name, bytes, mode) = match source {
            ArtifactSource::Path(path) => {
                let fail = |e: std::io::Error| LocalError::Artifact {
                    source_name: path.clone(),
                    reason: e.to_string(),
                };
                let bytes = tokio::fs::read(path).await.map_err(fail)?;
                let mode = tokio::fs::metadata(path)
                    .await
                    .map_err(fail)?
                    .permissions()
                    .mode();
                (path.clone(), bytes, mode & 0o777)
            }
            ArtifactSource::Url(url) => {
                let fail = |e: reqwest::Error| LocalError::Artifact {
                    source_name: url.clone(),
                    reason: e.to_string(),
                };
                let response = http
                    .get(url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(fail)?;
                let bytes = response.bytes().await.map_err(fail)?;
                // A downloaded artifact is there to be run (the command defaults to it).
                (url.clone(), bytes.to_vec(), 0o755)
            }
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let path = self.path_of(&sha256);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(PinnedArtifact { sha256, path });
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| LocalError::io(&self.dir, &e))?;
        // Write beside it and rename: a crash never leaves a half-written file under a
        // hash, and a concurrent fetch of the same content just renames the same bytes.
        let partial = self
            .dir
            .join(format!(".{sha256}.{}.partial", std::process::id()));
        tokio::fs::write(&partial, &bytes)
            .await
            .map_err(|e| LocalError::io(&partial, &e))?;
        tokio::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode))
            .await
            .map_err(|e| LocalError::io(&partial, &e))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| LocalError::io(&path, &e))?;
        tracing::info!(artifact = %name, %sha256, "artifact cached");
        Ok(PinnedArtifact { sha256, path })
    }
}
