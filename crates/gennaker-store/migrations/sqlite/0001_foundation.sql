-- Applications, pipeline configs with every revision, users/roles/tokens and the audit log.
-- Times are epoch milliseconds; JSON documents are stored as text so key order survives.
CREATE TABLE applications (
    name_key   TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    config     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE pipelines (
    id              TEXT PRIMARY KEY,
    application_key TEXT NOT NULL REFERENCES applications (name_key),
    name            TEXT NOT NULL,
    name_key        TEXT NOT NULL,
    revision        INTEGER NOT NULL,
    config          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    updated_by      TEXT NOT NULL,
    UNIQUE (application_key, name_key)
);

CREATE TABLE pipeline_revisions (
    pipeline_id TEXT NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    revision    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    config      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    author      TEXT NOT NULL,
    restored_from INTEGER,
    PRIMARY KEY (pipeline_id, revision)
);

CREATE TABLE users (
    name_key   TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    admin      BOOLEAN NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE user_roles (
    user_key TEXT NOT NULL REFERENCES users (name_key) ON DELETE CASCADE,
    role     TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    PRIMARY KEY (user_key, role)
);

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    user_key   TEXT NOT NULL REFERENCES users (name_key) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status  INTEGER NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_log_target ON audit_log (target);
