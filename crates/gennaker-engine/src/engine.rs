//! The engine: its workers, and the operations the API offers on executions.

use std::sync::Arc;
use std::time::Duration;

use gennaker_store::{
    CommitOutcome, ExecutionQuery, ExecutionStore, ExecutionWrite, MAX_NOTICE_BYTES, NewMessage,
    Notification, QueueListener, StepCommit, Store,
};
use serde_json::{Map, Value};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::build::{Requester, RunRequest, orchestration_execution, pipeline_execution};
use crate::clock::Clock;
use crate::error::EngineError;
use crate::events::{ExecutionEvent, Notice, notices};
use crate::expressions::ExpressionSupport;
use crate::message::{Message, PIPELINE_PARTITION_PREFIX};
use crate::stage::StageRegistry;
use crate::task::Services;
use crate::worker::{self, execution_row};
use gennaker_core::Pipeline;
use gennaker_core::execution::{Execution, ExecutionStatus};
use gennaker_core::redact::redact_value;
use gennaker_outbound::OutboundPolicy;

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Concurrent workers (each handles one execution's step at a time; tasks that
    /// wait on the network hold one).
    pub workers: usize,
    /// How long a worker holds messages before another server may take them over;
    /// extended while the worker is busy.
    pub lease: Duration,
    /// Whether this server is the database's only user (SQLite): leases left by a
    /// previous process are released at start instead of waiting for them to expire.
    pub single_server: bool,
    /// Messages one step may handle before the rest are queued.
    pub max_messages_per_step: usize,
    /// Longest idle wait before a worker looks at the queue again (a safety net
    /// behind in-process and PostgreSQL notifications).
    pub idle_recheck: Duration,
    /// Which hosts webhooks (their status and cancel URLs too) may reach, how much of
    /// a response is kept and how long a request may take.
    pub outbound: OutboundPolicy,
    /// The most stages one execution may hold, synthetic stages included: a stage
    /// that would plan more fails instead. Every step reads and writes the whole
    /// execution, so this bounds the cost of one step.
    pub max_execution_stages: usize,
    /// Prepares the notifications status changes cause, written with each step;
    /// `None` sends none.
    pub notifications: Option<Arc<dyn crate::events::NotificationPlanner>>,
}

/// [`EngineConfig::max_execution_stages`] by default: room for a pipeline of the most
/// stages allowed ([`gennaker_core::MAX_PIPELINE_STAGES`]) whose stages each plan up to
/// nine synthetic ones (a red/black deploy with its rollback plans a handful).
pub const MAX_EXECUTION_STAGES: usize = 10 * gennaker_core::MAX_PIPELINE_STAGES;

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: 8,
            lease: Duration::from_secs(30),
            single_server: true,
            max_messages_per_step: 512,
            idle_recheck: Duration::from_secs(2),
            outbound: OutboundPolicy::default(),
            max_execution_stages: MAX_EXECUTION_STAGES,
            notifications: None,
        }
    }
}

/// What the workers share.
pub(crate) struct EngineInner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) executions: Arc<dyn ExecutionStore>,
    pub(crate) registry: StageRegistry,
    pub(crate) services: Services,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: EngineConfig,
    pub(crate) notify: Notify,
    pub(crate) events: broadcast::Sender<ExecutionEvent>,
    /// This server's lease owner id.
    pub(crate) owner: String,
}

impl EngineInner {
    /// A committed step's `events` as notices for the other servers sharing the
    /// database; none when this server is the database's only user.
    pub(crate) fn notices(&self, events: &[ExecutionEvent]) -> Vec<String> {
        if self.config.single_server {
            return Vec::new();
        }
        notices(&self.owner, events, MAX_NOTICE_BYTES)
    }

    /// Publishes another server's events here, as if this server's workers had made
    /// them; this server's own notices come back too and are dropped (their events
    /// were published when the step committed).
    fn publish_notice(&self, text: &str) {
        let Some(notice) = Notice::parse(text) else {
            warn!("engine: ignoring a notification that is not a Gennaker event notice");
            return;
        };
        if notice.server == self.owner {
            return;
        }
        for event in notice.events {
            // Nobody listening is fine.
            let _ = self.events.send(event);
        }
    }
}

