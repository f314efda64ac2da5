-- UI artifacts the agent renders (components, forms, charts). `version` is the optimistic
-- concurrency token; every version's content is kept in ui_artifact_versions.
CREATE TABLE ui_artifacts (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    kind            text        NOT NULL,
    title           text        NOT NULL,
    spec            jsonb       NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ui_artifacts_version_positive CHECK (version > 0)
);

CREATE INDEX ui_artifacts_conversation_idx ON ui_artifacts (conversation_id, created_at, id);

CREATE TABLE ui_artifact_versions (
    artifact_id uuid        NOT NULL REFERENCES ui_artifacts (id) ON DELETE CASCADE,
    version     integer     NOT NULL,
    title       text        NOT NULL,
    spec        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (artifact_id, version)
);
