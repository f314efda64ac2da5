-- Forgot the -- no-transaction marker: PostgreSQL refuses this inside the migration's transaction.
-- expect: concurrently-in-transaction
CREATE INDEX CONCURRENTLY accounts_status_idx ON accounts (status);
