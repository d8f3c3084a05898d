//! The command line as clap sees it: global client options and one enum per command group.
//!
//! Arguments stay as close to what the user typed as possible; the command modules turn
//! them into requests.

use std::path::PathBuf;

use gennaker_core::ExecutionStatus;

use crate::output::OutputFormat;
use crate::status::StatusParser;

/// Where the server is, who the caller is and how results are printed. Each option may be
/// given before the subcommand or after it, once [`ClientOptions::scope`] has given it to
/// the subcommands that use it.
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

/// The ids of [`ClientOptions`]' arguments, and the one offline tools take too.
const OPTION_IDS: [&str; 3] = ["url", "token", "output"];
const OUTPUT_ID: &str = "output";

impl ClientOptions {
    /// Scopes the options of a top-level `command` that flattens [`ClientOptions`]: they
    /// stay accepted before any subcommand, and become global to the client subcommands
    /// only, so they may come after any of those. The subcommands named in `offline` get
    /// `-o` alone (they print results but call no server); those named in `standalone`
    /// (the server itself, the demo) get none, so their `--help` does not offer them.
    pub fn scope(command: clap::Command, offline: &[&str], standalone: &[&str]) -> clap::Command {
        let options: Vec<clap::Arg> = command
            .get_arguments()
            .filter(|arg| OPTION_IDS.contains(&arg.get_id().as_str()))
            .map(|arg| arg.clone().global(true))
            .collect();
        let mut command = command.mut_args(|arg| {
            if OPTION_IDS.contains(&arg.get_id().as_str()) {
                arg.global(false)
            } else {
                arg
            }
        });
        let names: Vec<String> = command
            .get_subcommands()
            .map(|sub| sub.get_name().to_owned())
            .collect();
        for name in names {
            let taken: Vec<clap::Arg> = if standalone.contains(&name.as_str()) {
                Vec::new()
            } else if offline.contains(&name.as_str()) {
                options
                    .iter()
                    .filter(|arg| arg.get_id() == OUTPUT_ID)
                    .cloned()
                    .collect()
            } else {
                options.clone()
            };
            command = command.mut_subcommand(name, |sub| sub.args(taken));
        }
        command
    }
}

/// The client commands: everything that talks to a Gennaker server, plus offline
/// pipeline validation.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Manage applications.
    #[command(subcommand, visible_alias = "application")]
    App(AppCommand),
    /// Manage pipeline configs and their revisions, run them; validate pipeline files offline.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Follow and act on pipeline executions: list, get, watch, cancel, pause, resume,
    /// restart, skip, judge.
    #[command(subcommand, visible_alias = "exec")]
    Execution(ExecutionCommand),
    /// Show an application's clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Show and operate on server groups: get, resize, enable, disable, destroy, rollback.
    /// Operations run as recorded executions; `--watch` follows one to its end.
    #[command(subcommand, name = "servergroup", visible_alias = "sg")]
    ServerGroup(ServerGroupCommand),
    /// Show an application's load balancers and the traffic share of each server group.
    #[command(subcommand, name = "loadbalancer", visible_alias = "lb")]
    LoadBalancer(LoadBalancerCommand),
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
    /// Show what triggers did: `gennaker trigger log APP`.
    #[command(subcommand)]
    Trigger(TriggerCommand),
    /// Show the user the token belongs to, and the server it was checked against.
    Whoami,
    /// List the stage types the server runs (`--all`: also Spinnaker's others, which
    /// pipelines may contain but runs stop at).
    StageTypes(StageTypesArgs),
}

/// `gennaker stage-types`
#[derive(clap::Args, Debug)]
pub struct StageTypesArgs {
    /// Also list the Spinnaker stage types Gennaker cannot run.
    #[arg(long)]
    pub all: bool,
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
    /// Fire one of a pipeline's triggers by hand, to test it: the trigger is matched
    /// against the payload and, if it matches, the pipeline runs as you with the
    /// trigger object it would get.
    Trigger {
        /// Application name.
        app: String,
        /// Pipeline name.
        name: String,
        /// The trigger type to fire (cron, webhook, git, docker, pipeline); default: the
        /// pipeline's first trigger.
        #[arg(long = "type")]
        kind: Option<String>,
        /// The event's payload (JSON or YAML): a webhook or git body, {tag, digest} for
        /// docker, {status} for pipeline.
        #[arg(long)]
        payload: Option<PathBuf>,
    },
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
        /// The server's gennaker.toml, for the stage types it defines
        /// (`[[webhooks.preconfigured]]`); without it they are reported as unknown.
        #[arg(long, env = "GENNAKER_CONFIG")]
        server_config: Option<PathBuf>,
    },
    /// Run a pipeline (needs EXECUTE on the application); with --watch, follow it to
    /// its end and exit with its outcome.
    #[command(after_help = EXIT_CODES_HELP)]
    Run(RunArgs),
}

