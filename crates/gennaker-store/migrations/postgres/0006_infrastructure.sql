-- Infrastructure a provider manages (the local provider's server groups and load
-- balancers): one JSON document per (provider, kind, key), with a version raised by
-- every write for optimistic concurrency. Generic, so a provider adds kinds without a
-- migration. Keys compare bytes ("C") so prefix listings order as on SQLite.
CREATE TABLE infrastructure (
    provider   TEXT COLLATE "C" NOT NULL,
    kind       TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    document   TEXT NOT NULL,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (provider, kind, key)
);
