-- Extensions and enums the schema builds on.
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE EXTENSION IF NOT EXISTS citext;

CREATE TYPE account_status AS ENUM ('trial', 'active', 'suspended');
CREATE TYPE money_amount AS (currency char(3), cents bigint);
CREATE DOMAIN email_address AS citext
    CHECK (VALUE ~ '^[^@\s]+@[^@\s]+$');

COMMENT ON TYPE account_status IS 'Lifecycle of an account; see docs/billing.md';
COMMENT ON EXTENSION citext IS $$case-insensitive text, used for e-mail addresses$$;
