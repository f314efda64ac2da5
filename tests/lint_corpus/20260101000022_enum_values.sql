-- no-transaction
ALTER TYPE account_status ADD VALUE IF NOT EXISTS 'closed' AFTER 'suspended';
