-- Notifications waiting to be sent, and what became of them. Rows are written in the
-- same transaction as the status change that causes them (a committed engine step), so
-- a crash never loses one nor writes one twice; `dedupe_key` makes a repeated insert a
-- no-op besides. The delivery worker claims due rows under a lease.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key      TEXT NOT NULL UNIQUE,
    execution_id    TEXT NOT NULL,
    stage_id        TEXT,
    event           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    document        TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER
);
CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
CREATE INDEX notifications_execution ON notifications (execution_id, id);
