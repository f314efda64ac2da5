ALTER TABLE invoices ADD CONSTRAINT invoices_number_key UNIQUE USING INDEX invoices_number_key_idx;
