-- Applications, pipeline configs with every revision, users/roles/tokens and the audit log.
-- Times are epoch milliseconds; JSON documents are stored as text so key order survives.
CREATE TABLE applications (
    name_key   TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    config     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE pipelines (
    id              TEXT PRIMARY KEY,
    application_key TEXT NOT NULL REFERENCES applications (name_key),
    name            TEXT NOT NULL,
    name_key        TEXT NOT NULL,
    revision        BIGINT NOT NULL,
    config          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    updated_by      TEXT NOT NULL,
    UNIQUE (application_key, name_key)
);

CREATE TABLE pipeline_revisions (
    pipeline_id TEXT NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    revision    BIGINT NOT NULL,
    name        TEXT NOT NULL,
    config      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    author      TEXT NOT NULL,
    restored_from BIGINT,
    PRIMARY KEY (pipeline_id, revision)
);

CREATE TABLE users (
    name_key   TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    admin      BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created_at  BIGINT NOT NULL
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
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE audit_log (
    id      BIGSERIAL PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status  BIGINT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_log_target ON audit_log (target);
