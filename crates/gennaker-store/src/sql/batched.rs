//! The queue's hot statements as one batch: an engine step's commit (what
//! `commit_statements` sends statement by statement: 12 round trips on PostgreSQL and
//! 9 hand-offs to sqlx's SQLite thread for a carried queue hop) and, on PostgreSQL, a
//! claim (8 round trips).
//!
//! - **PostgreSQL** calls `gennaker_commit_step` and `gennaker_claim` (migration 0014:
//!   the same statements, in PL/pgSQL), outside a transaction block so each call is its
//!   own transaction: one round trip. The commit raises SQLSTATE `GK001` for a stale
//!   step and `GK002` for a duplicate correlation id, which undoes the whole call.
//! - **SQLite** sends a commit's statements as one multi-statement text between `BEGIN
//!   IMMEDIATE` and `COMMIT`: three hand-offs while the write gate is held. sqlx's
//!   SQLite driver prepares and runs the statements of such a text in turn on its
//!   thread and streams each one's rows and changes back (sqlx calls that behaviour
//!   due to change, launchbadge/sqlx#3108; the queue suite runs on it). The checks are
//!   made on those results, and a failed one rolls the transaction back. The
//!   partition of the acknowledged messages is the one the step names
//!   (`StepCommit::acknowledged_partition`, checked by each message's delete), or else
//!   read before the write lock is taken: a message's partition never changes, and a
//!   message deleted meanwhile fails its delete's check.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteArguments, SqlitePool};
use sqlx::{Arguments, AssertSqlSafe, Either, Executor, FromRow, Row};

use super::executions::{CARRY_PARTITION, DROP_EMPTY_PARTITION, MessageRow, REFRESH_PARTITION};
use super::{MAX_NOTICE_BYTES, WritePool, key};
use crate::error::{Result, StoreError};
use crate::executions::{CommitOutcome, LeasedMessage, NextLease, StepCommit};

/// SQLSTATE of `gennaker_commit_step`'s stale step (the message says why).
const STALE_STATE: &str = "GK001";
/// SQLSTATE of `gennaker_commit_step`'s duplicate correlation id (the message is the
/// existing execution's id).
const DUPLICATE_STATE: &str = "GK002";

/// The call of `gennaker_commit_step`; its parameters in the function's order.
const COMMIT_STEP_CALL: &str = "SELECT leased_id, leased_partition, leased_payload, leased_attempts, leased_deliver_at \
     FROM gennaker_commit_step($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
     $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30)";

/// Largest step (bytes of its documents, payloads and notices) sent as one call of
/// `gennaker_commit_step`. sqlx's rustls adapter writes each 16 KiB TLS record with its
/// own `send`, and sqlx sets no `TCP_NODELAY`: the second record of a larger request
/// waits for the server's delayed ACK (40 ms on Linux), far more than the round trips
/// the call saves. Larger steps go statement by statement (docs/PERFORMANCE.md).
pub(super) const MAX_CALL_BYTES: usize = 12 * 1024;

/// Bytes of `step`'s variable-length data, a lower bound of its call's size.
pub(super) fn call_bytes(step: &StepCommit) -> usize {
    let documents: usize = step
        .executions
        .iter()
        .map(|w| w.row.document.len() + w.row.id.len() + w.row.application.len())
        .sum();
    let payloads: usize = step
        .enqueue
        .iter()
        .map(|m| m.payload.len() + m.partition.len())
        .sum();
    let notices: usize = step.notices.iter().map(String::len).sum();
    documents + payloads + notices
}

/// Batches of at most this many statements keep their prepared statements in the
/// connection's cache.
const MAX_KEPT_STATEMENTS: usize = 64;

/// A new partition's `ready_at` until the commit recomputes it: never a real time.
const UNSET_READY: i64 = i64::MAX;

/// Creates a partition's row if it has none (SQLite: its writers are serial, so there
/// is nothing to lock).
const CREATE_PARTITION: &str = "INSERT INTO queue_partitions (partition_key, tenant, ready_at) VALUES ($1, $2, $3) \
                                ON CONFLICT (partition_key) DO NOTHING";

