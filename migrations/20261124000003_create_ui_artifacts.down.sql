DROP TABLE ui_artifact_versions;
DROP TABLE ui_artifacts;
