-- no-transaction
-- expect: vacuum-full
VACUUM (FULL, ANALYZE) users;
