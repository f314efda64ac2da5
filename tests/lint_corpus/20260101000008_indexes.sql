-- A table created here can be indexed plainly: it is empty and unseen.
CREATE TABLE api_keys (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL,
    digest bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX api_keys_digest_key ON api_keys (digest);
CREATE INDEX api_keys_user_id_idx ON api_keys USING btree (user_id) INCLUDE (created_at);
ALTER TABLE api_keys ADD CONSTRAINT api_keys_user_fk FOREIGN KEY (user_id) REFERENCES users (id);

-- An index on a live table blocks its writes while it builds.
-- expect: create-index-not-concurrent
CREATE INDEX users_locale_idx ON users (locale);
