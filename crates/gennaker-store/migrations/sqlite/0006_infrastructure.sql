-- Infrastructure a provider manages (the local provider's server groups and load
-- balancers): one JSON document per (provider, kind, key), with a version raised by
-- every write for optimistic concurrency. Generic, so a provider adds kinds without a
-- migration.
CREATE TABLE infrastructure (
    provider   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    key        TEXT NOT NULL,
    document   TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (provider, kind, key)
);
