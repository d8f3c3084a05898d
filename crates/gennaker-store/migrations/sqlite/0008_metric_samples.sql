-- The built-in load balancer's traffic per (load balancer, server group), one row per
-- sample interval, so canary analysis can compare server groups over windows that
-- started before a server restart. Pruned by age (the writer deletes old rows).
CREATE TABLE metric_samples (
    server_group  TEXT NOT NULL,
    load_balancer TEXT NOT NULL,
    -- The end of the sample's interval (epoch ms) and its length.
    at_ms         INTEGER NOT NULL,
    window_ms     INTEGER NOT NULL,
    count_2xx     INTEGER NOT NULL,
    count_3xx     INTEGER NOT NULL,
    count_4xx     INTEGER NOT NULL,
    count_5xx     INTEGER NOT NULL,
    count_error   INTEGER NOT NULL,
    -- Non-cumulative latency histogram of the interval: JSON [[upper bound or null, count], ...],
    -- non-empty buckets only.
    latency       TEXT NOT NULL,
    PRIMARY KEY (server_group, at_ms, load_balancer)
);
CREATE INDEX metric_samples_age ON metric_samples (at_ms);
