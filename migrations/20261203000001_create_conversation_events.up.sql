-- The event log a UI streams (GET /api/v1/conversations/{id}/events): one row per change to a
-- conversation, written by triggers in the transaction of the change, so that every release's
-- writes produce events, the one still serving during a deploy included.
--
-- `seq` is dense per conversation: it comes from the conversation's row in
-- conversation_event_seqs, bumped by an upsert whose row lock the writing transaction holds
-- until it commits. Events of one conversation therefore commit in seq order, and a reader that
-- sees event N sees every event before it: reading `seq > last_seen` never skips one. The log starts
-- with this migration: earlier messages and artifacts have no events.
--
-- Neither table has a foreign key to conversations, and the counter is not a column of it: an
-- artifact update holds the artifact's row when its trigger runs, and a DELETE of the
-- conversation holds the conversation's row while it cascades to that artifact. Any lock the
-- trigger took on the conversation (a key-share for a foreign key check, or an update of a
-- counter column) would close that circle into a deadlock, in every release's writes. The
-- conversation's delete trigger removes its log instead, after the cascades.
--
-- lint:allow create-trigger: the triggers only append to the new tables, locking nothing of the tables they watch beyond what the write already holds; they read nothing a previous release leaves out (any insert of a message or an artifact version, any change of title, metadata or archived_at is logged, whoever made it), and the engine's lock_timeout stays on for the brief SHARE ROW EXCLUSIVE lock
CREATE TABLE conversation_event_seqs (
    conversation_id uuid   PRIMARY KEY,
    last_seq        bigint NOT NULL,
    CONSTRAINT conversation_event_seqs_positive CHECK (last_seq > 0)
);

CREATE TABLE conversation_events (
    conversation_id  uuid        NOT NULL,
    seq              bigint      NOT NULL,
    kind             text        NOT NULL,
    -- message.created
    message_id       uuid,
    -- artifact.created, artifact.updated: the version row it made
    artifact_id      uuid,
    artifact_version integer,
    -- conversation.*: the conversation as the change left it
    title            text,
    metadata         jsonb,
    archived_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, seq),
    CONSTRAINT conversation_events_seq_positive CHECK (seq > 0),
    CONSTRAINT conversation_events_kind_known CHECK (kind IN (
        'message.created', 'artifact.created', 'artifact.updated',
        'conversation.updated', 'conversation.archived', 'conversation.unarchived'
    ))
);

-- Appends one event under its conversation's counter row lock and tells the listening instances, on
-- commit, which conversation and seq (ids only: NOTIFY payloads are capped at 8000 bytes).
CREATE FUNCTION conversation_events_append(
    p_conversation uuid, p_kind text, p_message uuid, p_artifact uuid, p_version integer,
    p_title text, p_metadata jsonb, p_archived_at timestamptz
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    next_seq bigint;
BEGIN
    IF p_conversation IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO conversation_event_seqs AS s (conversation_id, last_seq)
    VALUES (p_conversation, 1)
    ON CONFLICT (conversation_id) DO UPDATE SET last_seq = s.last_seq + 1
    RETURNING s.last_seq INTO next_seq;
    INSERT INTO conversation_events (conversation_id, seq, kind, message_id, artifact_id,
                                     artifact_version, title, metadata, archived_at)
    VALUES (p_conversation, next_seq, p_kind, p_message, p_artifact, p_version, p_title,
            p_metadata, p_archived_at);
    PERFORM pg_notify('agent_conversation_events', p_conversation::text || ' ' || next_seq);
    RETURN next_seq;
END
$$;

CREATE FUNCTION conversation_events_on_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM conversation_events_append(NEW.conversation_id, 'message.created', NEW.id,
                                       NULL, NULL, NULL, NULL, NULL);
    RETURN NULL;
END
$$;

CREATE FUNCTION conversation_events_on_artifact_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM conversation_events_append(
        (SELECT conversation_id FROM ui_artifacts WHERE id = NEW.artifact_id),
        CASE WHEN NEW.version = 1 THEN 'artifact.created' ELSE 'artifact.updated' END,
        NULL, NEW.artifact_id, NEW.version, NULL, NULL, NULL);
    RETURN NULL;
END
$$;

CREATE FUNCTION conversation_events_on_conversation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM conversation_events_append(
        NEW.id,
        CASE
            WHEN OLD.archived_at IS NULL AND NEW.archived_at IS NOT NULL THEN 'conversation.archived'
            WHEN OLD.archived_at IS NOT NULL AND NEW.archived_at IS NULL THEN 'conversation.unarchived'
            ELSE 'conversation.updated'
        END,
        NULL, NULL, NULL, NEW.title, NEW.metadata, NEW.archived_at);
    RETURN NULL;
END
$$;

-- A deleted conversation takes its log with it; its streams are told so and end. (Fired after
-- the foreign keys' cascades: a writer the cascade waited for has logged its event by now.)
CREATE FUNCTION conversation_events_on_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM conversation_events WHERE conversation_id = OLD.id;
    DELETE FROM conversation_event_seqs WHERE conversation_id = OLD.id;
    PERFORM pg_notify('agent_conversation_events', OLD.id::text || ' deleted');
    RETURN NULL;
END
$$;

CREATE TRIGGER conversation_events_message AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION conversation_events_on_message();

CREATE TRIGGER conversation_events_artifact_version AFTER INSERT ON ui_artifact_versions
    FOR EACH ROW EXECUTE FUNCTION conversation_events_on_artifact_version();

-- Only a change a UI shows: appends touch last_seq/updated_at, and an archive of an archived
-- conversation changes nothing.
CREATE TRIGGER conversation_events_conversation
    AFTER UPDATE OF title, metadata, archived_at ON conversations
    FOR EACH ROW
    WHEN (OLD.title IS DISTINCT FROM NEW.title
          OR OLD.metadata IS DISTINCT FROM NEW.metadata
          OR (OLD.archived_at IS NULL) <> (NEW.archived_at IS NULL))
    EXECUTE FUNCTION conversation_events_on_conversation();

CREATE TRIGGER conversation_events_deleted AFTER DELETE ON conversations
    FOR EACH ROW EXECUTE FUNCTION conversation_events_on_delete();
