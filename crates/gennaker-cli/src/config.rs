//! Which server to call and with which token.
//!
//! Order: `--url`/`--token`, then `GENNAKER_URL`/`GENNAKER_TOKEN` (clap folds both into
//! [`ClientOptions`]), then `config.toml` in the user's config directory, then the
//! default URL. The config file is read only when a flag or variable is missing, so a
//! broken file never gets in the way of an explicit `--url --token`.
//!
//! The file's token belongs to the file's server (its `url`, else the default URL). It
//! is sent nowhere else: a `--url` pointing at another server needs its own `--token`,
//! or a mistyped or planted URL would receive the user's credentials.

use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::Deserialize;

use crate::args::ClientOptions;
use crate::error::CliError;

/// Where `gennaker server` listens unless told otherwise.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:7777";

/// `~/.config/gennaker/config.toml`, or `$XDG_CONFIG_HOME/gennaker/config.toml`
/// (`dirs` follows each platform's convention).
pub(crate) fn default_config_path() -> Option<PathBuf> {
    dirs::config_dir().map(|dir| dir.join("gennaker").join("config.toml"))
}

/// The contents of `config.toml`.
#[derive(Debug, Default, Deserialize)]
// A misspelt key would otherwise be ignored silently and the default used instead.
#[serde(deny_unknown_fields)]
struct ConfigFile {
    url: Option<String>,
    token: Option<String>,
}

/// Where the token came from, so a 401 can say which setting to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token` or `GENNAKER_TOKEN`.
    FlagOrEnv,
    /// The `token` key of this config file.
    ConfigFile(PathBuf),
    /// No token anywhere: requests go out unauthenticated.
    Missing,
}

/// The resolved endpoint and credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    pub(crate) token_source: TokenSource,
}

impl Settings {
    /// Resolves the settings from the options and, for what they leave open, the config
    /// file at `config_path` (a missing file is the same as an empty one).
    pub(crate) fn resolve(
        options: &ClientOptions,
        config_path: Option<&Path>,
    ) -> Result<Self, CliError> {
        let url = non_empty(options.url.as_deref());
        let token = non_empty(options.token.as_deref());
        let file = match (url, token, config_path) {
            (Some(_), Some(_), _) | (_, _, None) => None,
            (_, _, Some(path)) => Some((read_config(path)?, path)),
        };
        let file_url = file
            .as_ref()
            .and_then(|(file, _)| non_empty(file.url.as_deref()));
        let url = url.or(file_url).unwrap_or(DEFAULT_URL).to_owned();
        let file_token = file
            .as_ref()
            .and_then(|(file, path)| Some((non_empty(file.token.as_deref())?, *path)));
        let (token, token_source) = match (token, file_token) {
            (Some(token), _) => (Some(token.to_owned()), TokenSource::FlagOrEnv),
            (None, Some((token, path))) => {
                let token_url = file_url.unwrap_or(DEFAULT_URL);
                if !same_server(&url, token_url) {
                    return Err(CliError::TokenNotForUrl {
                        url,
                        token_url: token_url.to_owned(),
                        path: path.to_owned(),
                    });
                }
                (
                    Some(token.to_owned()),
                    TokenSource::ConfigFile(path.to_owned()),
                )
            }
            (None, None) => (None, TokenSource::Missing),
        };
        Ok(Self {
            url,
            token,
            token_source,
        })
    }
}

/// Whether two base URLs name the same server: scheme, host and port (default ports
/// filled in, host case ignored) and path, ignoring a trailing slash. URLs that do not
/// parse are compared as written; the client rejects them later anyway.
fn same_server(a: &str, b: &str) -> bool {
    match (Url::parse(a), Url::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
                && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
        }
        _ => a.trim_end_matches('/') == b.trim_end_matches('/'),
    }
}

/// An empty `GENNAKER_TOKEN=` is how people unset a variable in scripts; treat it as unset.
fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

