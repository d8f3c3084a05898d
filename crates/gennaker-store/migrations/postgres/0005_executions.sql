-- Executions (one JSON document each, rewritten by every engine step under an
-- optimistic version check) and the engine's durable queue.
CREATE TABLE executions (
    id                 TEXT PRIMARY KEY,
    application_key    TEXT NOT NULL,
    application        TEXT NOT NULL,
    pipeline_config_id TEXT,
    pipeline_name      TEXT,
    status             TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    start_time         BIGINT,
    end_time           BIGINT,
    correlation_id     TEXT UNIQUE,
    version            BIGINT NOT NULL,
    document           TEXT NOT NULL
);
CREATE INDEX executions_by_application ON executions (application_key, created_at DESC);
CREATE INDEX executions_by_pipeline ON executions (pipeline_config_id, status, created_at);
CREATE INDEX executions_by_status ON executions (status, created_at);

-- A message belongs to a partition (an execution id, or a key such as
-- `pipeline:<id>`); a worker leases all due messages of a partition at once so the
-- steps of one execution never run side by side.
CREATE TABLE queue_messages (
    id            BIGSERIAL PRIMARY KEY,
    partition_key TEXT NOT NULL,
    payload       TEXT NOT NULL,
    replace_key   TEXT,
    deliver_at    BIGINT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    lease_owner   TEXT,
    lease_until   BIGINT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX queue_messages_due ON queue_messages (deliver_at, id);
CREATE INDEX queue_messages_partition ON queue_messages (partition_key);
-- A newer message with the same key replaces a waiting one (NULL keys never clash).
CREATE UNIQUE INDEX queue_messages_replace ON queue_messages (partition_key, replace_key);
