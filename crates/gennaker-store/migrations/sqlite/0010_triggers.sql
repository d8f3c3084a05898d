-- Triggers (issue 13). Every event that arrives (a webhook, a git push, a new Docker
-- tag, a finished pipeline) is recorded here once under its key before any pipeline
-- fires, so a server killed while handling it leaves a pending row that the next
-- claim re-handles; firing itself is de-duplicated by the execution's correlation id.
CREATE TABLE trigger_events (
    event_key   TEXT PRIMARY KEY,
    id          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    document    TEXT NOT NULL,
    state       TEXT NOT NULL,
    claim_until BIGINT NOT NULL
);
CREATE INDEX trigger_events_pending ON trigger_events (state, claim_until);
CREATE INDEX trigger_events_received ON trigger_events (received_at);

-- Per application: what arrived, which triggers fired, and why the others did not.
-- One entry per (application, event), the first writer's, so two servers handling the
-- same event log it once. Bounded by count per application.
CREATE TABLE trigger_log (
    application_key TEXT NOT NULL,
    event_key       TEXT NOT NULL,
    received_at     BIGINT NOT NULL,
    entry           TEXT NOT NULL,
    PRIMARY KEY (application_key, event_key)
);
CREATE INDEX trigger_log_recent ON trigger_log (application_key, received_at);

-- Docker registry polling: the repositories polled at least once (the first poll only
-- records) and every tag seen with its digest.
CREATE TABLE trigger_docker_repositories (
    account    TEXT NOT NULL,
    repository TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (account, repository)
);
CREATE TABLE trigger_docker_tags (
    account    TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    seen_at    BIGINT NOT NULL,
    PRIMARY KEY (account, repository, tag)
);