fn read_config(path: &Path) -> Result<ConfigFile, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ConfigFile::default());
        }
        Err(err) => {
            return Err(CliError::Config {
                path: path.to_owned(),
                reason: err.to_string(),
            });
        }
    };
    toml::from_str(&text).map_err(|err| CliError::Config {
        path: path.to_owned(),
        reason: err.message().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: Option<&str>, token: Option<&str>) -> ClientOptions {
        ClientOptions {
            url: url.map(str::to_owned),
            token: token.map(str::to_owned),
            output: None,
        }
    }

    fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn flags_and_env_win_over_the_config_file() {
        let (_dir, path) = config_file("url = \"http://file:1\"\ntoken = \"file-token\"\n");
        let settings =
            Settings::resolve(&options(Some("http://flag:2"), Some("flag")), Some(&path)).unwrap();
        assert_eq!(settings.url, "http://flag:2");
        assert_eq!(settings.token.as_deref(), Some("flag"));
        assert_eq!(settings.token_source, TokenSource::FlagOrEnv);
    }

    #[test]
    fn the_config_file_fills_what_flags_leave_open() {
        let (_dir, path) = config_file("url = \"http://file:1\"\ntoken = \"file-token\"\n");
        let settings = Settings::resolve(&options(None, None), Some(&path)).unwrap();
        assert_eq!(settings.url, "http://file:1");
        assert_eq!(settings.token.as_deref(), Some("file-token"));
        assert_eq!(settings.token_source, TokenSource::ConfigFile(path.clone()));

        let settings = Settings::resolve(&options(None, Some("flag")), Some(&path)).unwrap();
        assert_eq!(settings.url, "http://file:1");
        assert_eq!(settings.token_source, TokenSource::FlagOrEnv);

        // The same server spelt slightly differently still gets the file's token.
        for same in ["http://file:1", "http://FILE:1/", "http://file:1//"] {
            let settings = Settings::resolve(&options(Some(same), None), Some(&path)).unwrap();
            assert_eq!(settings.token.as_deref(), Some("file-token"), "{same}");
        }
    }

    #[test]
    fn the_config_file_token_is_not_sent_to_another_server() {
        let (_dir, path) = config_file("url = \"http://file:1\"\ntoken = \"file-token\"\n");
        for other in [
            "http://evil.example:1",
            "http://file:2",
            "https://file:1",
            "http://file:1/other",
        ] {
            let err = Settings::resolve(&options(Some(other), None), Some(&path)).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, CliError::TokenNotForUrl { .. }),
                "{other}: {message}"
            );
            assert!(message.contains("--token"), "{message}");
            assert!(message.contains("GENNAKER_TOKEN"), "{message}");
            assert!(message.contains("http://file:1"), "{message}");
            assert!(!message.contains("file-token"), "{message}");
        }
        // With a token of its own, another server is fine.
        let settings =
            Settings::resolve(&options(Some("http://other:2"), Some("flag")), Some(&path)).unwrap();
        assert_eq!(settings.token.as_deref(), Some("flag"));

        // A file without `url` keeps its token for the default server.
        let (_dir, path) = config_file("token = \"file-token\"\n");
        let settings =
            Settings::resolve(&options(Some("http://127.0.0.1:7777/"), None), Some(&path)).unwrap();
        assert_eq!(settings.token.as_deref(), Some("file-token"));
        let err =
            Settings::resolve(&options(Some("http://other:2"), None), Some(&path)).unwrap_err();
        assert!(matches!(err, CliError::TokenNotForUrl { .. }), "{err}");
    }

    #[test]
    fn defaults_apply_without_flags_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.toml");
        for path in [None, Some(missing.as_path())] {
            let settings = Settings::resolve(&options(None, None), path).unwrap();
            assert_eq!(settings.url, DEFAULT_URL);
            assert_eq!(settings.token, None);
            assert_eq!(settings.token_source, TokenSource::Missing);
        }
    }

    #[test]
    fn empty_values_count_as_unset() {
        let (_dir, path) = config_file("token = \"file-token\"\n");
        let settings = Settings::resolve(&options(Some(""), Some("  ")), Some(&path)).unwrap();
        assert_eq!(settings.url, DEFAULT_URL);
        assert_eq!(settings.token.as_deref(), Some("file-token"));
    }

    #[test]
    fn a_broken_config_file_is_reported_with_its_path() {
        let (_dir, path) = config_file("tokn = \"typo\"\n");
        let err = Settings::resolve(&options(None, None), Some(&path)).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("tokn"), "{message}");
    }

    #[test]
    fn a_broken_config_file_is_not_read_when_flags_say_everything() {
        let (_dir, path) = config_file("not toml at all [");
        let settings =
            Settings::resolve(&options(Some("http://x:1"), Some("t")), Some(&path)).unwrap();
        assert_eq!(settings.url, "http://x:1");
    }

    #[test]
    fn the_default_path_ends_in_gennaker_config_toml() {
        if let Some(path) = default_config_path() {
            assert!(path.ends_with("gennaker/config.toml"), "{}", path.display());
        }
    }
}