/// Adds the tenant of a partition created by this commit (least recently served of
/// all, as it never was).
const ENSURE_NEW_PARTITIONS_TENANT: &str = "INSERT INTO queue_tenants (tenant, served_seq) \
                                            SELECT tenant, 0 FROM queue_partitions WHERE partition_key = $1 AND ready_at = $2 \
                                            ON CONFLICT (tenant) DO NOTHING";

/// The partitions that receive messages, in key order, with their tenant: the first
/// non-empty one a message names (an existing partition keeps its own).
fn receiving_partitions(step: &StepCommit) -> BTreeMap<&str, &str> {
    let mut partitions = BTreeMap::<&str, &str>::new();
    for message in &step.enqueue {
        let tenant = partitions.entry(message.partition.as_str()).or_default();
        if tenant.is_empty() {
            *tenant = message.tenant.as_deref().unwrap_or_default();
        }
    }
    partitions
}

/// The rows the functions return, as leased messages ordered by due time.
fn leased_messages(rows: Vec<(i64, String, String, i32, i64)>) -> Vec<LeasedMessage> {
    let mut leased: Vec<LeasedMessage> = rows
        .into_iter()
        .map(
            |(id, partition, payload, attempts, deliver_at)| LeasedMessage {
                id,
                partition,
                payload,
                attempts,
                deliver_at,
            },
        )
        .collect();
    leased.sort_by_key(|m| (m.deliver_at, m.id));
    leased
}

