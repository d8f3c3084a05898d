//! What instances running as another OS user (`[local] run_as_user`) may reach under
//! the data directory.
//!
//! The server keeps its data directory 0700: it holds the database, the admin token and
//! the key sealing secrets. An instance running as another user still has to reach two
//! things under it: its cached artifact (`<local>/artifacts/sha256/<hex>`, which it
//! runs) and its own directory (`<local>/instances/<account>/<id>`, its working
//! directory). So, with a run-as user, the directories on those paths get the search
//! bit for others and nothing more (0711: a path through them can be followed, their
//! entries cannot be listed), and cached artifacts are readable and executable (0755).
//!
//! This exposes no secret: the database, token and key files stay 0600, so reaching
//! the data directory does not let anyone read them; the directories passed through
//! cannot be listed, so a cached artifact can only be opened by whoever knows its
//! sha256; and a cached artifact is a program deployed to run as that very user, which
//! has to read it anyway. Without a run-as user, instances run as the server's user and
//! the provider's directory is kept 0700.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::LocalError;
use crate::policy::RunAs;

/// Directories on an instance's path: followed by anyone, listed by nobody else.
pub(crate) const TRAVERSE_ONLY: u32 = 0o711;

/// Cached artifacts when instances run as another user: they must read and run them.
pub(crate) const SHARED_ARTIFACT: u32 = 0o755;

/// The provider's directory when instances run as the server's user.
const PRIVATE: u32 = 0o700;

/// The search bits for group and others.
const SEARCH: u32 = 0o011;

/// Where the artifact cache is, under the provider's directory.
pub(crate) const CACHE_DIR: [&str; 2] = ["artifacts", "sha256"];

/// Where instances' own directories are, under the provider's directory.
pub(crate) const INSTANCES_DIR: &str = "instances";

/// Sets the permissions of the provider's directory `data_dir` (`<data>/local`) for the
/// user instances run as. With a run-as user: the server's data directory (the parent)
/// gains the search bit, the provider's directory, the cache's and the instances'
/// directories become [`TRAVERSE_ONLY`], cached artifacts [`SHARED_ARTIFACT`]; a
/// directory further up that the user cannot pass is reported. Without one, the
/// provider's directory is made [`PRIVATE`] again (a run-as user removed since).
pub(crate) fn prepare(data_dir: &Path, run_as: Option<&RunAs>) -> Result<(), LocalError> {
    let Some(user) = run_as else {
        return narrow(data_dir, PRIVATE);
    };
    if let Some(parent) = data_dir.parent() {
        add_search(parent)?;
        warn_unreachable(parent, user);
    }
    let cache = CACHE_DIR
        .iter()
        .fold(data_dir.to_path_buf(), |dir, part| dir.join(part));
    for dir in [
        data_dir,
        &data_dir.join(CACHE_DIR[0]),
        &cache,
        &data_dir.join(INSTANCES_DIR),
    ] {
        traversable_dir(dir)?;
    }
    share_cached(&cache)?;
    // Accounts' directories made before the user was configured.
    if let Ok(accounts) = std::fs::read_dir(data_dir.join(INSTANCES_DIR)) {
        for account in accounts.flatten() {
            if account.file_type().is_ok_and(|kind| kind.is_dir()) {
                traversable_dir(&account.path())?;
            }
        }
    }
    Ok(())
}

/// Creates `dir` (and what is missing above it) as [`TRAVERSE_ONLY`], and sets an
/// existing one to it.
pub(crate) fn traversable_dir(dir: &Path) -> Result<(), LocalError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(TRAVERSE_ONLY)
        .create(dir)
        .map_err(|e| LocalError::io(dir, &e))?;
    set_mode(dir, TRAVERSE_ONLY)
}

/// Makes every complete entry of the cache [`SHARED_ARTIFACT`] (those cached before
/// the run-as user was configured kept their source's mode).
fn share_cached(cache: &Path) -> Result<(), LocalError> {
    let entries = std::fs::read_dir(cache).map_err(|e| LocalError::io(cache, &e))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_file())
            && !entry.file_name().to_string_lossy().starts_with('.')
        {
            set_mode(&entry.path(), SHARED_ARTIFACT)?;
        }
    }
    Ok(())
}

