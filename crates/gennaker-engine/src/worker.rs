//! Workers: take a partition's messages from the queue under a lease, run the step,
//! commit it, publish its events.

use std::sync::Arc;
use std::time::Duration;

use gennaker_store::{
    CommitOutcome, ExecutionQuery, ExecutionRow, ExecutionWrite, LeasedMessage, NextLease,
    StepCommit,
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

/// The most messages of one partition a worker leases at once.
const CLAIM_PER_PARTITION: i64 = 64;

/// The most steps a worker runs on one execution in a row by leasing its next due
/// messages with each commit (a queue-hop stage's task, due at once): each such step
/// saves a claim and a read of the execution, and the bound keeps the tenants' turns
/// (a claim serves the tenant waiting longest) from being skipped for long.
const MAX_CARRIED_STEPS: usize = 8;

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

/// Runs until `shutdown`: claims one partition at a time and processes it.
pub(crate) async fn run(inner: Arc<EngineInner>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let now = inner.clock.now();
        let lease_until = now + millis(inner.config.lease);
        let claimed = inner
            .executions
            .claim_messages(&inner.owner, now, lease_until, 1, CLAIM_PER_PARTITION)
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

/// Processes claimed messages; while a step's own commit leases the execution's next
/// due messages (a task queued to run now, as every queue-hop stage does), goes on
/// with them, up to [`MAX_CARRIED_STEPS`] steps, then leaves the rest to the queue so
/// other executions and tenants get their turn.
async fn process(inner: &Arc<EngineInner>, leased: Vec<LeasedMessage>) {
    let mut leased = leased;
    let mut known = None;
    for step in 1..=MAX_CARRIED_STEPS {
        let carry = step < MAX_CARRIED_STEPS;
        match process_leased(inner, leased, known, carry).await {
            Some(Carried {
                messages,
                known: committed,
            }) if !messages.is_empty() => {
                leased = messages;
                known = Some(committed);
            }
            _ => return,
        }
    }
}

/// An execution as this worker's last step committed it: the next step of a worker
/// that carries on starts from it, neither reading nor parsing the stored document.
struct Known {
    execution: Execution,
    /// The version the commit wrote.
    version: i64,
}

/// What a step's commit leased to this worker to carry on with.
struct Carried {
    messages: Vec<LeasedMessage>,
    known: Known,
}

/// Runs one step on leased messages (`known` is their execution as the previous step
/// of this worker committed it, saving a read); with `carry`, returns the messages its
/// commit leased to this worker and the execution as committed.
async fn process_leased(
    inner: &Arc<EngineInner>,
    leased: Vec<LeasedMessage>,
    known: Option<Known>,
    carry: bool,
) -> Option<Carried> {
    let ids: Vec<i64> = leased.iter().map(|m| m.id).collect();
    // The heartbeat runs in this task, beside the step: a task spawned for it (and
    // aborted after) cost each queue hop two schedulings, and often a wake-up of an
    // idle runtime thread to take the new task.
    tokio::select! {
        carried = run_step(inner, leased, &ids, known, carry) => carried,
        never = heartbeat(inner, &ids) => match never {},
    }
}

/// Extends the leases on `ids` every third of a lease, for as long as it is polled.
async fn heartbeat(inner: &EngineInner, ids: &[i64]) -> std::convert::Infallible {
    let period = inner.config.lease / 3;
    loop {
        tokio::time::sleep(period).await;
        let until = inner.clock.now() + millis(inner.config.lease);
        if let Err(e) = inner
            .executions
            .extend_leases(&inner.owner, ids, until)
            .await
        {
            warn!(error = %e, "engine: cannot extend leases");
        }
    }
}

/// What [`process_leased`] runs beside the heartbeat: the step, and its retry or
/// abandonment when it fails.
async fn run_step(
    inner: &Arc<EngineInner>,
    leased: Vec<LeasedMessage>,
    ids: &[i64],
    known: Option<Known>,
    carry: bool,
) -> Option<Carried> {
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
        start_waiting_step(inner, pipeline, ids)
            .await
            .map(|()| None)
    } else {
        // A claim leases one partition's messages, and a commit carries on with its
        // own execution's only.
        let one_partition = leased.iter().all(|m| m.partition == partition);
        let step = ExecutionStep {
            execution_id: &partition,
            messages,
            ids,
            one_partition,
            known,
            carry,
        };
        execution_step(inner, step, false).await
    };
    let e = match result {
        Ok(carried) => return carried,
        Err(e) => e,
    };
    let backoff = Duration::from_millis(100).saturating_mul(1 << attempts.clamp(0, 10) as u32);
    if attempts >= MAX_DELIVERIES {
        error!(partition, error = %e, "engine: giving up on a step after {attempts} attempts");
        if let Err(e) = abandon(inner, &partition, ids, &e.to_string()).await {
            error!(partition, error = %e, "engine: cannot fail the execution either");
        }
        return None;
    }
    warn!(partition, attempts, error = %e, "engine: step failed; it will be retried");
    let at = inner.clock.now() + millis(backoff.min(Duration::from_secs(60)));
    if let Err(e) = inner
        .executions
        .release_messages(&inner.owner, ids, at)
        .await
    {
        warn!(error = %e, "engine: cannot release messages; their leases will expire");
    }
    None
}

/// One step's input: an execution's leased messages.
struct ExecutionStep<'a> {
    execution_id: &'a str,
    messages: Vec<Message>,
    ids: &'a [i64],
    /// Whether every message of `ids` is of the execution's partition (then the store
    /// need not read their partitions).
    one_partition: bool,
    /// The execution as this worker's previous step committed it, if it carries on.
    known: Option<Known>,
    /// Lease the execution's next due messages with the commit.
    carry: bool,
}

