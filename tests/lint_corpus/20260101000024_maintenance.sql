-- lock_timeout: 0
-- expect: lock-timeout-missing, lock-table
LOCK TABLE invoices IN SHARE ROW EXCLUSIVE MODE;
-- expect: unbounded-dml
UPDATE invoices SET issued_on = CURRENT_DATE WHERE issued_on IS NULL;
UPDATE users SET language = 'en' WHERE id BETWEEN 1 AND 10000;
DELETE FROM events WHERE id IN (SELECT id FROM events WHERE kind = 'ping' LIMIT 1000);
SET lock_timeout = '5s';
-- expect: reindex-not-concurrent
REINDEX INDEX users_account_id_idx;
RESET lock_timeout;