/// Adds the search bit for group and others to `dir`, keeping its other bits.
fn add_search(dir: &Path) -> Result<(), LocalError> {
    let mode = std::fs::metadata(dir)
        .map_err(|e| LocalError::io(dir, &e))?
        .mode();
    if mode & SEARCH == SEARCH {
        return Ok(());
    }
    set_mode(dir, (mode & 0o7777) | SEARCH)
}

/// Takes from `path` every permission bit that `mode` does not have.
fn narrow(path: &Path, mode: u32) -> Result<(), LocalError> {
    let current = std::fs::metadata(path)
        .map_err(|e| LocalError::io(path, &e))?
        .mode()
        & 0o777;
    if current & !mode == 0 {
        return Ok(());
    }
    set_mode(path, current & mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LocalError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| LocalError::io(path, &e))
}

/// Logs each directory from `dir` up that `user` cannot pass through: their instances
/// would not start. Only logged, as a supplementary group or an ACL may let the user
/// through where the mode bits do not.
fn warn_unreachable(dir: &Path, user: &RunAs) {
    for ancestor in dir.ancestors() {
        let Ok(metadata) = std::fs::metadata(ancestor) else {
            continue;
        };
        if !searchable_by(&metadata, user) {
            tracing::warn!(
                directory = %ancestor.display(),
                mode = format!("{:o}", metadata.mode() & 0o7777),
                user = %user.name,
                "[local] run_as_user cannot pass through this directory to reach its artifacts: give it the search bit (chmod o+x) or move the data directory"
            );
        }
    }
}

/// Whether the mode bits let `user` pass through the directory (the owner's bits apply
/// to its owner, the group's to its group, the others' to everyone else).
fn searchable_by(metadata: &std::fs::Metadata, user: &RunAs) -> bool {
    let mode = metadata.mode();
    if metadata.uid() == user.uid {
        mode & 0o100 != 0
    } else if metadata.gid() == user.gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    fn nobody_like() -> RunAs {
        RunAs {
            name: "instances".to_owned(),
            uid: 65_000,
            gid: 65_000,
            home: "/nonexistent".into(),
        }
    }

    #[test]
    fn a_run_as_user_can_pass_through_to_artifacts_and_instances_but_not_list() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let local = data.join("local");
        let cache = local.join("artifacts/sha256");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::create_dir_all(local.join("instances/prod")).unwrap();
        std::fs::write(cache.join("abc"), b"#!/bin/sh\n").unwrap();
        std::fs::write(cache.join(".1-0.partial"), b"#!").unwrap();
        std::fs::write(data.join("gennaker.db"), b"").unwrap();
        set_mode(&data, 0o700).unwrap();
        set_mode(&cache.join("abc"), 0o600).unwrap();
        set_mode(&cache.join(".1-0.partial"), 0o600).unwrap();
        set_mode(&data.join("gennaker.db"), 0o600).unwrap();

        prepare(&local, Some(&nobody_like())).unwrap();

        assert_eq!(mode(&data), 0o711);
        for traversed in [
            local.clone(),
            local.join("artifacts"),
            cache.clone(),
            local.join("instances"),
            local.join("instances/prod"),
        ] {
            assert_eq!(mode(&traversed), 0o711, "{}", traversed.display());
        }
        assert_eq!(mode(&cache.join("abc")), 0o755);
        assert_eq!(mode(&cache.join(".1-0.partial")), 0o600);
        assert_eq!(mode(&data.join("gennaker.db")), 0o600);

        // The run-as user removed: the provider's directory is private again.
        prepare(&local, None).unwrap();
        assert_eq!(mode(&local), 0o700);
    }

    #[test]
    fn the_search_bit_is_added_without_taking_other_bits() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("shared");
        std::fs::create_dir(&parent).unwrap();
        set_mode(&parent, 0o1777).unwrap();
        add_search(&parent).unwrap();
        assert_eq!(mode(&parent), 0o1777);
        set_mode(&parent, 0o750).unwrap();
        add_search(&parent).unwrap();
        assert_eq!(mode(&parent), 0o751);
    }
}
