-- The queue's hot paths in one round trip each: an engine step's commit (the
-- statements `commit_step` sent one by one, 12 round trips for a queue hop) and a claim
-- (8), run inside the database with the same statements, in the same order (those
-- `claim_plans_use_indexes` checks). Called on its own, outside a transaction block,
-- a call is its own transaction: an exception (a lost lease, an execution changed
-- since it was read, a duplicate correlation id) undoes all of it. PL/pgSQL takes a
-- new snapshot for each statement (READ COMMITTED), so a partition's row is
-- recomputed, as before, by a statement that starts after the row was locked and sees
-- the previous holder's leases.
--
-- Executions are given as parallel arrays (`p_expected` NULL inserts one); messages
-- too. `p_lock_partitions`/`p_lock_tenants` name the partitions the step changes other
-- than through acknowledged messages (those it finds itself), with the tenant of those
-- that receive messages (NULL for the others). `p_carry` (or NULL) is the partition
-- whose due messages are leased to `p_owner` when the step acknowledged messages of
-- it and no other worker's lease there is live; they are returned.
--
-- Errors: SQLSTATE GK001 (stale; the message says why), GK002 (an execution with the
-- correlation id exists; the message is its id).
CREATE FUNCTION gennaker_commit_step(
    p_owner             TEXT,
    p_acked             BIGINT[],
    p_ids               TEXT[],
    p_expected          BIGINT[],
    p_application_keys  TEXT[],
    p_applications      TEXT[],
    p_pipeline_ids      TEXT[],
    p_pipeline_names    TEXT[],
    p_statuses          TEXT[],
    p_created_at        BIGINT[],
    p_start_times       BIGINT[],
    p_end_times         BIGINT[],
    p_correlation_ids   TEXT[],
    p_versions          BIGINT[],
    p_documents         TEXT[],
    p_lock_partitions   TEXT[],
    p_lock_tenants      TEXT[],
    p_remove_partitions TEXT[],
    p_remove_keys       TEXT[],
    p_msg_partitions    TEXT[],
    p_msg_payloads      TEXT[],
    p_msg_deliver_at    BIGINT[],
    p_msg_replace_keys  TEXT[],
    p_wake              TEXT[],
    p_wake_at           BIGINT,
    p_notices           TEXT[],
    p_carry             TEXT,
    p_carry_now         BIGINT,
    p_carry_until       BIGINT,
    p_carry_limit       BIGINT
) RETURNS TABLE (
    leased_id         BIGINT,
    leased_partition  TEXT,
    leased_payload    TEXT,
    leased_attempts   INTEGER,
    leased_deliver_at BIGINT
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    -- A new partition's `ready_at` until it is recomputed below: never a real time.
    v_unset     CONSTANT BIGINT := 9223372036854775807;
    v_acked_in  TEXT[];
    v_locked    TEXT[] := '{}';
    v_key       TEXT;
    v_tenant    TEXT;
    v_ready     BIGINT;
    v_id        BIGINT;
    v_existing  TEXT;
    v_leased    BIGINT := 0;
    v_notice    TEXT;
    v_others    BOOLEAN;
    i           INTEGER;
BEGIN
    SELECT COALESCE(array_agg(DISTINCT m.partition_key), '{}') INTO v_acked_in
    FROM queue_messages m WHERE m.id = ANY(p_acked);

    -- Lock every partition the step changes, in key order (as every writer does, so
    -- none waits on another in a circle), creating those that receive messages.
    FOR v_key, v_tenant IN
        SELECT k, MAX(t) FROM (
            SELECT u.k, u.t FROM unnest(p_lock_partitions, p_lock_tenants) AS u(k, t)
            UNION ALL
            SELECT a.k, NULL FROM unnest(v_acked_in) AS a(k)
        ) touched
        GROUP BY k ORDER BY k COLLATE "C"
    LOOP
        IF v_tenant IS NOT NULL THEN
            INSERT INTO queue_partitions AS p (partition_key, tenant, ready_at)
            VALUES (v_key, v_tenant, v_unset)
            ON CONFLICT (partition_key) DO UPDATE SET tenant = p.tenant
            RETURNING p.tenant, p.ready_at INTO v_tenant, v_ready;
            IF v_ready = v_unset THEN
                INSERT INTO queue_tenants (tenant, served_seq) VALUES (v_tenant, 0)
                ON CONFLICT (tenant) DO NOTHING;
            END IF;
            v_locked := v_locked || v_key;
        ELSE
            PERFORM 1 FROM queue_partitions p WHERE p.partition_key = v_key FOR UPDATE;
            IF FOUND THEN
                v_locked := v_locked || v_key;
            END IF;
        END IF;
    END LOOP;

    FOREACH v_id IN ARRAY p_acked LOOP
        DELETE FROM queue_messages m WHERE m.id = v_id AND m.lease_owner = p_owner;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'GK001',
                MESSAGE = format('the lease on message %s was lost', v_id);
        END IF;
    END LOOP;

    FOR i IN 1 .. COALESCE(array_length(p_ids, 1), 0) LOOP
        IF p_expected[i] IS NULL THEN
            IF p_correlation_ids[i] IS NOT NULL THEN
                SELECT e.id INTO v_existing FROM executions e
                WHERE e.correlation_id = p_correlation_ids[i];
                IF FOUND THEN
                    RAISE EXCEPTION USING ERRCODE = 'GK002', MESSAGE = v_existing;
                END IF;
            END IF;
            INSERT INTO executions (id, application_key, application, pipeline_config_id,
                pipeline_name, status, created_at, start_time, end_time, correlation_id,
                version, document)
            VALUES (p_ids[i], p_application_keys[i], p_applications[i], p_pipeline_ids[i],
                p_pipeline_names[i], p_statuses[i], p_created_at[i], p_start_times[i],
                p_end_times[i], p_correlation_ids[i], p_versions[i], p_documents[i])
            ON CONFLICT (id) DO NOTHING;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'GK001',
                    MESSAGE = format('execution %s already exists', p_ids[i]);
            END IF;
        ELSE
            UPDATE executions e SET status = p_statuses[i], start_time = p_start_times[i],
                end_time = p_end_times[i], version = p_versions[i], document = p_documents[i]
            WHERE e.id = p_ids[i] AND e.version = p_expected[i];
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'GK001',
                    MESSAGE = format('execution %s changed since version %s', p_ids[i], p_expected[i]);
            END IF;
        END IF;
    END LOOP;

    -- A partition that had no row has no messages to drop or wake.
    FOR i IN 1 .. COALESCE(array_length(p_remove_partitions, 1), 0) LOOP
        IF p_remove_partitions[i] = ANY(v_locked) THEN
            DELETE FROM queue_messages m
            WHERE m.partition_key = p_remove_partitions[i] AND m.replace_key = p_remove_keys[i];
        END IF;
    END LOOP;
    FOR i IN 1 .. COALESCE(array_length(p_msg_partitions, 1), 0) LOOP
        INSERT INTO queue_messages AS m (partition_key, payload, deliver_at, created_at, replace_key)
        VALUES (p_msg_partitions[i], p_msg_payloads[i], p_msg_deliver_at[i], p_msg_deliver_at[i], p_msg_replace_keys[i])
        ON CONFLICT (partition_key, replace_key) DO UPDATE SET payload = excluded.payload,
            deliver_at = excluded.deliver_at, attempts = 0, lease_owner = NULL, lease_until = NULL;
    END LOOP;
    FOREACH v_key IN ARRAY p_wake LOOP
        IF v_key = ANY(v_locked) THEN
            UPDATE queue_messages m SET deliver_at = p_wake_at
            WHERE m.partition_key = v_key AND m.lease_owner IS NULL AND m.deliver_at > p_wake_at;
        END IF;
    END LOOP;

    -- Carrying on needs no claim: the acknowledged messages prove this worker held the
    -- partition, and the statement itself checks that no other lease is live.
    IF p_carry IS NOT NULL AND p_carry = ANY(v_acked_in) THEN
        RETURN QUERY
        WITH leased AS (
            UPDATE queue_messages m SET lease_owner = p_owner, lease_until = p_carry_until,
                attempts = m.attempts + 1
            WHERE m.id IN (SELECT q.id FROM queue_messages q
                           WHERE q.partition_key = p_carry AND q.deliver_at <= p_carry_now
                           ORDER BY q.deliver_at, q.id LIMIT p_carry_limit)
              AND NOT EXISTS (SELECT 1 FROM queue_messages o WHERE o.partition_key = p_carry
                              AND o.lease_until > p_carry_now AND o.lease_owner <> p_owner)
            RETURNING m.id, m.partition_key, m.payload, m.attempts, m.deliver_at
        )
        SELECT l.id, l.partition_key::TEXT, l.payload, l.attempts, l.deliver_at FROM leased l;
        GET DIAGNOSTICS v_leased = ROW_COUNT;
    END IF;

    -- Recompute the rows of the partitions locked above; one that lost messages and
    -- received or kept none may have lost its last one, and then loses its row.
    FOREACH v_key IN ARRAY v_locked LOOP
        IF (v_key = ANY(v_acked_in) OR v_key = ANY(p_remove_partitions))
           AND NOT v_key = ANY(p_msg_partitions)
           AND NOT (v_leased > 0 AND v_key = p_carry) THEN
            DELETE FROM queue_partitions p WHERE p.partition_key = v_key
            AND NOT EXISTS (SELECT 1 FROM queue_messages m WHERE m.partition_key = v_key);
        END IF;
        UPDATE queue_partitions p SET ready_at = (
            SELECT CASE WHEN l.until > d.due THEN l.until ELSE d.due END FROM
            (SELECT MIN(m.deliver_at) AS due FROM queue_messages m WHERE m.partition_key = v_key) d,
            (SELECT MAX(m.lease_until) AS until FROM queue_messages m WHERE m.partition_key = v_key) l
        ) WHERE p.partition_key = v_key;
    END LOOP;

    -- Other servers' idle workers need waking only for work this worker did not take up.
    v_others := COALESCE(array_length(p_wake, 1), 0) > 0
        OR COALESCE(array_length(p_msg_partitions, 1), 0) > v_leased
        OR EXISTS (SELECT 1 FROM unnest(p_msg_partitions) AS k
                   WHERE v_leased = 0 OR k <> p_carry);
    IF v_others THEN
        PERFORM pg_notify('gennaker_queue', '');
    END IF;
    -- Sent only if the step commits, in commit order.
    FOREACH v_notice IN ARRAY p_notices LOOP
        PERFORM pg_notify('gennaker_events', v_notice);
    END LOOP;
END;
$$;

-- A claim in one round trip: what `claim_messages` sent one by one (8 round trips),
-- with the same statements and order. Called outside a transaction block, the call
-- is its own transaction. Leases the due messages of up to `p_partitions` ready
-- partitions (at most `p_per_partition` each, oldest first) to `p_owner` until
-- `p_lease_until`; tenants take turns as in `claim_messages`, whose documentation
-- this follows.
CREATE FUNCTION gennaker_claim(
    p_owner         TEXT,
    p_now           BIGINT,
    p_lease_until   BIGINT,
    p_partitions    INTEGER,
    p_per_partition BIGINT
) RETURNS TABLE (
    leased_id         BIGINT,
    leased_partition  TEXT,
    leased_payload    TEXT,
    leased_attempts   INTEGER,
    leased_deliver_at BIGINT
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_tenants  TEXT[];
    v_keep     BOOLEAN;
    v_chosen   TEXT[] := '{}';
    v_served   TEXT[] := '{}';
    v_tenant   TEXT;
    v_key      TEXT;
    v_room     INTEGER;
    v_take     INTEGER;
    v_next     BIGINT;
    v_seq      BIGINT;
    v_round    INTEGER;
BEGIN
    -- Idle workers ask often; when nothing is ready they lock nothing.
    PERFORM 1 FROM queue_partitions p WHERE p.ready_at <= p_now LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- A tenant alone in the line that was served before already ranks behind any
    -- newcomer, and there is no one else to order it against: its row is left alone.
    SELECT COALESCE(array_agg(t.tenant ORDER BY t.served_seq, t.tenant), '{}'),
           COUNT(*) > 1 OR COALESCE(bool_or(t.served_seq = 0), FALSE)
    INTO v_tenants, v_keep
    FROM queue_tenants t
    WHERE EXISTS (SELECT 1 FROM queue_partitions p WHERE p.tenant = t.tenant AND p.ready_at <= p_now);
    -- One partition per tenant in turn, then the rest from the same tenants in the
    -- same order. A partition whose row another claim holds is skipped; one that
    -- changed since is re-read once locked and dropped when no longer ready.
    FOR v_round IN 0 .. 1 LOOP
        FOREACH v_tenant IN ARRAY v_tenants LOOP
            v_room := p_partitions - COALESCE(array_length(v_chosen, 1), 0);
            EXIT WHEN v_room <= 0;
            v_take := CASE WHEN v_round = 0 THEN 1 ELSE v_room END;
            FOR v_key IN
                SELECT p.partition_key FROM queue_partitions p
                WHERE p.tenant = v_tenant AND p.ready_at <= p_now
                ORDER BY p.ready_at, p.partition_key
                LIMIT v_take + COALESCE(array_length(v_chosen, 1), 0)
                FOR UPDATE SKIP LOCKED
            LOOP
                CONTINUE WHEN v_key = ANY(v_chosen);
                EXIT WHEN v_take <= 0;
                v_take := v_take - 1;
                RETURN QUERY
                WITH leased AS (
                    UPDATE queue_messages m SET lease_owner = p_owner, lease_until = p_lease_until,
                        attempts = m.attempts + 1
                    WHERE m.id IN (SELECT q.id FROM queue_messages q
                                   WHERE q.partition_key = v_key AND q.deliver_at <= p_now
                                   ORDER BY q.deliver_at, q.id LIMIT p_per_partition)
                    RETURNING m.id, m.partition_key, m.payload, m.attempts, m.deliver_at
                )
                SELECT l.id, l.partition_key::TEXT, l.payload, l.attempts, l.deliver_at FROM leased l;
                UPDATE queue_partitions p SET ready_at = (
                    SELECT CASE WHEN l.until > d.due THEN l.until ELSE d.due END FROM
                    (SELECT MIN(m.deliver_at) AS due FROM queue_messages m WHERE m.partition_key = v_key) d,
                    (SELECT MAX(m.lease_until) AS until FROM queue_messages m WHERE m.partition_key = v_key) l
                ) WHERE p.partition_key = v_key;
                v_chosen := v_chosen || v_key;
                IF NOT v_tenant = ANY(v_served) THEN
                    v_served := v_served || v_tenant;
                END IF;
            END LOOP;
        END LOOP;
        EXIT WHEN COALESCE(array_length(v_chosen, 1), 0) >= p_partitions;
    END LOOP;
    IF v_keep AND COALESCE(array_length(v_served, 1), 0) > 0 THEN
        -- The tenants served go to the back of the line, in the order served; rows are
        -- written in key order so concurrent claims cannot deadlock.
        SELECT COALESCE(MAX(t.served_seq), 0) + 1 INTO v_next FROM queue_tenants t;
        FOR v_tenant, v_seq IN
            SELECT u.tenant, v_next + u.n - 1
            FROM unnest(v_served) WITH ORDINALITY AS u(tenant, n)
            ORDER BY u.tenant COLLATE "C"
        LOOP
            UPDATE queue_tenants t SET served_seq = v_seq WHERE t.tenant = v_tenant;
        END LOOP;
    END IF;
END;
$$;
