-- lint:allow drop-column: no release reads accounts.notes since 2026.01; the code stopped using it a release ago
-- expect: drop-column
ALTER TABLE accounts DROP COLUMN notes;
-- expect: rename
ALTER TABLE users RENAME COLUMN locale TO language;
-- expect: rename
ALTER TABLE reservations RENAME TO bookings;
-- expect: drop-table
DROP TABLE IF EXISTS api_keys;
-- expect: truncate
TRUNCATE events_2026_02;
-- expect: drop-index-not-concurrent
DROP INDEX users_last_seen_idx;
