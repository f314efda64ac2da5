-- lint:allow alter-column-type: users.seen_count holds counters only; the table has 40 rows in production
-- expect: alter-column-type
ALTER TABLE users ALTER COLUMN seen_count TYPE bigint;

