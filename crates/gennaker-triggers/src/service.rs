//! [`Triggers`]: receives events, decides which pipelines fire with which trigger
//! object, starts them through the engine exactly as `POST …/executions` does
//! ([`Engine::run_pipeline`]: the config frozen into a new execution written with its
//! start message in one transaction), and logs what happened per application.
//!
//! Exactly once: every execution a trigger starts carries the correlation id
//! `trigger:<event key>:<pipeline id>` (cron: `trigger:cron:<pipeline id>:<tick>`),
//! unique in the store and written in the same transaction as the execution, so a
//! redelivered event, a re-handled one after a crash, or the same event handled by two
//! servers on one database starts each pipeline once. An event is recorded in the
//! store's inbox before anything fires; one whose server died is claimed again after
//! [`TriggerSettings::event_claim`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gennaker_core::lenient::truthy;
use gennaker_core::{Access, Pipeline, check_application_access};
use gennaker_engine::{Clock, Engine, EngineError, Requester, RunRequest};
use gennaker_store::{
    ApplicationRecord, ExecutionQuery, PipelineRecord, Store, StoreError, TriggerEventRecord,
    TriggerLogEntry, TriggerStore,
};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::cron::Schedule;
use crate::docker::RegistryClient;
use crate::event::Event;
use crate::matching::{Firing, Verdict, evaluate, triggers_of};
use crate::ratelimit::RateLimiter;
use crate::settings::TriggerSettings;

/// Executions that ended this long ago at most are looked at for pipeline triggers
/// when their end event was missed (a restart).
const PIPELINE_SWEEP_WINDOW_MS: i64 = 15 * 60 * 1000;
/// The least time between the starts of two cron passes (each reads every pipeline).
const CRON_MIN_GAP_MS: i64 = 1000;
/// The most time between two cron passes: how soon a new or changed cron trigger is seen.
const CRON_MAX_GAP_MS: i64 = 5000;
/// Handled events are kept this long (their firings stay de-duplicated for ever by the
/// executions' correlation ids).
const EVENT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// What can go wrong handling triggers.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The request's body is not what the endpoint takes; nothing was started.
    #[error("{0}")]
    BadPayload(String),
    /// The trigger asked for does not exist or does not fire on the payload given.
    #[error("{0}")]
    NotFired(String),
    /// The store failed; the event stays pending and is handled again.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What the sender of an event is told (Spinnaker's answer; which pipelines fired is
/// not said to unauthenticated senders, it is in the applications' logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The event's id.
    pub event_id: String,
    /// Whether the event was received before (nothing new happened).
    pub duplicate: bool,
}

/// Receives events and fires pipelines; cheap to clone.
#[derive(Debug, Clone)]
pub struct Triggers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    triggers: Arc<dyn TriggerStore>,
    engine: Engine,
    clock: Arc<dyn Clock>,
    settings: TriggerSettings,
    limiter: RateLimiter,
    registry: RegistryClient,
    /// The latest cron tick fired (or found fired) per pipeline: spares the store a
    /// refused insert on every pass.
    cron_fired: Mutex<HashMap<String, i64>>,
}

/// One pipeline of one application, with the application's record.
struct Candidate {
    application: ApplicationRecord,
    pipeline: PipelineRecord,
}