/// Commits `step` with one call of `gennaker_commit_step`.
pub(super) async fn postgres(
    db: &PgPool,
    step: &StepCommit,
    next: Option<&NextLease>,
) -> Result<(CommitOutcome, Vec<LeasedMessage>)> {
    let receiving = receiving_partitions(step);
    // Partitions changed other than through acknowledged messages: those receiving
    // messages with their tenant, the others (removed runs, woken tasks) without.
    let mut lock: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for (partition, _) in &step.remove {
        lock.insert(partition, None);
    }
    for partition in &step.wake {
        lock.insert(partition, None);
    }
    for (partition, tenant) in &receiving {
        lock.insert(partition, Some(tenant));
    }
    let (lock_partitions, lock_tenants): (Vec<&str>, Vec<Option<&str>>) = lock.into_iter().unzip();
    let writes = &step.executions;
    let rows = writes.iter().map(|w| &w.row);
    let notices: Vec<&str> = step
        .notices
        .iter()
        .filter(|n| n.len() <= MAX_NOTICE_BYTES)
        .map(String::as_str)
        .collect();
    let called = sqlx::query_as::<_, (i64, String, String, i32, i64)>(COMMIT_STEP_CALL)
        .bind(&step.owner)
        .bind(&step.acknowledged)
        .bind(rows.clone().map(|r| r.id.as_str()).collect::<Vec<_>>())
        .bind(
            writes
                .iter()
                .map(|w| w.expected_version)
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.clone()
                .map(|r| key(&r.application))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.clone()
                .map(|r| r.application.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.clone()
                .map(|r| r.pipeline_config_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.clone()
                .map(|r| r.pipeline_name.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(rows.clone().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .bind(rows.clone().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows.clone().map(|r| r.start_time).collect::<Vec<_>>())
        .bind(rows.clone().map(|r| r.end_time).collect::<Vec<_>>())
        .bind(
            rows.clone()
                .map(|r| r.correlation_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(rows.clone().map(|r| r.version).collect::<Vec<_>>())
        .bind(rows.map(|r| r.document.as_str()).collect::<Vec<_>>())
        .bind(lock_partitions)
        .bind(lock_tenants)
        .bind(
            step.remove
                .iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            step.remove
                .iter()
                .map(|(_, k)| k.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            step.enqueue
                .iter()
                .map(|m| m.partition.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            step.enqueue
                .iter()
                .map(|m| m.payload.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            step.enqueue
                .iter()
                .map(|m| m.deliver_at)
                .collect::<Vec<_>>(),
        )
        .bind(
            step.enqueue
                .iter()
                .map(|m| m.replace_key.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(&step.wake)
        .bind(step.wake_at)
        .bind(notices)
        .bind(next.map(|n| n.partition.as_str()))
        .bind(next.map_or(0, |n| n.now))
        .bind(next.map_or(0, |n| n.lease_until))
        .bind(next.map_or(1, |n| n.limit.max(1)))
        .fetch_all(db)
        .await;
    match called {
        Ok(rows) => Ok((CommitOutcome::Committed, leased_messages(rows))),
        Err(sqlx::Error::Database(e)) => {
            let outcome = match e.code().as_deref() {
                Some(STALE_STATE) => CommitOutcome::Stale(e.message().to_owned()),
                Some(DUPLICATE_STATE) => {
                    CommitOutcome::DuplicateCorrelation(e.message().to_owned())
                }
                // An execution inserted meanwhile with the same id or correlation id.
                _ if e.is_unique_violation() => CommitOutcome::Stale(format!(
                    "an execution of this step was stored meanwhile ({})",
                    e.message()
                )),
                _ => return Err(StoreError::from(sqlx::Error::Database(e))),
            };
            Ok((outcome, Vec::new()))
        }
        Err(e) => Err(e.into()),
    }
}

/// What one statement of a SQLite batch must find.
enum Check {
    /// Nothing.
    None,
    /// A changed row; else the step is stale, for this reason.
    Changes(String),
    /// No row; a row is the id of an execution with the same correlation id.
    NoDuplicate,
    /// Its rows are the messages leased to carry on with.
    Leased,
}

/// A multi-statement text and its arguments; each statement is written with its own
/// `$1`, `$2`… and renumbered as it is added.
#[derive(Default)]
struct Batch {
    sql: String,
    args: SqliteArguments,
    checks: Vec<Check>,
}

/// One argument of a batched statement.
enum Arg<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
}

impl Batch {
    fn push(&mut self, sql: &str, args: &[Arg<'_>], check: Check) -> Result<()> {
        let base = self.args.len();
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            self.sql.push_str(&rest[..=at]);
            rest = &rest[at + 1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let n: usize = rest[..digits].parse().map_err(|_| {
                StoreError::from(sqlx::Error::Protocol(format!(
                    "batched statement without a numbered parameter after '$': {sql}"
                )))
            })?;
            self.sql.push_str(&(base + n).to_string());
            rest = &rest[digits..];
        }
        self.sql.push_str(rest);
        self.sql.push_str(";\n");
        for arg in args {
            let added = match arg {
                Arg::Text(v) => self.args.add(*v),
                Arg::OptText(v) => self.args.add(*v),
                Arg::Int(v) => self.args.add(*v),
                Arg::OptInt(v) => self.args.add(*v),
            };
            added.map_err(sqlx::Error::Encode)?;
        }
        self.checks.push(check);
        Ok(())
    }
}

/// The partitions of the messages `ids`.
async fn partitions_of(db: &SqlitePool, ids: &[i64]) -> Result<BTreeSet<String>> {
    let mut partitions = BTreeSet::new();
    // In chunks, well below SQLite's limit on bound parameters.
    for chunk in ids.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT DISTINCT partition_key FROM queue_messages WHERE id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(id);
        }
        partitions.extend(query.fetch_all(db).await?);
    }
    Ok(partitions)
}

/// Commits `step` as one multi-statement text in a write transaction.
pub(super) async fn sqlite(
    db: &SqlitePool,
    step: &StepCommit,
    next: Option<&NextLease>,
) -> Result<(CommitOutcome, Vec<LeasedMessage>)> {
    let acknowledged_in = match &step.acknowledged_partition {
        Some(partition) if !step.acknowledged.is_empty() => BTreeSet::from([partition.clone()]),
        _ => partitions_of(db, &step.acknowledged).await?,
    };
    let receiving = receiving_partitions(step);
    let mut batch = Batch::default();
    for (partition, tenant) in &receiving {
        let args = [
            Arg::Text(partition),
            Arg::Text(tenant),
            Arg::Int(UNSET_READY),
        ];
        batch.push(CREATE_PARTITION, &args, Check::None)?;
        let args = [Arg::Text(partition), Arg::Int(UNSET_READY)];
        batch.push(ENSURE_NEW_PARTITIONS_TENANT, &args, Check::None)?;
    }
    for id in &step.acknowledged {
        let lost = Check::Changes(format!("the lease on message {id} was lost"));
        match &step.acknowledged_partition {
            // The partition given is checked: a message of another partition is not
            // deleted, and the step is stale.
            Some(partition) => batch.push(
                "DELETE FROM queue_messages WHERE id = $1 AND lease_owner = $2 AND partition_key = $3",
                &[Arg::Int(*id), Arg::Text(&step.owner), Arg::Text(partition)],
                lost,
            )?,
            None => batch.push(
                "DELETE FROM queue_messages WHERE id = $1 AND lease_owner = $2",
                &[Arg::Int(*id), Arg::Text(&step.owner)],
                lost,
            )?,
        }
    }
    for write in &step.executions {
        let row = &write.row;
        match write.expected_version {
            None => {
                if let Some(correlation) = &row.correlation_id {
                    batch.push(
                        "SELECT id FROM executions WHERE correlation_id = $1",
                        &[Arg::Text(correlation)],
                        Check::NoDuplicate,
                    )?;
                }
                let application_key = key(&row.application);
                batch.push(
                    "INSERT INTO executions (id, application_key, application, pipeline_config_id, pipeline_name, status, created_at, start_time, end_time, correlation_id, version, document) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
                    &[
                        Arg::Text(&row.id),
                        Arg::Text(&application_key),
                        Arg::Text(&row.application),
                        Arg::OptText(row.pipeline_config_id.as_deref()),
                        Arg::OptText(row.pipeline_name.as_deref()),
                        Arg::Text(row.status.as_str()),
                        Arg::Int(row.created_at),
                        Arg::OptInt(row.start_time),
                        Arg::OptInt(row.end_time),
                        Arg::OptText(row.correlation_id.as_deref()),
                        Arg::Int(row.version),
                        Arg::Text(&row.document),
                    ],
                    Check::Changes(format!("execution {} already exists", row.id)),
                )?;
            }
            Some(expected) => batch.push(
                "UPDATE executions SET status = $3, start_time = $4, end_time = $5, version = $6, document = $7 WHERE id = $1 AND version = $2",
                &[
                    Arg::Text(&row.id),
                    Arg::Int(expected),
                    Arg::Text(row.status.as_str()),
                    Arg::OptInt(row.start_time),
                    Arg::OptInt(row.end_time),
                    Arg::Int(row.version),
                    Arg::Text(&row.document),
                ],
                Check::Changes(format!(
                    "execution {} changed since version {expected}",
                    row.id
                )),
            )?,
        }
    }
    for (partition, replace_key) in &step.remove {
        batch.push(
            "DELETE FROM queue_messages WHERE partition_key = $1 AND replace_key = $2",
            &[Arg::Text(partition), Arg::Text(replace_key)],
            Check::None,
        )?;
    }
    for message in &step.enqueue {
        batch.push(
            "INSERT INTO queue_messages (partition_key, payload, deliver_at, created_at, replace_key) VALUES ($1, $2, $3, $3, $4) \
             ON CONFLICT (partition_key, replace_key) DO UPDATE SET payload = excluded.payload, deliver_at = excluded.deliver_at, \
             attempts = 0, lease_owner = NULL, lease_until = NULL",
            &[
                Arg::Text(&message.partition),
                Arg::Text(&message.payload),
                Arg::Int(message.deliver_at),
                Arg::OptText(message.replace_key.as_deref()),
            ],
            Check::None,
        )?;
    }
    for partition in &step.wake {
        batch.push(
            "UPDATE queue_messages SET deliver_at = $2 WHERE partition_key = $1 AND lease_owner IS NULL AND deliver_at > $2",
            &[Arg::Text(partition), Arg::Int(step.wake_at)],
            Check::None,
        )?;
    }
    // Carrying on needs no claim: the acknowledged messages prove this worker held the
    // partition (their deletes are checked), and the statement checks that no other
    // lease is live.
    if let Some(next) = next.filter(|n| acknowledged_in.contains(&n.partition)) {
        // The limit is written into the text, not bound: SQLite plans a `LIMIT` with
        // its bound value, so binding one expires the prepared statement, and the
        // whole batch was parsed and planned again on every hop. It is an integer, the
        // same for every hop of an engine, so the text (and its cached statements)
        // repeats.
        let carry = CARRY_PARTITION.replace("LIMIT $5", &format!("LIMIT {}", next.limit.max(1)));
        batch.push(
            &carry,
            &[
                Arg::Text(&next.partition),
                Arg::Int(next.now),
                Arg::Text(&step.owner),
                Arg::Int(next.lease_until),
            ],
            Check::Leased,
        )?;
    }
    // Every partition changed, in key order; one that lost messages and received none
    // may have lost its last one (deleting its row is a no-op if it kept or leased
    // some), and then loses its row.
    let mut changed: BTreeSet<&str> = acknowledged_in.iter().map(String::as_str).collect();
    changed.extend(step.remove.iter().map(|(p, _)| p.as_str()));
    changed.extend(step.wake.iter().map(String::as_str));
    changed.extend(receiving.keys());
    for partition in changed {
        let emptied = !receiving.contains_key(partition)
            && (acknowledged_in.contains(partition)
                || step.remove.iter().any(|(p, _)| p == partition));
        if emptied {
            batch.push(DROP_EMPTY_PARTITION, &[Arg::Text(partition)], Check::None)?;
        }
        batch.push(REFRESH_PARTITION, &[Arg::Text(partition)], Check::None)?;
    }

    let mut tx = db.begin_write().await?;
    let mut outcome = CommitOutcome::Committed;
    let mut leased: Vec<LeasedMessage> = Vec::new();
    let failed = {
        let Batch { sql, args, checks } = batch;
        // A step's shape repeats (a queue hop's is always the same text), so its
        // prepared statements are kept; a rare large step's are not.
        let keep = checks.len() <= MAX_KEPT_STATEMENTS;
        let query = sqlx::query_with(AssertSqlSafe(sql), args).persistent(keep);
        let mut results = (&mut *tx).fetch_many(query);
        let mut statement = 0;
        loop {
            let result = match results.try_next().await {
                Ok(Some(result)) => result,
                Ok(None) => break None,
                Err(e) => break Some(e),
            };
            let check = checks.get(statement).unwrap_or(&Check::None);
            match (result, check) {
                (Either::Right(row), Check::NoDuplicate) => {
                    let existing: String = row.try_get(0)?;
                    outcome = CommitOutcome::DuplicateCorrelation(existing);
                    break None;
                }
                (Either::Right(row), Check::Leased) => {
                    leased.push(MessageRow::from_row(&row)?.into());
                }
                (Either::Right(_), _) => {}
                (Either::Left(done), check) => {
                    if let Check::Changes(reason) = check
                        && done.rows_affected() == 0
                    {
                        outcome = CommitOutcome::Stale(reason.clone());
                        break None;
                    }
                    statement += 1;
                }
            }
        }
    };
    if let Some(e) = failed {
        tx.rollback().await?;
        return match e {
            // An execution inserted meanwhile with the same correlation id.
            sqlx::Error::Database(db) if db.is_unique_violation() => Ok((
                CommitOutcome::Stale(format!(
                    "an execution of this step was stored meanwhile ({})",
                    db.message()
                )),
                Vec::new(),
            )),
            e => Err(e.into()),
        };
    }
    if outcome != CommitOutcome::Committed {
        tx.rollback().await?;
        return Ok((outcome, Vec::new()));
    }
    tx.commit().await?;
    leased.sort_by_key(|m| (m.deliver_at, m.id));
    Ok((CommitOutcome::Committed, leased))
}

/// The call of `gennaker_claim`.
const CLAIM_CALL: &str = "SELECT leased_id, leased_partition, leased_payload, leased_attempts, leased_deliver_at \
     FROM gennaker_claim($1, $2, $3, $4, $5)";

/// Claims with one call of `gennaker_claim`: the statements of `claim_messages`, in
/// the database.
pub(super) async fn postgres_claim(
    db: &PgPool,
    owner: &str,
    now: i64,
    lease_until: i64,
    partitions: i64,
    per_partition: i64,
) -> Result<Vec<LeasedMessage>> {
    let partitions = i32::try_from(partitions.max(1)).unwrap_or(i32::MAX);
    let rows = sqlx::query_as::<_, (i64, String, String, i32, i64)>(CLAIM_CALL)
        .bind(owner)
        .bind(now)
        .bind(lease_until)
        .bind(partitions)
        .bind(per_partition.max(1))
        .fetch_all(db)
        .await?;
    Ok(leased_messages(rows))
}
