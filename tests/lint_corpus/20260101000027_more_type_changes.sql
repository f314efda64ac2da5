-- Narrowing, and timestamp → timestamptz (even with TimeZone UTC, the indexes are rebuilt).
-- expect: alter-column-type
ALTER TABLE accounts ALTER COLUMN slug TYPE varchar(40);
-- expect: alter-column-type
ALTER TABLE users ALTER COLUMN last_seen TYPE timestamptz;
