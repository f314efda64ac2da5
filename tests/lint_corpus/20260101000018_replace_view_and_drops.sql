-- Replacing a view in one transaction: the serving release never sees it missing.
DROP VIEW active_accounts;
CREATE VIEW active_accounts AS
    SELECT id, public_id, name, created_at FROM accounts WHERE status = 'active';

DROP FUNCTION IF EXISTS invoice_label(bigint);
CREATE FUNCTION invoice_label(n bigint) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT format('INV-%s', n) $$;

-- expect: drop-view
DROP VIEW legacy_users;
-- expect: drop-function
DROP FUNCTION account_display_name(bigint);
-- expect: drop-view
DROP MATERIALIZED VIEW account_user_counts;
