-- Conversations between a user and the agent. Listed newest first with a (created_at, id) cursor.
CREATE TABLE conversations (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    title       text        NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    archived_at timestamptz,
    -- Last message sequence number handed out; appends bump it under the row lock, so sequence
    -- numbers stay dense and strictly increasing under concurrent appends.
    last_seq    bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT conversations_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT conversations_last_seq_non_negative CHECK (last_seq >= 0)
);

CREATE INDEX conversations_created_at_id_idx ON conversations (created_at DESC, id DESC);
