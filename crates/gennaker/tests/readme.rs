//! The README's "A short tour", run as a user types it: every line of the section's `sh`
//! blocks, in order, in one shell session (exports carry over), against a real server on
//! a temporary data directory and a free port. What maps the README onto the test is
//! listed in [`Session::expand`]; the few lines a test cannot run are skipped by name in
//! [`SKIPPED`], with the reason, and every skip must still match a line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::{BIN, KillInstances};

mod support;

/// The section under test: from this heading to the next one.
const TOUR: &str = "## A short tour";
/// Lines a test cannot run, by a piece of their text, and why.
const SKIPPED: [(&str, &str); 2] = [
    (
        "cargo build --release",
        "the test runs the binary cargo built for it",
    ),
    ("curl -N", "server-sent events stream until interrupted"),
];
/// The longest one command may take (a deploy with `--watch` is the slowest).
const COMMAND_PATIENCE: Duration = Duration::from_secs(120);
/// The longest a server started in the background may take to answer `/readyz`.
const READY_PATIENCE: Duration = Duration::from_secs(30);

/// The commands of the tour, in order: comments and blank lines dropped.
fn tour_commands(readme: &str) -> Vec<String> {
    let start = readme.find(TOUR).expect("the README has a tour");
    let section = &readme[start + TOUR.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in section.lines() {
        match line.trim_end() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            line if in_sh => {
                let command = strip_comment(line).trim();
                if !command.is_empty() {
                    commands.push(command.to_owned());
                }
            }
            _ => {}
        }
    }
    commands
}

/// `line` without its shell comment: a `#` that starts a word outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut word_start = true;
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') if word_start => return &line[..at],
            _ => {}
        }
        word_start = quote.is_none() && c.is_whitespace();
    }
    line
}

/// One shell session: its environment, and what stands for the README's fixed names.
struct Session {
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    data_dir: PathBuf,
    port: u16,
    /// The id the latest `pipeline run` printed: the README's `EXECUTION_ID`.
    execution_id: Option<String>,
    background: Vec<tokio::process::Child>,
}

impl Session {
    fn new(home: &Path, data_dir: PathBuf) -> Session {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut env: BTreeMap<String, String> = std::env::vars()
            .filter(|(name, _)| !name.starts_with("GENNAKER_"))
            .collect();
        for name in ["HOME", "XDG_CONFIG_HOME"] {
            env.insert(name.to_owned(), home.display().to_string());
        }
        // The server's own setting: the README's default port may be taken.
        env.insert("GENNAKER_LISTEN".to_owned(), format!("127.0.0.1:{port}"));
        Session {
            env,
            cwd: Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
            data_dir,
            port,
            execution_id: None,
            background: Vec::new(),
        }
    }

    /// The README's line as this test runs it: the release build is the binary under
    /// test, `/tmp/gk` the temporary data directory, port 7777 the free port, and
    /// `EXECUTION_ID` the id the latest `pipeline run` printed.
    fn expand(&self, line: &str) -> String {
        let bin_dir = Path::new(BIN).parent().unwrap().display().to_string();
        let mut line = line
            .replace("$PWD/target/release", &bin_dir)
            .replace("target/release", &bin_dir)
            .replace("/tmp/gk", &self.data_dir.display().to_string())
            .replace("127.0.0.1:7777", &format!("127.0.0.1:{}", self.port));
        if line.contains("EXECUTION_ID") {
            let id = self
                .execution_id
                .as_deref()
                .unwrap_or_else(|| panic!("`{line}` needs an execution, and none was started"));
            line = line.replace("EXECUTION_ID", id);
        }
        line
    }

    fn shell(&self, script: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("sh");
        command
            .args(["-c", script])
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs one line of the tour; it must succeed.
    async fn run(&mut self, line: &str) {
        let expanded = self.expand(line);
        if let Some(background) = expanded.strip_suffix('&') {
            self.start_in_background(line, background.trim()).await;
            return;
        }
        let exports = expanded.starts_with("export ");
        // An export is run by the shell, which then reports the environment it leaves.
        let script = if exports {
            format!("{expanded}\nenv -0")
        } else {
            expanded.clone()
        };
        let output = tokio::time::timeout(COMMAND_PATIENCE, self.shell(&script).output())
            .await
            .unwrap_or_else(|_| panic!("`{line}` did not end within {COMMAND_PATIENCE:?}"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "`{line}` (run as `{expanded}`) failed with {}:\n{stdout}\n{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.server_log()
        );
        if exports {
            self.env = stdout
                .split('\0')
                .filter_map(|pair| pair.split_once('='))
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect();
        }
        if let Some(id) = stdout
            .split("Started execution ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        {
            self.execution_id = Some(id.to_owned());
        }
    }

    /// Starts `command` (a line ending with `&`: the server) and waits until it answers
    /// `/readyz`, as a user waits for its log line before typing on.
    async fn start_in_background(&mut self, line: &str, command: &str) {
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = self
            .shell(&format!("exec {command}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.background.push(child);
        let http = reqwest::Client::new();
        let ready = format!("http://127.0.0.1:{}/readyz", self.port);
        let deadline = tokio::time::Instant::now() + READY_PATIENCE;
        while tokio::time::Instant::now() < deadline {
            if let Ok(response) = http.get(&ready).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "`{line}` did not answer {ready} within {READY_PATIENCE:?}:\n{}",
            self.server_log()
        );
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

#[test]
fn comments_are_stripped_outside_quotes_only() {
    assert_eq!(strip_comment("gennaker audit   # who"), "gennaker audit   ");
    assert_eq!(strip_comment("echo 'a # b' # c"), "echo 'a # b' ");
    assert_eq!(strip_comment("echo a#b"), "echo a#b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_runs_as_typed() {
    let dir = tempfile::tempdir().unwrap();
    let _leftovers = KillInstances(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let commands = tour_commands(&readme);
    let mut session = Session::new(&home, dir.path().join("gk"));
    let mut skipped = Vec::new();
    for line in &commands {
        if let Some((_, why)) = SKIPPED.iter().find(|(what, _)| line.contains(what)) {
            println!("SKIPPED `{line}`: {why}");
            skipped.push(line);
            continue;
        }
        println!("$ {line}");
        session.run(line).await;
    }
    assert_eq!(
        skipped.len(),
        SKIPPED.len(),
        "every skip names one line of the tour: {skipped:?}"
    );
    assert!(
        session.background.len() == 1 && session.execution_id.is_some(),
        "the tour starts a server and runs pipelines: {commands:#?}"
    );
}
