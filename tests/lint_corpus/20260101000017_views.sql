CREATE VIEW active_accounts AS
    SELECT id, public_id, name FROM accounts WHERE status = 'active';

CREATE MATERIALIZED VIEW account_user_counts AS
    SELECT a.id AS account_id, count(u.id) AS users
    FROM accounts a LEFT JOIN users u ON u.account_id = a.id
    GROUP BY a.id
WITH NO DATA;

CREATE UNIQUE INDEX account_user_counts_key ON account_user_counts (account_id);

CREATE VIEW legacy_users AS SELECT id, email FROM users;
COMMENT ON VIEW legacy_users IS 'Read by the reporting job until 2026.12';