impl EngineInner {
    /// The notifications a step's `events` cause, for the execution it writes at
    /// `version`.
    pub(crate) fn plan_notifications(
        &self,
        execution: &Execution,
        version: i64,
        events: &[ExecutionEvent],
    ) -> Vec<gennaker_store::NewNotification> {
        match &self.config.notifications {
            Some(planner) if !events.is_empty() => {
                planner.plan(execution, version, events, &self.services.expressions)
            }
            _ => Vec::new(),
        }
    }

    /// The queued form of `message`, for the execution started by `user` (claims take
    /// turns across users; the engine's per-pipeline partitions belong to none).
    pub(crate) fn new_message(
        &self,
        message: &Message,
        deliver_at: i64,
        user: &str,
    ) -> Result<NewMessage, EngineError> {
        let partition = message.partition();
        let tenant = (!partition.starts_with(PIPELINE_PARTITION_PREFIX)).then(|| user.to_owned());
        Ok(NewMessage {
            partition,
            payload: serde_json::to_string(message)?,
            deliver_at,
            replace_key: message.replace_key(),
            tenant,
        })
    }
}

/// A judgment on a `manualJudgment` stage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Judgment {
    /// `continue` or `stop`.
    pub judgment_status: String,
    /// One of the stage's `judgmentInputs`, if it has any.
    #[serde(default)]
    pub judgment_input: Option<String>,
}

/// Who performs an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user.
    pub user: String,
    /// Their roles.
    pub roles: Vec<String>,
    /// Whether they are an administrator.
    pub admin: bool,
}