/// What `pipeline run --watch` and `execution watch` exit with; kept in one place so
/// the help and the code agree.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit status (with --watch, and for `execution watch`):
  0  the execution SUCCEEDED
  1  the command failed (server unreachable, not found, permission denied, ...)
  2  wrong usage
  3  the execution ended TERMINAL (a stage failed)
  4  the execution was CANCELED
  5  the execution ended STOPPED, or another way that is not success
  6  --timeout passed before the execution ended (it goes on running)";

/// `gennaker pipeline run`
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Application name.
    pub app: String,
    /// Pipeline name.
    pub name: String,
    /// A parameter value as KEY=VALUE; repeat for more. Declared parameters left out
    /// get their defaults.
    #[arg(short = 'p', long = "parameter", value_name = "KEY=VALUE")]
    pub parameters: Vec<String>,
    /// Refuse to start a second execution with this id (safe retries from CI).
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// Follow the execution live until it ends, and exit with its outcome.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// With --watch: stop waiting after this many seconds (the execution goes on).
    #[arg(long, value_name = "SECONDS", requires = "watch")]
    pub timeout: Option<u64>,
}

/// `gennaker execution …`
///
/// A STAGE is named by its id, its refId (top-level stages) or its name.
#[derive(clap::Subcommand, Debug)]
pub enum ExecutionCommand {
    /// List executions, newest first (of every application you may read, unless -a).
    List {
        /// Only this application's executions.
        #[arg(short = 'a', long)]
        application: Option<String>,
        /// Only executions of the pipeline with this name.
        #[arg(short = 'p', long)]
        pipeline: Option<String>,
        /// Only these statuses (e.g. RUNNING, any case); repeat or separate with commas.
        #[arg(long, value_delimiter = ',', value_parser = StatusParser)]
        status: Vec<ExecutionStatus>,
        /// At most this many [default: 25].
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Show an execution: its status and its stage tree, with any errors.
    Get {
        /// Execution id.
        id: String,
    },
    /// Follow an execution live until it ends: the stage tree with status, elapsed
    /// time and current task. Exits with the execution's outcome.
    #[command(after_help = EXIT_CODES_HELP)]
    Watch {
        /// Execution id.
        id: String,
        /// Stop waiting after this many seconds (the execution goes on).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Cancel an execution: running stages stop and run their cancellation routines.
    Cancel {
        /// Execution id.
        id: String,
        /// Why (kept on the execution).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Pause a running execution.
    Pause {
        /// Execution id.
        id: String,
    },
    /// Resume a paused execution.
    Resume {
        /// Execution id.
        id: String,
    },
    /// Restart a finished top-level stage and everything after it.
    Restart {
        /// Execution id.
        id: String,
        /// The stage: id, refId or name.
        stage: String,
    },
    /// Skip a running stage (a wait stage just ends its wait).
    Skip {
        /// Execution id.
        id: String,
        /// The stage: id, refId or name.
        stage: String,
    },
    /// Judge a manual judgment stage that is waiting: --continue or --stop.
    Judge {
        /// Execution id.
        id: String,
        /// The stage: id, refId or name.
        stage: String,
        /// Let the pipeline go on.
        #[arg(
            long = "continue",
            conflicts_with = "stop",
            required_unless_present = "stop"
        )]
        proceed: bool,
        /// Stop the pipeline here (the stage fails).
        #[arg(long)]
        stop: bool,
        /// The chosen input, when the stage offers judgment inputs.
        #[arg(long)]
        input: Option<String>,
    },
    /// Evaluate a pipeline expression against an execution, as a stage sees it.
    Evaluate {
        /// Execution id.
        id: String,
        /// An expression (trigger.user) or a template ('deploy ${trigger.user}').
        expression: String,
        /// Evaluate as this stage sees it (id, refId or name) [default: the stage that
        /// started last].
        #[arg(long)]
        stage: Option<String>,
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
    /// Set a user's password for the web UI's sign-in (admins only). The password is
    /// read from standard input (its first line), never from the command line, so it
    /// stays out of shell history and process lists: `gennaker user set-password rita
    /// < file`.
    SetPassword {
        /// User name.
        name: String,
        /// Remove the password instead: the user signs in with an API token only.
        #[arg(long)]
        remove: bool,
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

/// `gennaker cluster …`
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// List an application's clusters with their server groups, instances and health.
    List {
        /// Application name.
        app: String,
        /// The cloud provider to ask: `local` unless given (`kubernetes`: the server's
        /// Kubernetes accounts).
        #[arg(long)]
        cloud_provider: Option<String>,
    },
}

/// `gennaker loadbalancer …`
#[derive(clap::Subcommand, Debug)]
pub enum LoadBalancerCommand {
    /// List an application's load balancers.
    List {
        /// Application name.
        app: String,
        /// The cloud provider to ask: `local` unless given (`kubernetes`: the server's
        /// Kubernetes accounts).
        #[arg(long)]
        cloud_provider: Option<String>,
    },
}

/// Which server group an operation is about.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerGroupTarget {
    /// Application name.
    pub app: String,
    /// Server group name (`app-stack-v003`).
    pub name: String,
    /// Follow the operation to its end; exit with its outcome.
    #[arg(long)]
    pub watch: bool,
    /// The server group's cloud provider: `local` unless given (`kubernetes`).
    #[arg(long)]
    pub cloud_provider: Option<String>,
    /// The server group's account: `local` unless given (a Kubernetes account's name).
    #[arg(long)]
    pub account: Option<String>,
}

/// `gennaker servergroup …`
#[derive(clap::Subcommand, Debug)]
pub enum ServerGroupCommand {
    /// Show a server group: capacity, traffic, instances and their health.
    Get {
        /// Application name.
        app: String,
        /// Server group name.
        name: String,
        /// The cloud provider to ask: `local` unless given (`kubernetes`: the server's
        /// Kubernetes accounts).
        #[arg(long)]
        cloud_provider: Option<String>,
    },
    /// Set how many instances run.
    Resize {
        /// The server group.
        #[command(flatten)]
        target: ServerGroupTarget,
        /// Desired instances.
        #[arg(long)]
        desired: u32,
        /// Fewest instances [default: desired].
        #[arg(long)]
        min: Option<u32>,
        /// Most instances [default: desired].
        #[arg(long)]
        max: Option<u32>,
    },
    /// Put the server group's instances into its load balancers.
    Enable(ServerGroupTarget),
    /// Take the server group out of its load balancers (requests in flight finish).
    Disable(ServerGroupTarget),
    /// Disable the server group, stop its instances and delete it.
    Destroy(ServerGroupTarget),
    /// Return traffic to the cluster's previous server group, then disable this one.
    Rollback(ServerGroupTarget),
}

/// `gennaker canary config …`: Kayenta canary configs stored on the server.
#[derive(clap::Subcommand, Debug)]
pub enum CanaryConfigCommand {
    /// List the canary configs you may read.
    List {
        /// Only the configs belonging to this application.
        #[arg(long)]
        application: Option<String>,
    },
    /// Show a canary config (`-o json` or `-o yaml` prints the document to edit and save).
    Get {
        /// The config's id or name.
        config: String,
    },
    /// Save a canary config from a JSON or YAML file (Kayenta's format): created, or
    /// stored as a new revision of the config with its id (or, without an id, its
    /// name). Prints the id.
    Save {
        /// Canary config document (JSON or YAML).
        file: PathBuf,
    },
    /// Delete a canary config and its history.
    Delete {
        /// The config's id or name.
        config: String,
    },
}

/// `gennaker trigger …`
#[derive(clap::Subcommand, Debug)]
pub enum TriggerCommand {
    /// Show an application's trigger log: each event that concerned its triggers, which
    /// fired (with the execution) and why the others did not.
    Log {
        /// Application name.
        app: String,
        /// At most this many entries, newest first.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}
