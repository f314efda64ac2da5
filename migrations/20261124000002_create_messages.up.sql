-- Messages of a conversation, in the order given by their dense per-conversation sequence number.
CREATE TABLE messages (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             bigint      NOT NULL,
    role            text        NOT NULL,
    content         text        NOT NULL,
    parts           jsonb,
    tool_call_id    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq),
    CONSTRAINT messages_seq_positive CHECK (seq > 0),
    CONSTRAINT messages_role_known CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    CONSTRAINT messages_parts_is_array CHECK (parts IS NULL OR jsonb_typeof(parts) = 'array')
);
