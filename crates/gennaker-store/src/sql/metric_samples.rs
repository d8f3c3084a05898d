//! [`MetricSampleStore`] on SQLite and PostgreSQL, one SQL text for both.

use async_trait::async_trait;

use super::{Backend, SqlStore, WritePool};
use crate::error::{Result, StoreError};
use crate::metric_samples::{LatencyBucket, MetricSample, MetricSampleStore, RequestCounts};

const COLUMNS: &str = "server_group, load_balancer, at_ms, window_ms, count_2xx, count_3xx, \
                       count_4xx, count_5xx, count_error, latency";

#[derive(sqlx::FromRow)]
struct SampleRow {
    server_group: String,
    load_balancer: String,
    at_ms: i64,
    window_ms: i64,
    count_2xx: i64,
    count_3xx: i64,
    count_4xx: i64,
    count_5xx: i64,
    count_error: i64,
    latency: String,
}

/// Counts are stored as signed 64-bit integers (both databases' widest integer).
fn stored(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn loaded(count: i64) -> u64 {
    u64::try_from(count).unwrap_or(0)
}

fn latency_text(buckets: &[LatencyBucket]) -> Result<String> {
    let pairs: Vec<(Option<f64>, u64)> = buckets.iter().map(|b| (b.le, b.count)).collect();
    Ok(serde_json::to_string(&pairs)?)
}

impl SampleRow {
    fn into_sample(self) -> Result<MetricSample> {
        let pairs: Vec<(Option<f64>, u64)> = serde_json::from_str(&self.latency)?;
        Ok(MetricSample {
            load_balancer: self.load_balancer,
            server_group: self.server_group,
            at_ms: self.at_ms,
            window_ms: self.window_ms,
            requests: RequestCounts {
                ok: loaded(self.count_2xx),
                redirect: loaded(self.count_3xx),
                client_error: loaded(self.count_4xx),
                server_error: loaded(self.count_5xx),
                error: loaded(self.count_error),
            },
            latency: pairs
                .into_iter()
                .map(|(le, count)| LatencyBucket { le, count })
                .collect(),
        })
    }
}

#[async_trait]
impl MetricSampleStore for SqlStore {
    async fn insert_metric_samples(&self, samples: &[MetricSample]) -> Result<u64> {
        if samples.is_empty() {
            return Ok(0);
        }
        let texts = samples
            .iter()
            .map(|s| latency_text(&s.latency))
            .collect::<Result<Vec<_>>>()?;
        let sql = format!(
            "INSERT INTO metric_samples ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (server_group, at_ms, load_balancer) DO NOTHING"
        );
        on_db!(&self.backend, db => {
            let mut tx = db.begin_write().await?;
            let mut inserted = 0;
            for (sample, latency) in samples.iter().zip(&texts) {
                let r = &sample.requests;
                inserted += sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(&sample.server_group)
                    .bind(&sample.load_balancer)
                    .bind(sample.at_ms)
                    .bind(sample.window_ms)
                    .bind(stored(r.ok))
                    .bind(stored(r.redirect))
                    .bind(stored(r.client_error))
                    .bind(stored(r.server_error))
                    .bind(stored(r.error))
                    .bind(latency)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            Ok(inserted)
        })
    }

    async fn metric_samples(
        &self,
        server_group: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<MetricSample>> {
        let limit = i64::try_from(limit)
            .map_err(|_| StoreError::Conflict(format!("sample limit {limit} is too large")))?;
        let sql = format!(
            "SELECT {COLUMNS} FROM metric_samples WHERE server_group = $1 AND at_ms >= $2 \
             AND at_ms <= $3 ORDER BY at_ms, load_balancer LIMIT $4"
        );
        let rows: Vec<SampleRow> = on_db!(&self.backend, db => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(server_group)
                .bind(from_ms)
                .bind(to_ms)
                .bind(limit)
                .fetch_all(db)
                .await?
        });
        rows.into_iter().map(SampleRow::into_sample).collect()
    }

    async fn prune_metric_samples(&self, before_ms: i64) -> Result<u64> {
        let sql = "DELETE FROM metric_samples WHERE at_ms < $1";
        Ok(on_db!(&self.backend, db => {
            sqlx::query(sql).bind(before_ms).execute(db).await?.rows_affected()
        }))
    }
}
