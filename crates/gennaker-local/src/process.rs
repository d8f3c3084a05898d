//! Starting, recognising and stopping instance processes.
//!
//! Instances must outlive the server (a restart re-adopts them), so each runs in its own
//! process group and is never killed when its handle drops. A pid alone cannot identify
//! an instance after a restart (pids are reused), so the provider records the pid with
//! the process's start time from `/proc/<pid>/stat`, and marks every instance's
//! environment with [`MARKER_ENV`] (data directory + instance key) so a process it
//! started but never recorded (a crash in between) is still found and not orphaned.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;

use crate::access;
use crate::error::LocalError;

/// Environment variable carrying `<data dir>|<instance key>` in every instance.
pub(crate) const MARKER_ENV: &str = "GENNAKER_LOCAL_INSTANCE";

/// What to start.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// The program.
    pub(crate) program: String,
    /// Its arguments.
    pub(crate) args: Vec<String>,
    /// Its whole environment (nothing of the server's is inherited).
    pub(crate) env: BTreeMap<String, String>,
    /// Its working directory.
    pub(crate) working_dir: PathBuf,
    /// The user and group it runs as (`None`: the server's).
    pub(crate) user: Option<(u32, u32)>,
    /// A directory created for it and handed to that user (its own directory).
    pub(crate) owned_dir: Option<(PathBuf, u32, u32)>,
    /// The file stdout and stderr are appended to.
    pub(crate) log_file: PathBuf,
}

/// A running (or just exited) instance process.
#[derive(Debug)]
pub(crate) struct InstanceProcess {
    /// Its pid, which is also its process group id.
    pub(crate) pid: i32,
    /// Its start time (clock ticks after boot), which tells it apart from a later
    /// process that reuses the pid.
    pub(crate) start_time: u64,
    /// The handle, when this server started it (an adopted process has none).
    child: Option<Child>,
}

impl InstanceProcess {
    /// Starts a process in its own group with stdout/stderr appended to the log file.
    pub(crate) fn spawn(launch: &Launch) -> Result<Self, LocalError> {
        let fail = |reason: String| LocalError::Spawn {
            program: launch.program.clone(),
            reason,
        };
        for dir in [Some(launch.working_dir.as_path()), launch.log_file.parent()]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(dir).map_err(|e| LocalError::io(dir, &e))?;
        }
        if let Some((dir, uid, gid)) = &launch.owned_dir {
            // The user passes through its account's directory without listing the
            // other instances' (see `access`); its own is private to it.
            if let Some(account) = dir.parent() {
                access::traversable_dir(account)?;
            }
            std::fs::create_dir_all(dir).map_err(|e| LocalError::io(dir, &e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| LocalError::io(dir, &e))?;
            std::os::unix::fs::chown(dir, Some(*uid), Some(*gid))
                .map_err(|e| LocalError::io(dir, &e))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log_file)
            .map_err(|e| LocalError::io(&launch.log_file, &e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| LocalError::io(&launch.log_file, &e))?;
        let mut command = tokio::process::Command::new(&launch.program);
        if let Some((uid, gid)) = launch.user {
            // As root, std also drops the supplementary groups before switching.
            command.uid(uid).gid(gid);
        }
        let child = command
            .args(&launch.args)
            // Nothing of the server's environment (its admin token, its credentials).
            .env_clear()
            .envs(&launch.env)
            .current_dir(&launch.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            // Its own group: a signal to the server's group does not reach it, and
            // stopping it reaches its children too. No kill_on_drop: it must survive us.
            .process_group(0)
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| fail("exited before its pid could be read".to_owned()))?;
        let start_time = start_time(pid).ok_or_else(|| fail("exited at once".to_owned()))?;
        Ok(Self {
            pid,
            start_time,
            child: Some(child),
        })
    }

    /// A process started by an earlier server, if it still runs and is the same process
    /// (same start time).
    pub(crate) fn adopt(pid: i32, start_time: u64) -> Option<Self> {
        is_alive(pid, start_time).then_some(Self {
            pid,
            start_time,
            child: None,
        })
    }

    /// `Some(reason)` once the process has exited (reaping it when it is our child).
    pub(crate) fn exited(&mut self) -> Option<String> {
        if let Some(child) = &mut self.child {
            match child.try_wait() {
                Ok(Some(status)) => return Some(format!("exited with {status}")),
                Ok(None) => return None,
                Err(e) => return Some(format!("cannot be waited for: {e}")),
            }
        }
        (!is_alive(self.pid, self.start_time)).then(|| "process is gone".to_owned())
    }

    /// Stops the process group: SIGTERM, up to `grace` for it to exit, then SIGKILL.
    pub(crate) async fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        signal_group(self.pid, Signal::SIGTERM);
        if self.wait_exit(grace).await {
            return;
        }
        tracing::warn!(pid = self.pid, "instance ignored SIGTERM; killing it");
        signal_group(self.pid, Signal::SIGKILL);
        self.wait_exit(Duration::from_secs(10)).await;
    }

    async fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.exited().is_some() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sends `signal` to a process group; a group that is gone already is not an error.
pub(crate) fn signal_group(pid: i32, signal: Signal) {
    if let Err(e) = killpg(Pid::from_raw(pid), signal)
        && e != nix::errno::Errno::ESRCH
    {
        tracing::warn!(pid, %signal, error = %e, "cannot signal instance");
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (which may contain spaces
/// and parentheses, hence the split at the LAST `)`): state is the first of them.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// A process's start time (field 22 of `/proc/<pid>/stat`), if it exists.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    // Field 3 (state) is index 0 after the command name, so field 22 is index 19.
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether `pid` runs and is the process that started at `start_time` (a zombie counts
/// as exited).
pub(crate) fn is_alive(pid: i32, start_time: u64) -> bool {
    let Some(fields) = stat_fields(pid) else {
        return false;
    };
    let running = !matches!(fields.first().map(String::as_str), Some("Z" | "X" | "x"));
    running && fields.get(19).and_then(|t| t.parse::<u64>().ok()) == Some(start_time)
}

/// Every live process whose environment carries this data directory's marker, with the
/// instance key from it.
pub(crate) fn marked_processes(data_dir: &Path) -> Vec<(i32, String)> {
    let prefix = format!("{MARKER_ENV}={}|", data_dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // Unreadable environments belong to other users' processes: never ours.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let key = environ
            .split(|b| *b == 0)
            .filter_map(|var| std::str::from_utf8(var).ok())
            .find_map(|var| var.strip_prefix(&prefix).map(str::to_owned));
        if let (Some(key), Some(start)) = (key, start_time(pid))
            && is_alive(pid, start)
        {
            found.push((pid, key));
        }
    }
    found
}

/// The marker value of an instance.
pub(crate) fn marker(data_dir: &Path, instance_key: &str) -> String {
    format!("{}|{instance_key}", data_dir.display())
}
