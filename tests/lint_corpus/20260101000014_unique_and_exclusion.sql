-- expect: add-unique-constraint
ALTER TABLE projects ADD CONSTRAINT projects_account_name_key UNIQUE (account_id, name);

CREATE TABLE reservations (
    id bigint GENERATED ALWAYS AS IDENTITY,
    project_id bigint NOT NULL,
    during tstzrange NOT NULL,
    CONSTRAINT reservations_no_overlap EXCLUDE USING gist (project_id WITH =, during WITH &&)
);
ALTER TABLE reservations ADD PRIMARY KEY (id);

-- expect: add-unique-constraint
ALTER TABLE invoices ADD CONSTRAINT invoices_no_dup EXCLUDE USING gist (account_id WITH =, issued_on WITH =);