impl Triggers {
    /// Triggers on `store` (its [`TriggerStore`] side is `triggers`), starting
    /// executions on `engine`, on `clock`'s time.
    pub fn new(
        store: Arc<dyn Store>,
        triggers: Arc<dyn TriggerStore>,
        engine: Engine,
        clock: Arc<dyn Clock>,
        settings: TriggerSettings,
    ) -> Result<Self, TriggerError> {
        let registry = RegistryClient::new().map_err(TriggerError::BadPayload)?;
        Ok(Self {
            inner: Arc::new(Inner {
                limiter: RateLimiter::new(settings.webhooks_per_minute),
                store,
                triggers,
                engine,
                clock,
                settings,
                registry,
                cron_fired: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &TriggerSettings {
        &self.inner.settings
    }

    /// Takes a token of `source`'s rate limit; `false`: answer 429.
    pub fn allow(&self, source: &str) -> bool {
        self.inner.limiter.allow(source)
    }

    /// Roughly when a limited source may send again.
    pub fn retry_after(&self) -> Duration {
        self.inner.limiter.retry_after()
    }

    /// Receives an event: checks that a webhook or git body is a JSON object (else
    /// [`TriggerError::BadPayload`], nothing recorded), records it once, and fires
    /// every pipeline whose trigger matches.
    pub async fn receive(&self, event: Event) -> Result<Receipt, TriggerError> {
        if let Event::Webhook { body, .. } | Event::Git { body, .. } = &event {
            match serde_json::from_str::<Value>(body) {
                Ok(Value::Object(_)) => {}
                Ok(_) => {
                    return Err(TriggerError::BadPayload(
                        "the body must be a JSON object".into(),
                    ));
                }
                Err(err) => {
                    return Err(TriggerError::BadPayload(format!(
                        "the body is not valid JSON: {err}"
                    )));
                }
            }
        }
        let now = self.inner.clock.now();
        let record = TriggerEventRecord {
            event_key: event.key(),
            id: gennaker_engine::new_id(),
            kind: event.kind().to_owned(),
            received_at: now,
            document: serde_json::to_value(&event).map_err(EngineError::from)?,
            done: false,
        };
        let claim = now + millis(self.inner.settings.event_claim);
        match self
            .inner
            .triggers
            .record_trigger_event(&record, claim)
            .await?
        {
            None => {
                self.handle(&record).await?;
                Ok(Receipt {
                    event_id: record.id,
                    duplicate: false,
                })
            }
            Some(existing) => {
                // Received before: if its handler has not finished (it may have died,
                // or be another server), handling again is harmless and completes it.
                if !existing.done {
                    self.handle(&existing).await?;
                }
                Ok(Receipt {
                    event_id: existing.id,
                    duplicate: true,
                })
            }
        }
    }

    /// Every application's pipelines.
    async fn candidates(&self) -> Result<Vec<Candidate>, TriggerError> {
        let mut all = Vec::new();
        for application in self.inner.store.list_applications().await? {
            for pipeline in self.inner.store.list_pipelines(&application.name).await? {
                all.push(Candidate {
                    application: application.clone(),
                    pipeline,
                });
            }
        }
        Ok(all)
    }

    /// Handles a recorded event: fires what matches, logs, marks it done.
    async fn handle(&self, record: &TriggerEventRecord) -> Result<(), TriggerError> {
        let event: Event =
            serde_json::from_value(record.document.clone()).map_err(EngineError::from)?;
        let payload = match &event {
            Event::Webhook { body, .. } | Event::Git { body, .. } => {
                serde_json::from_str(body).unwrap_or(Value::Null)
            }
            _ => Value::Null,
        };
        let mut logs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for candidate in self.candidates().await? {
            let mut fired = false;
            for (index, trigger) in triggers_of(&candidate.pipeline.config) {
                let verdict = evaluate(trigger, &event, &payload, &record.id);
                let entry = match verdict {
                    Verdict::NotAddressed => continue,
                    Verdict::Rejected(reason) => json!({"fired": false, "reason": reason}),
                    Verdict::Fire(_) if fired => {
                        json!({"fired": false, "reason": "another trigger of this pipeline fired on this event"})
                    }
                    Verdict::Fire(firing) => {
                        fired = true;
                        let correlation =
                            format!("trigger:{}:{}", record.event_key, candidate.pipeline.id);
                        self.start(&candidate, firing, correlation).await?
                    }
                };
                logs.entry(candidate.application.name.clone())
                    .or_default()
                    .push(with_pipeline(entry, &candidate, index));
            }
        }
        for (application, pipelines) in logs {
            let entry = json!({"eventId": record.id, "receivedAt": record.received_at,
                "event": event.summary(), "pipelines": pipelines});
            self.log(&application, &record.event_key, record.received_at, entry)
                .await?;
        }
        self.inner
            .triggers
            .finish_trigger_event(&record.event_key)
            .await?;
        Ok(())
    }

    async fn log(
        &self,
        application: &str,
        key: &str,
        at: i64,
        entry: Value,
    ) -> Result<(), TriggerError> {
        let entry = TriggerLogEntry {
            event_key: key.to_owned(),
            received_at: at,
            entry,
        };
        self.inner
            .triggers
            .append_trigger_log(application, &entry, self.inner.settings.log_keep)
            .await?;
        Ok(())
    }

    /// Starts `candidate` as the service identity, if it may EXECUTE the application;
    /// returns the log entry. A store failure is an error (the event is handled again).
    async fn start(
        &self,
        candidate: &Candidate,
        firing: Firing,
        correlation: String,
    ) -> Result<Value, TriggerError> {
        let name = &self.inner.settings.user;
        let Some(user) = self.inner.store.get_user(name).await? else {
            return Ok(json!({"fired": false, "reason": format!(
                "the trigger user '{name}' does not exist; create it (`gennaker user create {name}`) and give it a role with EXECUTE on application '{}'",
                candidate.application.name)}));
        };
        if let Err(denied) = check_application_access(
            &candidate.application.config,
            Access::Execute,
            user.admin,
            &user.roles,
        ) {
            return Ok(json!({"fired": false, "reason": format!(
                "the trigger user '{name}' may not EXECUTE application '{}' ({denied}); give it a role with EXECUTE there",
                candidate.application.name)}));
        }
        let requester = Requester {
            user: user.name.clone(),
            roles: user.roles.clone(),
            origin: "trigger".into(),
        };
        self.run(candidate, firing, Some(correlation), &requester)
            .await
    }

    async fn run(
        &self,
        candidate: &Candidate,
        firing: Firing,
        correlation: Option<String>,
        requester: &Requester,
    ) -> Result<Value, TriggerError> {
        let config = match Pipeline::from_value(candidate.pipeline.config.clone()) {
            Ok(config) => config,
            Err(err) => {
                return Ok(
                    json!({"fired": false, "reason": format!("the pipeline cannot run: {err}")}),
                );
            }
        };
        let request = RunRequest {
            parameters: firing.parameters,
            artifacts: firing.artifacts,
            correlation_id: correlation,
            trigger: firing.trigger,
        };
        match self
            .inner
            .engine
            .run_pipeline(&candidate.application.name, &config, &request, requester)
            .await
        {
            Ok(execution) => Ok(json!({"fired": true, "executionId": execution.id})),
            // The correlation id exists: this event already started this pipeline.
            Err(EngineError::Conflict(message)) => {
                Ok(json!({"fired": true, "duplicate": true, "reason": message}))
            }
            Err(EngineError::Build(err)) => Ok(json!({"fired": false, "reason": err.to_string()})),
            Err(EngineError::Invalid(message)) => Ok(json!({"fired": false, "reason": message})),
            Err(other) => Err(other.into()),
        }
    }

    /// An application's trigger log, newest first.
    pub async fn events(&self, application: &str, limit: i64) -> Result<Vec<Value>, TriggerError> {
        Ok(self
            .inner
            .triggers
            .trigger_log(application, limit)
            .await?
            .into_iter()
            .map(|entry| entry.entry)
            .collect())
    }

    /// Fires the pipeline's cron triggers whose latest tick (at or before now, and not
    /// before the pipeline was last saved) has not fired: after downtime only the
    /// latest missed tick fires, once. Returns the next tick of any cron trigger.
    pub async fn cron_pass(&self) -> Result<Option<i64>, TriggerError> {
        let now = self.inner.clock.now();
        let mut next: Option<i64> = None;
        for candidate in self.candidates().await? {
            for (index, trigger) in triggers_of(&candidate.pipeline.config) {
                if trigger.get("type").and_then(Value::as_str) != Some("cron")
                    || !truthy(trigger.get("enabled"))
                {
                    continue;
                }
                let expression = trigger
                    .get("cronExpression")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let zone = trigger.get("timeZone").and_then(Value::as_str);
                let schedule = match Schedule::parse(
                    expression,
                    zone,
                    &self.inner.settings.cron_time_zone,
                ) {
                    Ok(schedule) => schedule,
                    Err(reason) => {
                        // Logged once per revision: the key names it.
                        let key = format!(
                            "cron-invalid:{}:{}",
                            candidate.pipeline.id, candidate.pipeline.revision
                        );
                        let entry = json!({"eventId": key, "receivedAt": now, "event": {"type": "cron"},
                            "pipelines": [with_pipeline(json!({"fired": false, "reason": reason}), &candidate, index)]});
                        self.log(&candidate.application.name, &key, now, entry)
                            .await?;
                        continue;
                    }
                };
                if let Some(tick) = schedule.next_after(now) {
                    next = Some(next.map_or(tick, |n| n.min(tick)));
                }
                let Some(tick) = schedule.latest_at_or_before(now) else {
                    continue;
                };
                if tick < candidate.pipeline.updated_at {
                    continue;
                }
                let pipeline_id = candidate.pipeline.id.clone();
                if self.cron_seen(&pipeline_id) >= Some(tick) {
                    continue;
                }
                let key = format!("cron:{pipeline_id}:{tick}");
                let mut object = trigger.clone();
                object.remove("secret");
                object.insert("type".into(), json!("cron"));
                object.insert("scheduledTime".into(), json!(tick));
                object.insert("eventId".into(), json!(key));
                let firing = Firing {
                    trigger: object,
                    ..Firing::default()
                };
                let result = self
                    .start(&candidate, firing, format!("trigger:{key}"))
                    .await?;
                let entry = json!({"eventId": key, "receivedAt": tick,
                    "event": {"type": "cron", "cronExpression": expression, "scheduledTime": tick},
                    "pipelines": [with_pipeline(result, &candidate, index)]});
                self.log(&candidate.application.name, &key, tick, entry)
                    .await?;
                if let Ok(mut fired) = self.inner.cron_fired.lock() {
                    fired.insert(pipeline_id, tick);
                }
            }
        }
        Ok(next)
    }

    fn cron_seen(&self, pipeline_id: &str) -> Option<i64> {
        self.inner
            .cron_fired
            .lock()
            .ok()
            .and_then(|fired| fired.get(pipeline_id).copied())
    }

    /// Polls every registry repository a `docker` trigger names; a new tag, or a known
    /// tag at a new digest, is an event. The first poll of a repository only records.
    pub async fn docker_pass(&self) -> Result<(), TriggerError> {
        let mut wanted: BTreeMap<(String, String), ()> = BTreeMap::new();
        for candidate in self.candidates().await? {
            for (_, trigger) in triggers_of(&candidate.pipeline.config) {
                if trigger.get("type").and_then(Value::as_str) == Some("docker")
                    && truthy(trigger.get("enabled"))
                {
                    let field = |name: &str| {
                        trigger
                            .get(name)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    wanted.insert((field("account"), field("repository")), ());
                }
            }
        }
        for (account_name, repository) in wanted.into_keys() {
            let Some(account) = self
                .inner
                .settings
                .docker_accounts
                .iter()
                .find(|a| a.name == account_name)
            else {
                tracing::warn!(account = %account_name, %repository, "a docker trigger names an account that is not configured; add it under [[docker.accounts]]");
                continue;
            };
            let tags = match self.inner.registry.tags(account, &repository).await {
                Ok(tags) => tags,
                Err(err) => {
                    tracing::warn!(error = %err, "docker registry poll failed; retried at the next poll");
                    continue;
                }
            };
            let now = self.inner.clock.now();
            let Some(seen) = self
                .inner
                .triggers
                .docker_tags(&account.name, &repository)
                .await?
            else {
                self.inner
                    .triggers
                    .record_docker_tags(&account.name, &repository, &tags, now)
                    .await?;
                continue;
            };
            let seen: HashMap<String, String> = seen.into_iter().collect();
            let new: Vec<(String, String)> = tags
                .into_iter()
                .filter(|(tag, digest)| seen.get(tag) != Some(digest))
                .collect();
            if new.len() > self.inner.settings.docker_max_new_tags {
                tracing::warn!(account = %account.name, %repository, new = new.len(),
                    "more new tags than [triggers] docker_max_new_tags in one poll; recorded without firing");
                self.inner
                    .triggers
                    .record_docker_tags(&account.name, &repository, &new, now)
                    .await?;
                continue;
            }
            for (tag, digest) in new {
                // Recorded as an event first: a crash before the tag is marked seen
                // finds it new again, and the event's key makes that harmless.
                self.receive(Event::Docker {
                    account: account.name.clone(),
                    registry: account.registry(),
                    repository: repository.clone(),
                    tag: tag.clone(),
                    digest: digest.clone(),
                })
                .await?;
                self.inner
                    .triggers
                    .record_docker_tags(&account.name, &repository, &[(tag, digest)], now)
                    .await?;
            }
        }
        Ok(())
    }

    /// Fires pipeline triggers for executions that ended lately (missed end events,
    /// a restart), and handles events whose handler died. Each is harmless to repeat.
    pub async fn recover(&self) -> Result<(), TriggerError> {
        let now = self.inner.clock.now();
        let claim = now + millis(self.inner.settings.event_claim);
        for record in self
            .inner
            .triggers
            .claim_trigger_events(now, claim, 100)
            .await?
        {
            self.handle(&record).await?;
        }
        let ended = self
            .inner
            .engine
            .executions(&ExecutionQuery {
                statuses: gennaker_engine::ALL_STATUSES
                    .iter()
                    .copied()
                    .filter(|s| s.is_complete())
                    .collect(),
                limit: 200,
                ..ExecutionQuery::default()
            })
            .await?;
        for execution in ended {
            if execution
                .end_time
                .is_some_and(|end| end >= now - PIPELINE_SWEEP_WINDOW_MS)
            {
                self.execution_ended(&execution).await?;
            }
        }
        self.inner
            .triggers
            .prune_trigger_events(now - EVENT_RETENTION_MS)
            .await?;
        Ok(())
    }

    async fn execution_ended(
        &self,
        execution: &gennaker_engine::Execution,
    ) -> Result<(), TriggerError> {
        let Some(config_id) = execution.pipeline_config_id.clone() else {
            return Ok(());
        };
        self.receive(Event::Pipeline {
            execution_id: execution.id.clone(),
            application: execution.application.clone(),
            name: execution.name.clone(),
            pipeline_config_id: config_id,
            status: execution.status.as_str().to_owned(),
            start_time: execution.start_time,
            end_time: execution.end_time,
        })
        .await?;
        Ok(())
    }

    /// Fires a pipeline's trigger by hand, for testing it: the first trigger of `kind`
    /// (any kind when `None`) is evaluated against `payload` (its secret is not asked
    /// for: the caller is authenticated) and, when it matches, runs as `requester`.
    /// Returns the log entry; a trigger that does not match is [`TriggerError::NotFired`]
    /// with the reason.
    pub async fn fire_by_hand(
        &self,
        application: &ApplicationRecord,
        pipeline: &PipelineRecord,
        kind: Option<&str>,
        payload: Value,
        requester: &Requester,
    ) -> Result<Value, TriggerError> {
        let Some((index, trigger)) = triggers_of(&pipeline.config)
            .find(|(_, t)| kind.is_none_or(|k| t.get("type").and_then(Value::as_str) == Some(k)))
        else {
            return Err(TriggerError::NotFired(format!(
                "pipeline '{}' has no {}trigger; add one to its \"triggers\"",
                pipeline.name,
                kind.map(|k| format!("'{k}' ")).unwrap_or_default()
            )));
        };
        let mut trigger = trigger.clone();
        trigger.remove("secret");
        trigger.insert("enabled".into(), json!(true));
        let field = |name: &str| {
            trigger
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let text = |name: &str, default: &str| {
            payload
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_owned()
        };
        let id = gennaker_engine::new_id();
        let event = match field("type").as_str() {
            "webhook" => Event::Webhook {
                source: field("source"),
                body: payload.to_string(),
                signatures: Default::default(),
                delivery: None,
            },
            "git" => Event::Git {
                provider: field("source"),
                body: payload.to_string(),
                event_name: payload.get("ref").map(|_| "push".to_owned()),
                signatures: Default::default(),
                delivery: None,
            },
            "docker" => {
                let registry = self
                    .inner
                    .settings
                    .docker_accounts
                    .iter()
                    .find(|a| a.name == field("account"))
                    .map(|a| a.registry())
                    .unwrap_or_else(|| field("account"));
                Event::Docker {
                    account: field("account"),
                    registry,
                    repository: field("repository"),
                    tag: text("tag", "latest"),
                    digest: text("digest", ""),
                }
            }
            "pipeline" => Event::Pipeline {
                execution_id: text("executionId", &id),
                application: field("application"),
                name: text("name", ""),
                pipeline_config_id: field("pipeline"),
                status: text("status", "SUCCEEDED"),
                start_time: None,
                end_time: None,
            },
            other => {
                let mut object = trigger.clone();
                object.insert("type".into(), json!(other));
                object.insert("scheduledTime".into(), json!(self.inner.clock.now()));
                object.insert("payload".into(), payload);
                object.insert("eventId".into(), json!(id));
                return self
                    .run_by_hand(
                        application,
                        pipeline,
                        index,
                        Firing {
                            trigger: object,
                            ..Firing::default()
                        },
                        requester,
                    )
                    .await;
            }
        };
        match evaluate(&trigger, &event, &payload, &id) {
            Verdict::Fire(firing) => {
                self.run_by_hand(application, pipeline, index, firing, requester)
                    .await
            }
            Verdict::Rejected(reason) => Err(TriggerError::NotFired(format!(
                "trigger {index} ({}) did not fire: {reason}",
                field("type")
            ))),
            Verdict::NotAddressed => Err(TriggerError::NotFired(format!(
                "trigger {index} ({}) did not fire: the payload is about another source, repository or pipeline than the trigger names",
                field("type")
            ))),
        }
    }

    async fn run_by_hand(
        &self,
        application: &ApplicationRecord,
        pipeline: &PipelineRecord,
        index: usize,
        firing: Firing,
        requester: &Requester,
    ) -> Result<Value, TriggerError> {
        let candidate = Candidate {
            application: application.clone(),
            pipeline: pipeline.clone(),
        };
        let result = self.run(&candidate, firing, None, requester).await?;
        Ok(with_pipeline(result, &candidate, index))
    }

    /// Runs the trigger loops until `stop`: cron on the clock, registry polls,
    /// pipeline-end events from the engine, and recovery of unfinished events.
    pub fn spawn(&self, stop: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let cron = {
            let this = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    let started = this.inner.clock.now();
                    let next = match this.cron_pass().await {
                        Ok(next) => next,
                        Err(err) => {
                            tracing::warn!(error = %err, "cron triggers pass failed; retried");
                            None
                        }
                    };
                    let now = this.inner.clock.now();
                    // A pass reads every pipeline: at the next tick, but never sooner
                    // than CRON_MIN_GAP_MS after the last pass began (Quartz ticks are
                    // whole seconds; a slow pass is not followed at once by another),
                    // and at least every CRON_MAX_GAP_MS (a new cron trigger goes live).
                    let at = next
                        .unwrap_or(now + CRON_MAX_GAP_MS)
                        .max(started + CRON_MIN_GAP_MS)
                        .min(now + CRON_MAX_GAP_MS);
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = this.inner.clock.sleep_until(at, Duration::from_secs(5)) => {}
                    }
                }
            })
        };
        let docker = {
            let this = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                if this.inner.settings.docker_accounts.is_empty() {
                    return;
                }
                loop {
                    if let Err(err) = this.docker_pass().await {
                        tracing::warn!(error = %err, "docker triggers poll failed; retried");
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(this.inner.settings.docker_poll) => {}
                    }
                }
            })
        };
        let ended = {
            let this = self.clone();
            let stop = stop.clone();
            let mut events = self.inner.engine.subscribe();
            tokio::spawn(async move {
                loop {
                    let event = tokio::select! {
                        () = stop.cancelled() => return,
                        event = events.recv() => event,
                    };
                    match event {
                        Ok(event) if event.scope() == "execution" && event.status.is_complete() => {
                            let result =
                                match this.inner.engine.execution(&event.execution_id).await {
                                    Ok(Some(execution)) => this.execution_ended(&execution).await,
                                    Ok(None) => Ok(()),
                                    Err(err) => Err(err.into()),
                                };
                            if let Err(err) = result {
                                tracing::warn!(error = %err, "pipeline trigger failed; the recovery pass retries it");
                            }
                        }
                        Ok(_) => {}
                        // Missed events are found by the recovery pass.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            })
        };
        let recovery = {
            let this = self.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(err) = this.recover().await {
                        tracing::warn!(error = %err, "trigger recovery pass failed; retried");
                    }
                    let wait = this.inner.settings.event_claim.min(Duration::from_secs(30));
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            })
        };
        vec![cron, docker, ended, recovery]
    }
}

fn with_pipeline(mut entry: Value, candidate: &Candidate, index: usize) -> Value {
    if let Value::Object(map) = &mut entry {
        let mut head = Map::new();
        head.insert("application".into(), json!(candidate.application.name));
        head.insert("pipeline".into(), json!(candidate.pipeline.name));
        head.insert("pipelineId".into(), json!(candidate.pipeline.id));
        head.insert("trigger".into(), json!(index));
        head.append(map);
        return Value::Object(head);
    }
    entry
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
