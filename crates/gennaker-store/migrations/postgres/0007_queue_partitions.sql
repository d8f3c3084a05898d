-- The queue's partitions, kept beside its messages so that claiming work is an index
-- lookup whose cost does not grow with the queue.
--
-- A partition may be claimed from `ready_at` on: the later of its earliest message's
-- due time and its latest lease (a lease keeps the whole partition to one worker).
-- Every transaction that adds, removes, leases or releases messages recomputes the
-- row of each partition it touched, so the row always agrees with the messages.
CREATE TABLE queue_partitions (
    partition_key TEXT COLLATE "C" PRIMARY KEY,
    -- Who the partition's work is for (the user who started the execution; '' for the
    -- engine's own partitions): claims take turns across tenants.
    tenant        TEXT COLLATE "C" NOT NULL,
    ready_at      BIGINT NOT NULL
);
CREATE INDEX queue_partitions_ready ON queue_partitions (ready_at);
CREATE INDEX queue_partitions_by_tenant ON queue_partitions (tenant, ready_at, partition_key);

-- One row per tenant that has had work queued; `served_seq` orders tenants by when a
-- claim last served them, so the least recently served goes first.
CREATE TABLE queue_tenants (
    tenant     TEXT COLLATE "C" PRIMARY KEY,
    served_seq BIGINT NOT NULL
);
CREATE INDEX queue_tenants_served ON queue_tenants (served_seq, tenant);

-- Existing queues: one row per partition, its tenant read from its execution.
INSERT INTO queue_partitions (partition_key, tenant, ready_at)
SELECT q.partition_key,
       COALESCE((SELECT e.document::jsonb -> 'authentication' ->> 'user' FROM executions e WHERE e.id = q.partition_key), ''),
       CASE WHEN MAX(q.lease_until) > MIN(q.deliver_at) THEN MAX(q.lease_until) ELSE MIN(q.deliver_at) END
FROM queue_messages q
GROUP BY q.partition_key;
INSERT INTO queue_tenants (tenant, served_seq)
SELECT DISTINCT tenant, 0 FROM queue_partitions;

-- Keys compare bytes, as in 0004, so both backends take ties in the same order; the
-- messages' partition keys too, so they compare with the partitions' without a clash.
-- Claims read a partition's due messages in order, and recompute its earliest due time
-- and latest lease, through these instead of scanning the queue.
DROP INDEX queue_messages_due;
DROP INDEX queue_messages_partition;
ALTER TABLE queue_messages ALTER COLUMN partition_key TYPE TEXT COLLATE "C";
CREATE INDEX queue_messages_partition_due ON queue_messages (partition_key, deliver_at, id);
CREATE INDEX queue_messages_partition_lease ON queue_messages (partition_key, lease_until);

