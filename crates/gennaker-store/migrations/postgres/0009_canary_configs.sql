-- Canary configs (Kayenta's CanaryConfig documents): unique by name without regard to
-- case, every revision kept (capped by the store), and the applications each belongs
-- to in a table of their own so a listing by application uses an index. Keys compare
-- bytes ("C") so listings order as on SQLite.
CREATE TABLE canary_configs (
    id           TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT NOT NULL,
    name_key     TEXT COLLATE "C" NOT NULL UNIQUE,
    applications TEXT NOT NULL,
    revision     BIGINT NOT NULL,
    config       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    updated_by   TEXT NOT NULL
);

CREATE TABLE canary_config_applications (
    config_id       TEXT COLLATE "C" NOT NULL REFERENCES canary_configs (id) ON DELETE CASCADE,
    application_key TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (config_id, application_key)
);
CREATE INDEX canary_config_applications_by_application
    ON canary_config_applications (application_key);

CREATE TABLE canary_config_revisions (
    config_id    TEXT COLLATE "C" NOT NULL REFERENCES canary_configs (id) ON DELETE CASCADE,
    revision     BIGINT NOT NULL,
    name         TEXT NOT NULL,
    applications TEXT NOT NULL,
    config       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    author       TEXT NOT NULL,
    PRIMARY KEY (config_id, revision)
);
