//! A Prometheus `file_sd` target file of the instances this provider runs
//! (`<data_dir>/prometheus/targets.json`), so a Prometheus pointed at it scrapes every
//! instance with its application, cluster, server group and version as labels.
//!
//! Rewritten whole whenever a group's record is saved or removed (instances started,
//! restarted on another port, stopped), through a temporary file and a rename, so
//! Prometheus never reads half a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::error::LocalError;
use crate::group::Group;

/// The directory under the data directory, and the file in it.
pub const TARGETS_FILE: &str = "prometheus/targets.json";

/// One `file_sd` entry: one instance.
#[derive(Debug, Serialize)]
struct TargetGroup {
    targets: [String; 1],
    labels: BTreeMap<&'static str, String>,
}

/// The target file of one data directory.
#[derive(Debug)]
pub(crate) struct TargetsFile {
    path: PathBuf,
    /// Serializes rewrites: the last one reflects the latest records.
    writing: tokio::sync::Mutex<()>,
}

impl TargetsFile {
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(TARGETS_FILE),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// Rewrites the file with the started instances of `groups`.
    pub(crate) async fn write(&self, groups: &[Arc<Group>]) -> Result<(), LocalError> {
        let _writing = self.writing.lock().await;
        // Read under the lock, so a later call never writes an older view.
        let mut entries = Vec::new();
        for group in groups {
            let record = group.record();
            for instance in record.instances.values().filter(|i| i.pid.is_some()) {
                let mut labels = BTreeMap::from([
                    ("account", record.account.clone()),
                    ("app", record.moniker.app.clone()),
                    ("cluster", record.moniker.cluster()),
                    ("serverGroup", record.name.clone()),
                    ("instance", instance.id.clone()),
                ]);
                if let Some(sequence) = record.moniker.sequence {
                    labels.insert("version", format!("v{sequence:03}"));
                }
                entries.push(TargetGroup {
                    targets: [format!("127.0.0.1:{}", instance.port)],
                    labels,
                });
            }
        }
        entries.sort_by(|a, b| a.labels.get("instance").cmp(&b.labels.get("instance")));
        let text = serde_json::to_vec_pretty(&entries).map_err(|e| LocalError::Io {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        if let Some(dir) = self.path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| LocalError::io(dir, &e))?;
        }
        let temporary = self.path.with_extension("json.tmp");
        tokio::fs::write(&temporary, &text)
            .await
            .map_err(|e| LocalError::io(&temporary, &e))?;
        tokio::fs::rename(&temporary, &self.path)
            .await
            .map_err(|e| LocalError::io(&self.path, &e))
    }
}
