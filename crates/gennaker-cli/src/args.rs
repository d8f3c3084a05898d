//! The command line as clap sees it: global client options and one enum per command group.
//!
//! Arguments stay as close to what the user typed as possible; the command modules turn
//! them into requests.

use std::path::PathBuf;

use crate::output::OutputFormat;

/// Where the server is, who the caller is and how results are printed. Every option is
/// global, so it may be given before or after the subcommand.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientOptions {
    /// Base URL of the Gennaker server [default: `url` in ~/.config/gennaker/config.toml,
    /// else http://127.0.0.1:7777].
    #[arg(long, global = true, env = "GENNAKER_URL")]
    pub url: Option<String>,
    /// API token sent as `Authorization: Bearer` [default: `token` in
    /// ~/.config/gennaker/config.toml, sent only to that file's `url`].
    #[arg(long, global = true, env = "GENNAKER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How results are printed [default: table].
    #[arg(short = 'o', long = "output", global = true, value_enum)]
    pub output: Option<OutputFormat>,
}

/// The client commands: everything that talks to a Gennaker server, plus offline
/// pipeline validation.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Manage applications.
    #[command(subcommand, visible_alias = "application")]
    App(AppCommand),
    /// Manage pipeline configs and their revisions; validate pipeline files offline.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Manage users (admin only).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage roles (admin only).
    #[command(subcommand)]
    Role(RoleCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show the audit log of mutating calls (admin only).
    Audit(AuditArgs),
    /// Show the user the token belongs to, and the server it was checked against.
    Whoami,
}

/// `gennaker app …`
#[derive(clap::Subcommand, Debug)]
pub enum AppCommand {
    /// List applications you may read.
    List,
    /// Show one application.
    Get {
        /// Application name.
        app: String,
    },
    /// Create or update an application from a file or from flags.
    Save(AppSaveArgs),
    /// Delete an application.
    Delete {
        /// Application name.
        app: String,
    },
}

/// `gennaker app save`: a whole document from `-f`, or flags that update only what they
/// name (an existing application keeps everything else).
#[derive(clap::Args, Debug)]
pub struct AppSaveArgs {
    /// Application document (JSON or YAML) to save as is.
    #[arg(short = 'f', long = "file", conflicts_with_all = [
        "name", "email", "description", "cloud_providers", "read_roles", "write_roles", "execute_roles",
    ])]
    pub file: Option<PathBuf>,
    /// Application name.
    #[arg(long, required_unless_present = "file")]
    pub name: Option<String>,
    /// Owner email.
    #[arg(long)]
    pub email: Option<String>,
    /// Free-text description.
    #[arg(long)]
    pub description: Option<String>,
    /// Cloud providers, comma separated (e.g. kubernetes,aws).
    #[arg(long, value_delimiter = ',')]
    pub cloud_providers: Option<Vec<String>>,
    /// Role granted READ; repeat or separate with commas.
    #[arg(long = "read-role", value_delimiter = ',')]
    pub read_roles: Option<Vec<String>>,
    /// Role granted WRITE; repeat or separate with commas.
    #[arg(long = "write-role", value_delimiter = ',')]
    pub write_roles: Option<Vec<String>>,
    /// Role granted EXECUTE; repeat or separate with commas.
    #[arg(long = "execute-role", value_delimiter = ',')]
    pub execute_roles: Option<Vec<String>>,
}

/// `gennaker pipeline …`
#[derive(clap::Subcommand, Debug)]
pub enum PipelineCommand {
    /// List the pipelines of an application.
    List {
        /// Application name.
        app: String,
    },
    /// Show a pipeline config (the current one, or an older revision).
    Get {
        /// Application name.
        app: String,
        /// Pipeline name.
        name: String,
        /// Show this revision instead of the current one.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Save a pipeline from a JSON or YAML file: created, or stored as a new revision.
    Save {
        /// Pipeline document (JSON or YAML).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Application to save into, when the document does not name one.
        #[arg(short = 'a', long)]
        application: Option<String>,
    },
    /// Delete a pipeline and its history.
    Delete {
        /// Application name.
        app: String,
        /// Pipeline name.
        name: String,
    },
    /// List the revisions of a pipeline, newest first.
    History {
        /// Application name.
        app: String,
        /// Pipeline name.
        name: String,
    },
    /// Make an older revision current again (stored as a new revision).
    Restore {
        /// Application name.
        app: String,
        /// Pipeline name.
        name: String,
        /// Revision to restore.
        revision: u64,
    },
    /// Check a pipeline file without a server: syntax, references, cycles, stage types.
    Validate {
        /// Pipeline document (JSON or YAML).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
}

/// `gennaker user …`
#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// List users.
    List,
    /// Show one user.
    Get {
        /// User name.
        name: String,
    },
    /// Create a user.
    Create {
        /// User name.
        name: String,
        /// Make the user an administrator (may do everything).
        #[arg(long)]
        admin: bool,
        /// Role to grant; repeat or separate with commas.
        #[arg(long = "role", value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// Delete a user (their tokens stop working).
    Delete {
        /// User name.
        name: String,
    },
    /// Replace the roles of a user.
    SetRoles {
        /// User name.
        name: String,
        /// Role to grant; repeat or separate with commas.
        #[arg(
            long = "role",
            value_delimiter = ',',
            required_unless_present = "clear"
        )]
        roles: Vec<String>,
        /// Remove every role (instead of naming new ones).
        #[arg(long, conflicts_with = "roles")]
        clear: bool,
    },
}

/// `gennaker role …`
#[derive(clap::Subcommand, Debug)]
pub enum RoleCommand {
    /// List roles.
    List,
    /// Create a role.
    Create {
        /// Role name.
        name: String,
        /// What the role is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a role.
    Delete {
        /// Role name.
        name: String,
    },
}

/// `gennaker token …`
#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// List API tokens (your own; admins may name another user).
    List {
        /// Only the tokens of this user.
        #[arg(long)]
        user: Option<String>,
    },
    /// Create an API token; its secret is printed once.
    Create {
        /// A name saying what the token is for (e.g. ci-deploy).
        #[arg(long)]
        name: String,
        /// The user the token acts as (admins only; default: you).
        #[arg(long)]
        user: Option<String>,
        /// Let the token expire after this many days (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke an API token.
    Revoke {
        /// Token id (from `gennaker token list`).
        id: String,
    },
}

/// `gennaker audit`
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// At most this many entries, newest first.
    #[arg(long)]
    pub limit: Option<u32>,
    /// Only calls made by this user.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only calls whose target starts with this prefix (e.g. applications/shop).
    #[arg(long)]
    pub target: Option<String>,
}
