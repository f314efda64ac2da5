ALTER TABLE users ADD CONSTRAINT users_display_name_nn CHECK (display_name IS NOT NULL) NOT VALID;
ALTER TABLE projects ADD CONSTRAINT projects_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id) NOT VALID;
-- expect: constraint-missing-not-valid
ALTER TABLE accounts ADD CONSTRAINT accounts_balance_positive CHECK (balance >= 0);
-- expect: constraint-missing-not-valid
ALTER TABLE invoices ADD CONSTRAINT invoices_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id);
