//! Workers: take a partition's messages from the queue under a lease, run the step,
//! commit it, publish its events.

use std::sync::Arc;
use std::time::Duration;

use gennaker_store::{
    CommitOutcome, ExecutionQuery, ExecutionRow, ExecutionWrite, LeasedMessage, StepCommit,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::clock::millis;
use crate::engine::EngineInner;
use crate::error::EngineError;
use crate::message::{Message, PIPELINE_PARTITION_PREFIX};
use crate::step::{Step, start_waiting};
use gennaker_core::execution::{Execution, ExecutionStatus};

/// After this many failed deliveries a message's execution is failed rather than
/// retried forever (a zombie is worse than a clear failure).
const MAX_DELIVERIES: i32 = 10;

/// The stored row for an execution at `version`.
pub(crate) fn execution_row(
    execution: &Execution,
    version: i64,
) -> Result<ExecutionRow, EngineError> {
    Ok(ExecutionRow {
        id: execution.id.clone(),
        application: execution.application.clone(),
        pipeline_config_id: execution.pipeline_config_id.clone(),
        pipeline_name: Some(execution.name.clone()),
        status: execution.status,
        created_at: execution.build_time,
        start_time: execution.start_time,
        end_time: execution.end_time,
        correlation_id: execution
            .trigger
            .get("correlationId")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        version,
        document: serde_json::to_string(execution)?,
    })
}

/// Stops the lease heartbeat however the step ends (even if the worker is dropped).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs until `shutdown`: claims one partition at a time and processes it.
pub(crate) async fn run(inner: Arc<EngineInner>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let now = inner.clock.now();
        let lease_until = now + millis(inner.config.lease);
        let claimed = inner
            .executions
            .claim_messages(&inner.owner, now, lease_until, 1, 64)
            .await;
        match claimed {
            Ok(messages) if !messages.is_empty() => process(&inner, messages).await,
            Ok(_) => idle(&inner, &shutdown).await,
            Err(e) => {
                warn!(error = %e, "engine: cannot read the queue; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

async fn idle(inner: &EngineInner, shutdown: &CancellationToken) {
    let next = inner.executions.next_delivery().await.ok().flatten();
    let max_wait = inner.config.idle_recheck;
    let at = next.unwrap_or(i64::MAX);
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = inner.notify.notified() => {}
        () = inner.clock.sleep_until(at, max_wait) => {}
    }
}

async fn process(inner: &Arc<EngineInner>, leased: Vec<LeasedMessage>) {
    let ids: Vec<i64> = leased.iter().map(|m| m.id).collect();
    let _heartbeat = AbortOnDrop({
        let inner = inner.clone();
        let ids = ids.clone();
        tokio::spawn(async move {
            let period = inner.config.lease / 3;
            loop {
                tokio::time::sleep(period).await;
                let until = inner.clock.now() + millis(inner.config.lease);
                if let Err(e) = inner
                    .executions
                    .extend_leases(&inner.owner, &ids, until)
                    .await
                {
                    warn!(error = %e, "engine: cannot extend leases");
                }
            }
        })
    });
    let partition = leased[0].partition.clone();
    let attempts = leased.iter().map(|m| m.attempts).max().unwrap_or(1);
    let mut messages = Vec::new();
    for message in &leased {
        match serde_json::from_str::<Message>(&message.payload) {
            Ok(parsed) => messages.push(parsed),
            Err(e) => error!(id = message.id, error = %e, "engine: dropping unreadable message"),
        }
    }
    let result = if let Some(pipeline) = partition.strip_prefix(PIPELINE_PARTITION_PREFIX) {
        start_waiting_step(inner, pipeline, &ids).await
    } else {
        execution_step(inner, &partition, messages, &ids, false).await
    };
    if let Err(e) = result {
        let backoff = Duration::from_millis(100).saturating_mul(1 << attempts.clamp(0, 10) as u32);
        if attempts >= MAX_DELIVERIES {
            error!(partition, error = %e, "engine: giving up on a step after {attempts} attempts");
            if let Err(e) = abandon(inner, &partition, &ids, &e.to_string()).await {
                error!(partition, error = %e, "engine: cannot fail the execution either");
            }
            return;
        }
        warn!(partition, attempts, error = %e, "engine: step failed; it will be retried");
        let at = inner.clock.now() + millis(backoff.min(Duration::from_secs(60)));
        if let Err(e) = inner
            .executions
            .release_messages(&inner.owner, &ids, at)
            .await
        {
            warn!(error = %e, "engine: cannot release messages; their leases will expire");
        }
    }
}

async fn execution_step(
    inner: &Arc<EngineInner>,
    execution_id: &str,
    messages: Vec<Message>,
    ids: &[i64],
    force_buffer: bool,
) -> Result<(), EngineError> {
    let Some(row) = inner.executions.get_execution(execution_id).await? else {
        warn!(
            execution_id,
            "engine: messages for an unknown execution are dropped"
        );
        return commit(
            inner,
            StepCommit {
                owner: inner.owner.clone(),
                acknowledged: ids.to_vec(),
                ..StepCommit::default()
            },
        )
        .await
        .map(|_| ());
    };
    let execution: Execution = serde_json::from_str(&row.document)?;
    let mut step = Step::new(inner, execution, messages.clone(), force_buffer);
    step.run().await?;
    let mut writes = vec![ExecutionWrite {
        row: execution_row(&step.execution, row.version + 1)?,
        expected_version: Some(row.version),
    }];
    for child in &step.inserts {
        writes.push(ExecutionWrite {
            row: execution_row(child, 1)?,
            expected_version: None,
        });
    }
    let notifications = inner.plan_notifications(&step.execution, row.version + 1, &step.events);
    let outcome = commit(
        inner,
        StepCommit {
            owner: inner.owner.clone(),
            acknowledged: ids.to_vec(),
            executions: writes,
            notifications,
            enqueue: std::mem::take(&mut step.outgoing),
            remove: std::mem::take(&mut step.dropped_runs),
            pipeline_lock: step.pipeline_lock.clone(),
            concurrency: step.concurrency.clone(),
            notices: inner.notices(&step.events),
            ..StepCommit::default()
        },
    )
    .await?;
    match outcome {
        CommitOutcome::Committed => {
            for event in step.events {
                // Nobody listening is fine.
                let _ = inner.events.send(event);
            }
            Ok(())
        }
        CommitOutcome::ConcurrencyLimited if !force_buffer => {
            Box::pin(execution_step(inner, execution_id, messages, ids, true)).await
        }
        other => {
            debug!(execution_id, ?other, "engine: step must be redone");
            let at = inner.clock.now();
            inner
                .executions
                .release_messages(&inner.owner, ids, at)
                .await?;
            inner.notify.notify_one();
            Ok(())
        }
    }
}

/// Commits a step and wakes a worker for each partition it queued messages for.
async fn commit(inner: &EngineInner, step: StepCommit) -> Result<CommitOutcome, EngineError> {
    let queued = step.enqueue.len();
    let outcome = inner.executions.commit_step(&step).await?;
    if outcome == CommitOutcome::Committed {
        for _ in 0..queued.min(inner.config.workers) {
            inner.notify.notify_one();
        }
    }
    Ok(outcome)
}

async fn start_waiting_step(
    inner: &Arc<EngineInner>,
    pipeline: &str,
    ids: &[i64],
) -> Result<(), EngineError> {
    let waiting = inner
        .executions
        .list_executions(&ExecutionQuery {
            pipeline_config_id: Some(pipeline.to_owned()),
            statuses: vec![ExecutionStatus::Buffered],
            limit: 1000,
            oldest_first: true,
            ..ExecutionQuery::default()
        })
        .await?
        .iter()
        .map(|row| serde_json::from_str::<Execution>(&row.document))
        .collect::<Result<Vec<_>, _>>()?;
    let active = inner
        .executions
        .list_executions(&ExecutionQuery {
            pipeline_config_id: Some(pipeline.to_owned()),
            statuses: vec![
                ExecutionStatus::Running,
                ExecutionStatus::Paused,
                ExecutionStatus::Suspended,
            ],
            limit: 1000,
            ..ExecutionQuery::default()
        })
        .await?
        .len();
    let enqueue = start_waiting(&waiting, active)
        .iter()
        .map(|m| {
            let partition = m.partition();
            let user = waiting
                .iter()
                .find(|e| e.id == partition)
                .map_or("", |e| e.authentication.user.as_str());
            inner.new_message(m, inner.clock.now(), user)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outcome = commit(
        inner,
        StepCommit {
            owner: inner.owner.clone(),
            acknowledged: ids.to_vec(),
            enqueue,
            pipeline_lock: Some(pipeline.to_owned()),
            ..StepCommit::default()
        },
    )
    .await?;
    if outcome != CommitOutcome::Committed {
        inner
            .executions
            .release_messages(&inner.owner, ids, inner.clock.now())
            .await?;
    }
    Ok(())
}

/// Fails the execution whose step keeps failing, and drops its messages.
async fn abandon(
    inner: &Arc<EngineInner>,
    partition: &str,
    ids: &[i64],
    error: &str,
) -> Result<(), EngineError> {
    let mut writes = Vec::new();
    let mut events = Vec::new();
    let mut enqueue = Vec::new();
    let mut remove = Vec::new();
    let mut notifications = Vec::new();
    if let Some(row) = inner.executions.get_execution(partition).await?
        && let Ok(execution) = serde_json::from_str::<Execution>(&row.document)
    {
        let mut step = Step::new(inner, execution, Vec::new(), false);
        step.abandon(error)?;
        writes.push(ExecutionWrite {
            row: execution_row(&step.execution, row.version + 1)?,
            expected_version: Some(row.version),
        });
        notifications = inner.plan_notifications(&step.execution, row.version + 1, &step.events);
        events = step.events;
        enqueue = step.outgoing;
        remove = step.dropped_runs;
    }
    let outcome = commit(
        inner,
        StepCommit {
            owner: inner.owner.clone(),
            acknowledged: ids.to_vec(),
            executions: writes,
            notifications,
            enqueue,
            remove,
            notices: inner.notices(&events),
            ..StepCommit::default()
        },
    )
    .await?;
    if outcome == CommitOutcome::Committed {
        for event in events {
            let _ = inner.events.send(event);
        }
    }
    Ok(())
}
