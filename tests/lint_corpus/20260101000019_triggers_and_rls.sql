-- expect: create-trigger
CREATE TRIGGER users_touch BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
CREATE POLICY projects_tenant ON projects
    USING (account_id = current_setting('app.account_id')::bigint)
    WITH CHECK (account_id = current_setting('app.account_id')::bigint);
CREATE POLICY projects_reporting ON projects FOR SELECT TO lint_corpus_reporting USING (true);
