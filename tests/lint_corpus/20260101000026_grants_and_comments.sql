GRANT SELECT, INSERT, UPDATE ON users, accounts TO lint_corpus_reporting;
REVOKE UPDATE ON accounts FROM lint_corpus_reporting;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO lint_corpus_reporting;
COMMENT ON COLUMN accounts.balance IS $c$Cents are stored as numeric(14,2); see 'billing'$c$;
COMMENT ON FUNCTION touch_updated_at() IS 'Sets updated_at on every UPDATE';
ALTER FUNCTION touch_updated_at() SET search_path = public;
ALTER TABLE users ALTER COLUMN language SET DEFAULT 'en-GB';
ALTER TABLE users ALTER COLUMN seen_count SET STATISTICS 500;
ANALYZE users;
-- A new column with no DEFAULT is all NULL: PostgreSQL skips the foreign key's validation scan.
ALTER TABLE users ADD COLUMN invited_by bigint REFERENCES users (id) ON DELETE SET NULL;
-- With a default every row has a value to check: a scan under the lock.
-- expect: constraint-missing-not-valid
ALTER TABLE users ADD COLUMN referrer_account_id bigint DEFAULT 1 REFERENCES accounts (id);
SELECT pg_notify('schema_changed', 'users');
-- A CHECK on a new column is validated by a full scan too.
-- expect: constraint-missing-not-valid
ALTER TABLE accounts ADD COLUMN seats integer CHECK (seats > 0);
