-- The outbox relay's claim. A relay that claims a row writes its own id here and pushes
-- next_attempt_at out by the lease, in one short statement; it then publishes outside any
-- transaction and clears the column when it records the outcome. A relay that dies
-- mid-publish leaves the row to be claimed again once the lease runs out (see
-- src/store/outbox.rs). Keep in step with migrations/postgres/0002_outbox_lease.sql.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;

-- `outbox list --dead`, redrive and the dead-events gauge read only dead rows.
CREATE INDEX idx_outbox_dead ON outbox (id) WHERE dead_at IS NOT NULL;
