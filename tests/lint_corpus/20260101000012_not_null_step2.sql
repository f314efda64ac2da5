ALTER TABLE users VALIDATE CONSTRAINT users_display_name_nn;
ALTER TABLE projects VALIDATE CONSTRAINT projects_account_fk;
