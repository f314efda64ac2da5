-- no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_created_on_idx ON users (created_on);