/// The orchestration engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("owner", &self.inner.owner)
            .field("registry", &self.inner.registry)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine on these stores; call [`start`](Self::start) to run its workers.
    /// Fails only when the outbound HTTP client cannot be built (no TLS backend).
    pub fn new(
        store: Arc<dyn Store>,
        executions: Arc<dyn ExecutionStore>,
        registry: StageRegistry,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        let services = Services {
            store: store.clone(),
            executions: executions.clone(),
            http: config.outbound.client()?,
            outbound: config.outbound.clone(),
            clock: clock.clone(),
            expressions: ExpressionSupport::default(),
        };
        let (events, _) = broadcast::channel(4096);
        Ok(Self {
            inner: Arc::new(EngineInner {
                store,
                executions,
                registry,
                services,
                clock,
                config,
                notify: Notify::new(),
                events,
                owner: format!("gennaker-{}", uuid::Uuid::new_v4()),
            }),
        })
    }

    /// Runs the workers (and a PostgreSQL notification listener, if given: it wakes idle
    /// workers when any server queues work, and publishes the other servers' status
    /// events to this server's [`subscribe`](Self::subscribe)rs) until `shutdown`; the returned
    /// set ends when they have all stopped.
    pub async fn start(
        &self,
        listener: Option<QueueListener>,
        shutdown: CancellationToken,
    ) -> Result<JoinSet<()>, EngineError> {
        if self.inner.config.single_server {
            let released = self.inner.executions.release_all_leases().await?;
            if released > 0 {
                info!(
                    released,
                    "engine: resumed messages a previous run was handling"
                );
            }
        }
        let mut set = JoinSet::new();
        for _ in 0..self.inner.config.workers.max(1) {
            set.spawn(worker::run(self.inner.clone(), shutdown.clone()));
        }
        if let Some(mut listener) = listener {
            let inner = self.inner.clone();
            let shutdown = shutdown.clone();
            set.spawn(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        received = listener.recv() => match received {
                            Ok(Notification::Queue) => inner.notify.notify_one(),
                            Ok(Notification::Notice(text)) => inner.publish_notice(&text),
                            Ok(Notification::Closed) => return,
                            Err(e) => {
                                // The next recv() tries to reconnect; what was sent
                                // meanwhile is lost, which the periodic re-checks cover.
                                warn!(error = %e, "engine: notifications lost; workers re-check the queue periodically, event streams re-read their executions");
                                tokio::select! {
                                    () = shutdown.cancelled() => return,
                                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                                }
                            }
                        }
                    }
                }
            });
        }
        Ok(set)
    }

    /// This server's id among the servers sharing the database: the owner of its
    /// queue leases, the origin of its event notices and the `server` of the task
    /// records its workers write. New for every process.
    pub fn server_id(&self) -> &str {
        &self.inner.owner
    }

    /// The stage registry.
    pub fn registry(&self) -> &StageRegistry {
        &self.inner.registry
    }

    /// Now (epoch ms), by the engine's clock.
    pub fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    /// Expression evaluation as stages see it.
    pub fn expressions(&self) -> &ExpressionSupport {
        &self.inner.services.expressions
    }

    /// Status changes, live: those of this server's workers and, on PostgreSQL, those
    /// of every other server sharing the database (each once). A slow receiver misses
    /// events (and should re-read the execution); nothing else waits for it.
    pub fn subscribe(&self) -> broadcast::Receiver<ExecutionEvent> {
        self.inner.events.subscribe()
    }

    /// Creates and starts an execution of a stored pipeline config; returns it with its
    /// secrets redacted.
    pub async fn run_pipeline(
        &self,
        application: &str,
        config: &Pipeline,
        request: &RunRequest,
        requester: &Requester,
    ) -> Result<Execution, EngineError> {
        let execution = pipeline_execution(
            application,
            config,
            request,
            requester,
            self.inner.clock.now(),
        )?;
        self.submit(execution).await
    }

    /// Creates and starts an ad-hoc execution of `job`'s stages, one after the other;
    /// returns it with its secrets redacted.
    pub async fn run_orchestration(
        &self,
        application: &str,
        description: &str,
        job: &[Value],
        requester: &Requester,
    ) -> Result<Execution, EngineError> {
        let execution = orchestration_execution(
            application,
            description,
            job,
            requester,
            self.inner.clock.now(),
        )?;
        self.submit(execution).await
    }

    /// Stores a NOT_STARTED execution and starts it; returns it with its secrets
    /// redacted. One with more stages than a pipeline may have is refused (a config
    /// saved before the limit, or given inline).
    pub async fn submit(&self, execution: Execution) -> Result<Execution, EngineError> {
        let max = self.inner.registry.catalog().max_stages();
        if execution.stages.len() > max {
            return Err(EngineError::Invalid(format!(
                "'{}' has {} stages; a pipeline may have at most {max} (at $.stages): split it into smaller pipelines and chain them with `pipeline` stages",
                execution.name,
                execution.stages.len()
            )));
        }
        let start = Message::StartExecution {
            execution: execution.id.clone(),
        };
        let step = StepCommit {
            executions: vec![ExecutionWrite {
                row: execution_row(&execution, 1)?,
                expected_version: None,
            }],
            enqueue: vec![self.inner.new_message(
                &start,
                self.inner.clock.now(),
                &execution.authentication.user,
            )?],
            ..StepCommit::default()
        };
        match self.inner.executions.commit_step(&step).await? {
            CommitOutcome::Committed => {
                self.inner.notify.notify_one();
                redacted(&execution)
            }
            CommitOutcome::DuplicateCorrelation(existing) => Err(EngineError::Conflict(format!(
                "execution {existing} was already started with this correlation id; nothing new was started"
            ))),
            other => Err(EngineError::Conflict(format!(
                "execution could not be stored: {other:?}"
            ))),
        }
    }

    /// Reads an execution as users may see it: its secrets redacted (see
    /// [`gennaker_core::redact`]). Only the workers see them.
    pub async fn execution(&self, id: &str) -> Result<Option<Execution>, EngineError> {
        match self.inner.executions.get_execution(id).await? {
            Some(row) => Ok(Some(redacted_document(&row.document)?)),
            None => Ok(None),
        }
    }

    /// Lists executions, newest first, their secrets redacted.
    pub async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>, EngineError> {
        self.inner
            .executions
            .list_executions(query)
            .await?
            .iter()
            .map(|row| redacted_document(&row.document))
            .collect()
    }

    async fn require(&self, id: &str) -> Result<Execution, EngineError> {
        self.execution(id)
            .await?
            .ok_or_else(|| EngineError::NotFound {
                kind: "execution",
                id: id.to_owned(),
            })
    }

    /// Queues an operator's message for `execution`.
    async fn enqueue(&self, execution: &Execution, message: Message) -> Result<(), EngineError> {
        let step = StepCommit {
            enqueue: vec![self.inner.new_message(
                &message,
                self.inner.clock.now(),
                &execution.authentication.user,
            )?],
            ..StepCommit::default()
        };
        self.inner.executions.commit_step(&step).await?;
        self.inner.notify.notify_one();
        Ok(())
    }

    /// Cancels an execution: running stages stop and run their cancellation routines.
    pub async fn cancel(
        &self,
        id: &str,
        user: &str,
        reason: Option<String>,
    ) -> Result<(), EngineError> {
        let execution = self.require(id).await?;
        if execution.status.is_complete() {
            return Err(EngineError::Conflict(format!(
                "execution {id} already ended ({}); there is nothing to cancel",
                execution.status
            )));
        }
        self.enqueue(
            &execution,
            Message::CancelExecution {
                execution: id.to_owned(),
                user: user.to_owned(),
                reason,
            },
        )
        .await
    }

    /// Pauses a running execution.
    pub async fn pause(&self, id: &str, user: &str) -> Result<(), EngineError> {
        let message = Message::PauseExecution {
            execution: id.to_owned(),
            user: user.to_owned(),
        };
        self.enqueue_when(id, ExecutionStatus::Running, "paused", message)
            .await
    }

    /// Resumes a paused execution.
    pub async fn resume(&self, id: &str, user: &str) -> Result<(), EngineError> {
        let message = Message::ResumeExecution {
            execution: id.to_owned(),
            user: user.to_owned(),
        };
        self.enqueue_when(id, ExecutionStatus::Paused, "resumed", message)
            .await
    }

    /// Sends `message` if the execution is in `status` (the handler checks again: the
    /// status may change before it runs).
    async fn enqueue_when(
        &self,
        id: &str,
        status: ExecutionStatus,
        done: &str,
        message: Message,
    ) -> Result<(), EngineError> {
        let execution = self.require(id).await?;
        if execution.status != status {
            return Err(EngineError::Conflict(format!(
                "only a {status} execution can be {done}; {id} is {}",
                execution.status
            )));
        }
        self.enqueue(&execution, message).await
    }

    /// Restarts a finished top-level stage and everything after it.
    pub async fn restart_stage(
        &self,
        id: &str,
        stage_id: &str,
        user: &str,
    ) -> Result<(), EngineError> {
        let execution = self.require(id).await?;
        let stage = execution
            .stages
            .iter()
            .find(|s| s.id == stage_id || s.ref_id == stage_id)
            .ok_or_else(|| EngineError::NotFound {
                kind: "stage",
                id: stage_id.to_owned(),
            })?;
        if !stage.is_top_level() {
            return Err(EngineError::Conflict(format!(
                "stage '{}' is a synthetic stage; restart its parent stage instead",
                stage.name
            )));
        }
        if !stage.status.is_complete() {
            return Err(EngineError::Conflict(format!(
                "stage '{}' is {}; only a finished stage can be restarted",
                stage.name, stage.status
            )));
        }
        if matches!(execution.status, ExecutionStatus::Paused) {
            return Err(EngineError::Conflict(
                "the execution is paused; resume it before restarting a stage".into(),
            ));
        }
        self.enqueue(
            &execution,
            Message::RestartStage {
                execution: id.to_owned(),
                stage: stage.id.clone(),
                user: user.to_owned(),
            },
        )
        .await
    }

    /// Skips a running stage (a `wait` just ends its wait, as Spinnaker's
    /// `skipRemainingWait` does; other stages become SKIPPED and stop what they run).
    pub async fn skip_stage(
        &self,
        id: &str,
        stage_id: &str,
        user: &str,
    ) -> Result<(), EngineError> {
        let execution = self.require(id).await?;
        let stage = find_stage(&execution, stage_id)?;
        if stage.status != ExecutionStatus::Running {
            return Err(EngineError::Conflict(format!(
                "stage '{}' is {}; only a RUNNING stage can be skipped",
                stage.name, stage.status
            )));
        }
        let message = if stage.stage_type == "wait" {
            let mut context = Map::new();
            context.insert("skipRemainingWait".into(), Value::Bool(true));
            Message::PatchStage {
                execution: id.to_owned(),
                stage: stage.id.clone(),
                user: user.to_owned(),
                context,
            }
        } else {
            Message::SkipStage {
                execution: id.to_owned(),
                stage: stage.id.clone(),
                user: user.to_owned(),
            }
        };
        self.enqueue(&execution, message).await
    }

    /// Records a judgment on a waiting `manualJudgment` stage.
    pub async fn judge(
        &self,
        id: &str,
        stage_id: &str,
        actor: &Actor,
        judgment: &Judgment,
    ) -> Result<(), EngineError> {
        let execution = self.require(id).await?;
        let stage = find_stage(&execution, stage_id)?;
        if stage.stage_type != "manualJudgment" {
            return Err(EngineError::Conflict(format!(
                "stage '{}' is a {} stage; only manualJudgment stages take a judgment",
                stage.name, stage.stage_type
            )));
        }
        if stage.status != ExecutionStatus::Running {
            return Err(EngineError::Conflict(format!(
                "stage '{}' is {}, not waiting for a judgment",
                stage.name, stage.status
            )));
        }
        let status = judgment.judgment_status.to_lowercase();
        if status != "continue" && status != "stop" {
            return Err(EngineError::Invalid(format!(
                "judgmentStatus must be 'continue' or 'stop', not '{}'",
                judgment.judgment_status
            )));
        }
        let roles: Vec<String> = stage
            .context
            .get("selectedStageRoles")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        if !roles.is_empty()
            && !actor.admin
            && !actor
                .roles
                .iter()
                .any(|r| roles.contains(&r.to_lowercase()))
        {
            return Err(EngineError::Forbidden(format!(
                "only users with one of the roles {roles:?} may judge stage '{}'",
                stage.name
            )));
        }
        let inputs: Vec<String> = stage
            .context
            .get("judgmentInputs")
            .and_then(Value::as_array)
            .map(|i| {
                i.iter()
                    .filter_map(|o| o.get("value").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(input) = &judgment.judgment_input
            && !inputs.is_empty()
            && !inputs.contains(input)
        {
            return Err(EngineError::Invalid(format!(
                "judgmentInput must be one of {inputs:?}, not '{input}'"
            )));
        }
        let mut context = Map::new();
        context.insert("judgmentStatus".into(), Value::String(status));
        if let Some(input) = &judgment.judgment_input {
            context.insert("judgmentInput".into(), Value::String(input.clone()));
        }
        context.insert("judgedBy".into(), Value::String(actor.user.clone()));
        self.enqueue(
            &execution,
            Message::PatchStage {
                execution: id.to_owned(),
                stage: stage.id.clone(),
                user: actor.user.clone(),
                context,
            },
        )
        .await
    }

    /// Evaluates an expression against an execution, as the given stage (or the last
    /// stage that ran) sees it, its secrets redacted: the API cannot read a secret
    /// through an expression.
    pub async fn evaluate(
        &self,
        id: &str,
        expression: &str,
        stage_id: Option<&str>,
    ) -> Result<Result<gennaker_expr::Evaluation, gennaker_expr::ExprError>, EngineError> {
        let execution = self.require(id).await?;
        let stage = match stage_id {
            Some(stage_id) => find_stage(&execution, stage_id)?.clone(),
            None => execution
                .stages
                .iter()
                .filter(|s| s.start_time.is_some())
                .max_by_key(|s| s.start_time)
                .or_else(|| execution.stages.first())
                .cloned()
                .ok_or_else(|| {
                    EngineError::Conflict("the execution has no stages to evaluate in".into())
                })?,
        };
        Ok(self
            .inner
            .services
            .expressions
            .evaluate_expression(&execution, &stage, expression))
    }

    /// Waits until the execution ends, or `max_wait` passes; returns it as it is then.
    pub async fn wait_for_end(
        &self,
        id: &str,
        max_wait: Duration,
    ) -> Result<Execution, EngineError> {
        let mut events = self.subscribe();
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let execution = self.require(id).await?;
            if execution.status.is_complete() {
                return Ok(execution);
            }
            let wake = async {
                loop {
                    match events.recv().await {
                        Ok(event) if event.execution_id == id && event.stage_id.is_none() => {
                            return;
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await;
                        }
                    }
                }
            };
            tokio::select! {
                () = wake => {}
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                () = tokio::time::sleep_until(deadline) => return self.require(id).await,
            }
        }
    }
}

/// An execution as users may see it, from its stored document.
fn redacted_document(document: &str) -> Result<Execution, EngineError> {
    let mut value: Value = serde_json::from_str(document)?;
    redact_value(&mut value);
    Ok(serde_json::from_value(value)?)
}

/// `execution` as users may see it.
fn redacted(execution: &Execution) -> Result<Execution, EngineError> {
    let mut value = serde_json::to_value(execution)?;
    redact_value(&mut value);
    Ok(serde_json::from_value(value)?)
}

fn find_stage<'e>(
    execution: &'e Execution,
    stage_id: &str,
) -> Result<&'e gennaker_core::execution::StageExecution, EngineError> {
    execution
        .stages
        .iter()
        .find(|s| s.id == stage_id || (s.is_top_level() && s.ref_id == stage_id))
        .ok_or_else(|| EngineError::NotFound {
            kind: "stage",
            id: stage_id.to_owned(),
        })
}