/// Runs and commits one step; returns what the commit leased to carry on with.
async fn execution_step(
    inner: &Arc<EngineInner>,
    input: ExecutionStep<'_>,
    force_buffer: bool,
) -> Result<Option<Carried>, EngineError> {
    let ExecutionStep {
        execution_id,
        messages,
        ids,
        one_partition,
        known,
        carry,
    } = input;
    let acknowledged_partition = one_partition.then(|| execution_id.to_owned());
    let known = match known {
        Some(known) => Some(known),
        None => match inner.executions.get_execution(execution_id).await? {
            Some(row) => Some(Known {
                execution: serde_json::from_str(&row.document)?,
                version: row.version,
            }),
            None => None,
        },
    };
    let Some(Known { execution, version }) = known else {
        warn!(
            execution_id,
            "engine: messages for an unknown execution are dropped"
        );
        let empty = StepCommit {
            owner: inner.owner.clone(),
            acknowledged: ids.to_vec(),
            acknowledged_partition,
            ..StepCommit::default()
        };
        commit(inner, empty, None).await?;
        return Ok(None);
    };
    let mut step = Step::new(inner, execution, messages.clone(), force_buffer);
    step.run().await?;
    let mut writes = vec![ExecutionWrite {
        row: execution_row(&step.execution, version + 1)?,
        expected_version: Some(version),
    }];
    for child in &step.inserts {
        writes.push(ExecutionWrite {
            row: execution_row(child, 1)?,
            expected_version: None,
        });
    }
    let notifications = inner.plan_notifications(&step.execution, version + 1, &step.events);
    // Only a step that queued its own execution's next message has anything to carry
    // on with.
    let next = (carry && step.outgoing.iter().any(|m| m.partition == execution_id)).then(|| {
        let now = inner.clock.now();
        NextLease {
            partition: execution_id.to_owned(),
            now,
            lease_until: now + millis(inner.config.lease),
            limit: CLAIM_PER_PARTITION,
        }
    });
    let (outcome, leased) = commit(
        inner,
        StepCommit {
            owner: inner.owner.clone(),
            acknowledged: ids.to_vec(),
            acknowledged_partition,
            executions: writes,
            notifications,
            enqueue: std::mem::take(&mut step.outgoing),
            remove: std::mem::take(&mut step.dropped_runs),
            pipeline_lock: step.pipeline_lock.clone(),
            concurrency: step.concurrency.clone(),
            notices: inner.notices(&step.events),
            ..StepCommit::default()
        },
        next.as_ref(),
    )
    .await?;
    match outcome {
        CommitOutcome::Committed => {
            for event in std::mem::take(&mut step.events) {
                // Nobody listening is fine.
                let _ = inner.events.send(event);
            }
            if leased.is_empty() {
                return Ok(None);
            }
            Ok(Some(Carried {
                messages: leased,
                known: Known {
                    execution: step.execution,
                    version: version + 1,
                },
            }))
        }
        CommitOutcome::ConcurrencyLimited if !force_buffer => {
            let retry = ExecutionStep {
                execution_id,
                messages,
                ids,
                one_partition,
                known: None,
                carry,
            };
            Box::pin(execution_step(inner, retry, true)).await
        }
        other => {
            debug!(execution_id, ?other, "engine: step must be redone");
            let at = inner.clock.now();
            inner
                .executions
                .release_messages(&inner.owner, ids, at)
                .await?;
            inner.notify.notify_one();
            Ok(None)
        }
    }
}

/// Commits a step (leasing `next` with it, if given) and wakes a worker for each
/// partition it queued messages for that this worker did not lease.
async fn commit(
    inner: &EngineInner,
    step: StepCommit,
    next: Option<&NextLease>,
) -> Result<(CommitOutcome, Vec<LeasedMessage>), EngineError> {
    let (outcome, leased) = match next {
        Some(next) => inner.executions.commit_step_and_lease(&step, next).await?,
        None => (inner.executions.commit_step(&step).await?, Vec::new()),
    };
    if outcome == CommitOutcome::Committed {
        let mut partitions: Vec<&str> = step
            .enqueue
            .iter()
            .map(|m| m.partition.as_str())
            .filter(|p| !leased.iter().any(|l| l.partition == *p))
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        for _ in 0..partitions.len().min(inner.config.workers) {
            inner.notify.notify_one();
        }
    }
    Ok((outcome, leased))
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
    let (outcome, _) = commit(
        inner,
        StepCommit {
            owner: inner.owner.clone(),
            acknowledged: ids.to_vec(),
            enqueue,
            pipeline_lock: Some(pipeline.to_owned()),
            ..StepCommit::default()
        },
        None,
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
    let (outcome, _) = commit(
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
        None,
    )
    .await?;
    if outcome == CommitOutcome::Committed {
        for event in events {
            let _ = inner.events.send(event);
        }
    }
    Ok(())
}
