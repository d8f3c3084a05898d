-- A version per application, raised by every change, for optimistic concurrency
-- (PUT with If-Match). Existing applications start at 1.
ALTER TABLE applications ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
