CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    name varchar(64) NOT NULL,
    slug varchar(50) NOT NULL,
    status account_status NOT NULL DEFAULT 'trial',
    balance numeric(12, 2) NOT NULL DEFAULT 0,
    settings jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_slug_format CHECK (slug ~ '^[a-z0-9-]+$')
);

CREATE UNIQUE INDEX accounts_slug_key ON accounts (lower(slug));

CREATE TABLE users (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email email_address NOT NULL,
    display_name varchar(80),
    ip_range cidr,
    profile xml,
    -- expect: prefer-timestamptz
    last_seen timestamp,
    created_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (account_id, email)
);

CREATE INDEX users_account_id_idx ON users (account_id);
CREATE INDEX users_last_seen_idx ON users (last_seen DESC NULLS LAST) WHERE last_seen IS NOT NULL;

COMMENT ON TABLE users IS 'People who sign in; one account has many';
COMMENT ON COLUMN users.email IS 'Unique per account, compared case-insensitively';
